"""The `watchdog` flow: backup status from the bucket on a schedule, and an event for every stale backup.

    python -m flows.watchdog --plan PLAN.yaml [--max-age-h 26] [--at ISO-8601 [--emit]]

The backup flow reports its own failures, but not its absence: a backup process killed mid-run, a paused
deployment or a dead scheduler write nothing at all. The watchdog reads the truth (the manifests in the
bucket, as `python -m flows.status` does) and writes `instance_backup_stale` for each (instance, database)
whose newest committed backup is older than the threshold or missing, so that the dashboard and the alert
rules see it. The run ends Failed when anything is RED, so a Prefect automation on failed runs is a second
alarm that needs no InfluxDB; run it on its own schedule (hourly), on a worker that is not the backup's.

`--at` judges as of another time: a what-if that writes no event and ends Completed with what would be RED
(a stale point 40 h ahead would otherwise show as a live alarm at once); `--emit` writes the events anyway.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from prefect import flow, get_run_logger, runtime
from prefect.artifacts import create_table_artifact
from prefect.states import Completed, Failed, State

from flows.cli import load_plan_or_report, run_flow
from flows.parameters import When
from flows.resources import RunResources
from mongobackup.plan import load_plan
from mongobackup.status import StatusReport
from mongobackup.times import parse_at
from tasks import status as t
from tasks.retries import retrying


def _run_name() -> str:
    return "watchdog-" + Path(runtime.flow_run.parameters["plan_path"]).stem


@flow(name="watchdog", flow_run_name=_run_name, log_prints=False)
def watchdog(plan_path: str, max_age_h: float = 0.0, at: When = None, emit: bool = False) -> State:
    """Judges every expected (instance, database) and writes an event per RED one; Failed when any is RED.

    Args:
        plan_path: The backup plan (YAML), relative to the project folder the worker runs in, or absolute.
        max_age_h: RED when the newest committed backup is older than this many hours; 0: the plan's
            status.max_age_h.
        at: Judge as of this time instead of now: a what-if, which writes no event and does not fail (both
            are alarms) unless emit asks for them.
        emit: With at: write the stale events and fail all the same.
    """
    plan = load_plan(plan_path)
    alarms = at is None or emit
    with RunResources(plan) as resources:
        report = t.read_backup_status.with_options(**retrying(plan))(resources, parse_at(at), max_age_h or None)
        writes = not report.ok and alarms
        written = t.write_stale_events.with_options(**retrying(plan))(resources, report) if writes else 0
    _publish(report)
    if report.ok:
        return Completed(message=f"all {len(report.rows)} databases GREEN (max age {report.max_age_h:g} h)")
    names = ", ".join(
        [f"{r.instance}/{r.database}" for r in report.red]
        + [f"{r.instance} oplog ({r.reason})" for r in report.red_pitr]
    )
    red, judged = len(report.red) + len(report.red_pitr), len(report.rows) + len(report.pitr)
    if not alarms:
        return Completed(
            message=f"what-if at {report.now.isoformat()}: {red} of {judged} would be RED: "
            f"{names}; no events written (emit / --emit writes them)"
        )
    get_run_logger().error("stale or missing backups: %s", names)
    return Failed(message=f"{red} of {judged} RED: {names}; {written} events written")


def _publish(report: StatusReport) -> None:
    table = [
        {
            "health": r.health.value,
            "instance": r.instance,
            "database": r.database,
            "age_h": r.age_h,
            "tier": r.tier,
            "size_bytes": r.size_bytes,
            "finished_at": r.finished_at.isoformat() if r.finished_at else None,
            "note": r.reason,
        }
        for r in report.rows
    ] + [
        {
            "health": "GREEN" if r.green else "RED",
            "instance": r.instance,
            "database": "(oplog)",
            "age_h": None,
            "tier": None,
            "size_bytes": None,
            "finished_at": r.newest.isoformat() if r.newest else None,
            "note": f"recovery point lag {r.lag_s} s; {r.reason}".rstrip("; "),
        }
        for r in report.pitr
    ]
    create_table_artifact(
        table=table,
        key="backup-status",
        description=f"Backup status of s3://{report.bucket} at {report.now.isoformat()} "
        f"(max age {report.max_age_h:g} h)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.watchdog", description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", required=True, help="backup plan YAML")
    parser.add_argument("--max-age-h", type=float, help="RED above this age in hours (default: the plan's)")
    parser.add_argument("--at", help="judge as of this ISO-8601 time instead of now: a what-if, no events")
    parser.add_argument("--emit", action="store_true", help="with --at: write the stale events all the same")
    args = parser.parse_args(argv)
    if args.emit and not args.at:
        parser.error("--emit goes with --at (a run as of now always writes its events)")
    if load_plan_or_report("watchdog", args.plan) is None:
        return 2
    try:
        at = parse_at(args.at) if args.at else None  # the run form's type: a datetime, read by the one --at rule
    except ValueError as exc:
        parser.error(str(exc))
    max_age_h = args.max_age_h or 0.0
    return run_flow("watchdog", watchdog, plan_path=args.plan, max_age_h=max_age_h, at=at, emit=args.emit)


if __name__ == "__main__":
    sys.exit(main())
