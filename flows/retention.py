"""The `retention` flow: S3 lifecycle rules from the tier policy, or `prune` where the store enforces none.

    python -m flows.retention --plan PLAN.yaml [--dry-run] [--versioning] [--object-lock-days N]
    python -m flows.retention --plan PLAN.yaml --prune [--dry-run] [--at ISO-8601]

Without --prune: merges one lifecycle rule per tier into the bucket's configuration (rules that are not
ours are kept; ours are replaced by ID; nothing is written when nothing changes), and optionally turns on
versioning and a default Object Lock retention. With --prune: deletes the backups the same policy expires,
manifest first, never the newest committed backup of any (instance, database); for stores that do not
enforce lifecycle rules. Either way, open uploads of ours older than storage.abort_uploads_after_h (left by
a killed backup) are aborted. --dry-run shows the diff, or the backups and uploads that would go, and
changes nothing; for the lifecycle it also prints the tier policy's cost lint (Glacier's minimum billing)
and what each tier holds now with its monthly storage cost.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger, runtime
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed, State

from flows.cli import load_plan_or_report, run_flow
from flows.parameters import When
from flows.resources import RunResources
from mongobackup.errors import BackupError
from mongobackup.inventory import scan
from mongobackup.lifecycle import (
    LifecycleUnsupported,
    LockMode,
    diff_lifecycle,
    object_lock_setting,
    versioning_setting,
)
from mongobackup.pitr.retention import oplog_rules, prune_plan_segments
from mongobackup.plan import BackupPlan, load_plan
from mongobackup.prune import prune
from mongobackup.tiercost import cost_lines, lint_lines, stored_by_tier
from mongobackup.times import parse_at
from mongobackup.uploads import abort_stale_uploads
from tasks import retention as t
from tasks.retries import retrying


def _run_name() -> str:
    params = runtime.flow_run.parameters
    action = "prune" if params.get("prune") else "lifecycle"
    return f"{action}-{Path(params['plan_path']).stem}" + ("-dry-run" if params.get("dry_run") else "")


@flow(name="retention", flow_run_name=_run_name, log_prints=False)
def retention(
    plan_path: str,
    dry_run: bool = False,
    prune: bool = False,
    versioning: bool = False,
    object_lock_days: int = 0,
    object_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE",
    at: When = None,
) -> State:
    """Applies the plan's lifecycle rules (and bucket settings), or prunes expired backups (`prune=True`).

    Args:
        plan_path: The backup plan (YAML), relative to the project folder the worker runs in, or absolute.
        dry_run: Only show what would change (the diff of rules, or the backups prune would delete).
        prune: Delete expired backups by the tier policy instead (stores that do not enforce lifecycle rules).
        versioning: Also turn bucket versioning on.
        object_lock_days: Also set a default Object Lock retention of this many days (implies versioning);
            0: none.
        object_lock_mode: GOVERNANCE (can be lifted with a permission) or COMPLIANCE (cannot).
        at: Prune only: judge expiry as of this time instead of now.
    """
    plan = load_plan(plan_path)
    with RunResources(plan) as resources:
        # both modes: the uploads of killed runs
        aborted = t.abort_stale_uploads.with_options(**retrying(plan))(resources, dry_run)
        if prune:
            return _prune(resources, parse_at(at), dry_run, aborted)
        lock_days = object_lock_days or None  # 0 in the run form: no Object Lock
        return _lifecycle(resources, dry_run, versioning, lock_days, object_lock_mode, aborted)


def _lifecycle(
    resources: RunResources,
    dry_run: bool,
    versioning: bool,
    object_lock_days: int | None,
    object_lock_mode: LockMode,
    aborted: list[str],
) -> State:
    plan = resources.plan
    settings = t.bucket_settings.with_options(**retrying(plan))(
        resources, versioning, object_lock_days, object_lock_mode, dry_run
    )
    try:
        diff = t.lifecycle.with_options(**retrying(plan))(resources, dry_run)
    except LifecycleUnsupported as exc:
        get_run_logger().error("%s", exc)
        return Failed(message=str(exc))
    lines = [line for setting in settings for line in setting.lines()] + diff.lines() + aborted
    lines += ["", *lint_lines(plan.tiers, plan.prices)]
    _publish("retention-lifecycle", lines, f"Lifecycle of s3://{plan.storage.bucket}" + (" (dry run)" * dry_run))
    changed = diff.changed or any(s.changed for s in settings)
    verb = (
        ("would change" if changed else "nothing to change")
        if dry_run
        else ("applied" if changed else "already up to date")
    )
    return Completed(message=f"lifecycle of s3://{plan.storage.bucket}: {verb}")


def _prune(resources: RunResources, now: datetime, dry_run: bool, aborted: list[str]) -> State:
    plan = resources.plan
    report = t.prune_expired.with_options(**retrying(plan))(resources, now, dry_run)
    oplog = t.prune_oplog.with_options(**retrying(plan))(resources, now, dry_run)
    lines = report.lines() + (oplog.lines() if oplog else []) + aborted
    _publish("retention-prune", lines, f"Prune of s3://{plan.storage.bucket}" + (" (dry run)" * dry_run))
    return Completed(message=lines[0])


def _publish(key: str, lines: list[str], description: str) -> None:
    create_markdown_artifact(markdown="```\n" + "\n".join(lines) + "\n```", key=key, description=description)


def dry_run_lines(
    plan: BackupPlan,
    *,
    prune_at: datetime | None,
    versioning: bool,
    object_lock_days: int | None,
    object_lock_mode: LockMode,
) -> list[str]:
    """What a run would do, computed with plain functions (no Prefect run, nothing written)."""
    storage = RunResources(plan).storage
    aborted: list[str] = []
    after = timedelta(hours=plan.storage.abort_uploads_after_h)
    abort_stale_uploads(storage, plan.storage.prefix, datetime.now(UTC), after, dry_run=True, log=aborted.append)
    if prune_at is not None:
        inventory = scan(storage, plan.storage.prefix)
        oplog = prune_plan_segments(storage, inventory, plan, prune_at, dry_run=True)
        pruned = prune(storage, inventory, plan.tiers, prune_at, dry_run=True).lines()
        return pruned + (oplog.lines() if oplog else []) + aborted
    lines: list[str] = []
    if versioning or object_lock_days is not None:
        lines += versioning_setting(storage).lines()
    if object_lock_days is not None:
        lines += object_lock_setting(storage, plan.tiers, object_lock_days, object_lock_mode).lines()
    lines += diff_lifecycle(storage, plan.tiers, plan.storage.prefix, oplog_rules(plan)).lines() + aborted
    lines += ["", *lint_lines(plan.tiers, plan.prices), ""]
    where = storage.where(plan.storage.prefix)
    return lines + cost_lines(stored_by_tier(storage, plan.storage.prefix), plan.prices, where)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m flows.retention", description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", required=True, help="backup plan YAML")
    parser.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")
    parser.add_argument(
        "--prune",
        action="store_true",
        help="delete expired backups instead of applying lifecycle rules (stores without lifecycle)",
    )
    parser.add_argument("--at", help="--prune: judge expiry as of this ISO-8601 time instead of now")
    parser.add_argument("--versioning", action="store_true", help="also turn on bucket versioning")
    parser.add_argument(
        "--object-lock-days",
        type=int,
        metavar="N",
        help="also set a default Object Lock retention of N days (implies --versioning)",
    )
    parser.add_argument("--object-lock-mode", choices=["GOVERNANCE", "COMPLIANCE"], default="GOVERNANCE")
    args = parser.parse_args(argv)
    if args.prune and (args.versioning or args.object_lock_days is not None):
        parser.error("--versioning and --object-lock-days go with the lifecycle rules, not with --prune")
    if args.at and not args.prune:
        parser.error("--at only applies to --prune")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    plan = load_plan_or_report("retention", args.plan)
    if plan is None:
        return 2
    if args.dry_run:
        try:
            lines = dry_run_lines(
                plan,
                prune_at=parse_at(args.at) if args.prune else None,
                versioning=args.versioning,
                object_lock_days=args.object_lock_days,
                object_lock_mode=args.object_lock_mode,
            )
        except (BackupError, ValueError) as exc:
            print(f"retention: {exc}", file=sys.stderr)
            return 1
        print("\n".join(lines))
        return 0
    try:
        at = parse_at(args.at) if args.at else None  # the run form's type: a datetime, read by the one --at rule
    except ValueError as exc:
        print(f"retention: {exc}", file=sys.stderr)
        return 2
    return run_flow(
        "retention",
        retention,
        plan_path=args.plan,
        prune=args.prune,
        versioning=args.versioning,
        object_lock_days=args.object_lock_days or 0,
        object_lock_mode=args.object_lock_mode,
        at=at,
    )


if __name__ == "__main__":
    sys.exit(main())
