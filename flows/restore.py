"""`python -m flows.restore`: restore one backup, or check it, from a terminal. No Prefect server is involved.

The command line and its rules are in `flows.restore_args`, the restores in `flows.restore_actions`, what is
printed in `flows.restore_output`, a `--snapshot` restore in `flows.restore_snapshot`. Exit status: 0 restored
(or verified) and clean, 1 any failure or mismatch, 2 a bad command line or plan.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from flows.restore_actions import restore_from_file, restore_from_plan, thaw_only
from flows.restore_args import UsageError, build_parser, check_arguments
from flows.restore_output import ProgressBar, leftover_lines, list_lines, summary_lines
from flows.restore_snapshot import restore_snapshot_main
from mongobackup.errors import BackupError
from mongobackup.plan import PlanError, load_plan
from mongobackup.redact import redact_text


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_arguments(args)
        plan = load_plan(args.plan) if args.plan else None
        if plan is not None and args.snapshot:
            plan.snapshot_source(args.snapshot)  # an unknown source is a usage error, named with the known ones
        elif plan is not None:
            plan.instance(args.instance)  # an unknown instance is a usage error, named with the known ones
    except (UsageError, PlanError, KeyError) as exc:
        print(f"restore: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    if plan is not None and args.snapshot:
        return restore_snapshot_main(plan, args)
    if plan is not None and (args.list or args.thaw_only):
        try:
            if args.thaw_only:
                print(thaw_only(plan, args))
            else:
                print("\n".join(list_lines(plan, args.instance, args.database) + leftover_lines(plan, args)))
        except (BackupError, ValueError) as exc:
            print(f"restore: FAILED: {exc}", file=sys.stderr)
            return 1
        return 0
    bar = ProgressBar(args.quiet)
    about = None
    try:
        with bar.shown():
            if plan is None:
                result = restore_from_file(args, bar)
            else:
                result, about = restore_from_plan(plan, args, bar)
    except (BackupError, ValueError, OSError) as exc:
        print(f"restore: FAILED: {redact_text(str(exc), [args.to] if args.to else [])}", file=sys.stderr)
        return 1
    print("\n".join(summary_lines(result, about, args.verify_only)))
    return 0 if result.verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
