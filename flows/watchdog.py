"""The `watchdog` flow: backup status from the bucket on a schedule, and an event for every stale backup.

    python -m flows.watchdog --plan PLAN.yaml [--max-age-h 26] [--at ISO-8601]

The backup flow reports its own failures, but not its absence: a backup process killed mid-run, a paused
deployment or a dead scheduler write nothing at all. The watchdog reads the truth (the manifests in the
bucket, as `python -m flows.status` does) and writes `instance_backup_stale` for each (instance, database)
whose newest committed backup is older than the threshold or missing, so that the dashboard and the alert
rules see it. The run ends Failed when anything is RED, so a Prefect automation on failed runs is a second
alarm that needs no InfluxDB; run it on its own schedule (hourly), on a worker that is not the backup's.
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
from flows.retention import parse_at
from mongobackup.plan import load_plan
from mongobackup.status import StatusReport
from tasks import status as t
from tasks.retries import retrying


def _run_name() -> str:
    return "watchdog-" + Path(runtime.flow_run.parameters["plan_path"]).stem


@flow(name="watchdog", flow_run_name=_run_name, log_prints=False)
def watchdog(plan_path: str, max_age_h: float | None = None, at: str | None = None) -> State:
    """Judges every expected (instance, database) and writes an event per RED one; Failed when any is RED.

    `max_age_h`: overrides the plan's status.max_age_h. `at`: judge as of this ISO-8601 time (default now).
    """
    plan = load_plan(plan_path)
    report = t.read_backup_status.with_options(**retrying(plan))(plan, parse_at(at), max_age_h)
    written = t.write_stale_events.with_options(**retrying(plan))(plan, report) if not report.ok else 0
    _publish(report)
    if report.ok:
        return Completed(message=f"all {len(report.rows)} databases GREEN (max age {report.max_age_h:g} h)")
    names = ", ".join(
        [f"{r.instance}/{r.database}" for r in report.red]
        + [f"{r.instance} oplog ({r.reason})" for r in report.red_pitr]
    )
    get_run_logger().error("stale or missing backups: %s", names)
    red = len(report.red) + len(report.red_pitr)
    return Failed(message=f"{red} of {len(report.rows) + len(report.pitr)} RED: {names}; {written} events written")


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
    parser.add_argument("--at", help="judge as of this ISO-8601 time instead of now")
    args = parser.parse_args(argv)
    if load_plan_or_report("watchdog", args.plan) is None:
        return 2
    return run_flow("watchdog", watchdog, plan_path=args.plan, max_age_h=args.max_age_h, at=args.at)


if __name__ == "__main__":
    sys.exit(main())
