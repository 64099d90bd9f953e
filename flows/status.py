"""Backup status from the bucket: the newest committed backup of each (instance, database), GREEN or RED.

    python -m flows.status --plan PLAN.yaml [--json] [--max-age-h 26] [--at ISO-8601]

Reads only the bucket (one listing and one manifest per database): no MongoDB, no Prefect, no InfluxDB, so it
answers when any of those is down. Exit status: 0 all GREEN, 1 something RED, 2 bad plan or arguments,
3 the bucket could not be read. See `mongobackup.status` for which databases are expected.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from flows.resources import RunResources
from mongobackup.errors import BackupError
from mongobackup.plan import PlanError, load_plan
from mongobackup.status import read_status
from mongobackup.times import parse_at

EXIT_GREEN, EXIT_RED, EXIT_USAGE, EXIT_UNREADABLE = 0, 1, 2, 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.status", description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", required=True, help="backup plan YAML")
    parser.add_argument("--json", action="store_true", help="print a JSON document instead of a table")
    parser.add_argument(
        "--max-age-h", type=float, help="RED above this age in hours (default: the plan's status.max_age_h, 26)"
    )
    parser.add_argument("--at", help="judge as of this ISO-8601 time instead of now")
    args = parser.parse_args(argv)
    if args.max_age_h is not None and args.max_age_h <= 0:
        parser.error("--max-age-h must be positive")
    try:
        plan = load_plan(args.plan)
        now = parse_at(args.at)
    except (PlanError, ValueError) as exc:
        print(f"status: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = read_status(RunResources(plan).storage, plan, now, args.max_age_h)
    except BackupError as exc:
        print(f"status: cannot read the backups: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    print(json.dumps(report.to_json_dict(), indent=2) if args.json else report.table())
    return EXIT_GREEN if report.ok else EXIT_RED


if __name__ == "__main__":
    sys.exit(main())
