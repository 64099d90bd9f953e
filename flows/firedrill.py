"""The `firedrill` flow: prove, with numbers, that the newest backup of every database restores.

    python -m flows.firedrill --plan PLAN.yaml [--instance NAME ...]

For each database the plan expects (the watchdog's rules: listed databases, or every database with a backup
for `databases: all`; and every key/value snapshot source, see `mongobackup.snapshots.drill`), the newest
committed backup is restored into a fresh database on the plan's scratch
MongoDB (`drill_<database>_<run id>`), verified against its manifest and dropped again, whatever happened.
Drills run one after another: the scratch server is shared and a restore is CPU-bound there.

Each database gets an `instance_restore_drill` event and a row in the run's artifacts. The run ends Failed
when any database failed its drill: no committed backup, a restore or verification failure, or a backup
older than `drill.max_age_h` (an old backup is a missed backup, even if it restores).

With a `pitr` section, one database (at random among those with a window) is also restored to a random
second of its point-in-time window, its oplog chain checked segment by segment (mongobackup.pitr.drill); a
failure there fails the run too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger, runtime
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import PrefectFuture
from prefect.states import Completed, Failed, State
from prefect.utilities.annotations import allow_failure

from flows.cli import load_plan_or_report, run_flow
from flows.resources import RunResources
from mongobackup.keys import short_run_id
from mongobackup.pitr.drill import PointDrill
from mongobackup.plan import load_plan
from mongobackup.status import StatusRow
from tasks import drill as t
from tasks import pitr as t_pitr
from tasks import snapshot as snapshot_tasks
from tasks.backup import failure_message
from tasks.drill import DrillRow
from tasks.retries import retrying


def _run_name() -> str:
    return "firedrill-" + Path(runtime.flow_run.parameters["plan_path"]).stem


@flow(name="firedrill", flow_run_name=_run_name, log_prints=False)
def firedrill(plan_path: str, instances: list[str] | None = None) -> State:
    """Drills the newest committed backup of every expected database; Failed when any drill failed."""
    with RunResources(load_plan(plan_path)) as resources:
        return _drill(resources, instances)


def _drill(resources: RunResources, instances: list[str] | None) -> State:
    logger = get_run_logger()
    plan, settings = resources.plan, resources.drill
    now = datetime.now(UTC)
    run_id = short_run_id(str(runtime.flow_run.id or "local"))
    targets = t.drill_targets.with_options(**retrying(plan))(resources, now, instances)
    logger.info("run %s: %d databases to drill, max backup age %g h", run_id, len(targets), settings.max_age_h)

    rows: list[DrillRow] = []
    drills: list[tuple[DrillRow, PrefectFuture]] = []
    previous: PrefectFuture | None = None
    for target in targets:
        row = _row_for(target, settings.max_age_h)
        rows.append(row)
        if target.age_h is None:  # nothing restorable: no backup, or an unreadable manifest
            continue
        wait_for = [allow_failure(previous)] if previous is not None else []
        # A snapshot source's row (etcd: restored into a scratch etcd; Consul: restored to a file and checked).
        drill = snapshot_tasks.drill if snapshot_tasks.is_snapshot_source(plan, target.instance) else t.drill_database
        previous = drill.with_options(**retrying(plan)).submit(resources, target.object_key, run_id, wait_for=wait_for)
        drills.append((row, previous))
    _collect(drills)
    point = _point_in_time(resources, run_id, instances, now) if plan.pitr is not None else None
    notified = _notify(resources, rows, now)
    _publish(rows, run_id, settings.max_age_h)
    state = _final_state(rows, notified)
    if point is None or point.passed:
        return state
    failed = f"point-in-time drill failed: {point.describe()}"
    return Failed(message=f"{state.message}; {failed}" if state.is_failed() else failed)


def _point_in_time(resources: RunResources, run_id: str, instances: list[str] | None, now: datetime) -> PointDrill:
    """The point-in-time drill of one database; its failure is reported, never raised over the other drills."""
    plan = resources.plan
    try:
        drill_task = t_pitr.drill_point_in_time.with_options(**retrying(plan))
        point = drill_task(resources, run_id, instances, now.toordinal())
    except Exception as exc:
        point = PointDrill("*", "*", problems=[" ".join(str(exc).split())[:500] or type(exc).__name__])
    create_markdown_artifact(markdown=point.describe(), key="restore-drill-pitr", description=f"Point-in-time {run_id}")
    try:
        t_pitr.notify_point_drill.with_options(**retrying(plan))(resources, point, now)
    except Exception as exc:  # the result stands; the event is only its echo
        get_run_logger().error("could not write the point-in-time drill event: %s", exc)
    return point


def _row_for(target: StatusRow, max_age_h: float) -> DrillRow:
    row = DrillRow(target.instance, target.database, target.object_key or "", target.age_h)
    if target.age_h is None:
        row.state, row.error = "Failed", target.reason or "no committed backup"
        row.verdict = "not restored"
    elif target.age_h > max_age_h:
        row.stale = True
    return row


def _collect(drills: list[tuple[DrillRow, PrefectFuture]]) -> None:
    for row, future in drills:
        future.wait()
        if future.state.is_completed():
            done: DrillRow = future.result()
            row.verdict, row.bytes, row.docs = done.verdict, done.bytes, done.docs
            row.duration_s, row.restore_mb_s = done.duration_s, done.restore_mb_s
            row.state = "Passed"
        else:
            row.state, row.verdict, row.error = "Failed", "restore failed", failure_message(future.state)
        if row.stale:
            row.state = "Failed"
            stale = f"stale: the newest backup is {row.age_h:.1f} h old"
            row.error = f"{stale}; {row.error}" if row.error else stale


def _notify(resources: RunResources, rows: list[DrillRow], when: datetime) -> bool:
    try:
        t.notify_drill.with_options(**retrying(resources.plan))(resources, rows, when)
    except Exception as exc:  # the drill results stand; the run still fails below, naming the gap
        get_run_logger().error("could not write the drill events: %s", exc)
        return False
    return True


def _publish(rows: list[DrillRow], run_id: str, max_age_h: float) -> None:
    table = [
        {
            "instance": r.instance,
            "database": r.database,
            "key": r.key,
            "age_h": r.age_h,
            "verdict": r.verdict,
            "state": r.state,
            "error": r.error,
            "docs": r.docs,
            "bytes": r.bytes,
            "duration_s": r.duration_s,
            "restore_mb_s": r.restore_mb_s,
        }
        for r in rows
    ]
    create_table_artifact(table=table, key="restore-drill", description=f"Restore drill {run_id}")
    lines = [
        f"Restore drill {run_id}: newest committed backups, max age {max_age_h:g} h",
        "",
        "| instance | database | backup key | age h | verdict | restore s | MB/s | state |",
        "|---|---|---|---:|---|---:|---:|---|",
    ]
    lines += [
        f"| {r.instance} | {r.database} | `{r.key or '-'}` | {_hours(r.age_h)} | {r.verdict} | "
        f"{r.duration_s:.1f} | {r.restore_mb_s:.1f} | {r.state}{': ' + r.error if r.error else ''} |"
        for r in rows
    ]
    create_markdown_artifact(
        markdown="\n".join(lines), key="restore-drill-summary", description=f"Restore drill {run_id}"
    )


def _hours(age_h: float | None) -> str:
    return "-" if age_h is None else f"{age_h:.1f}"


def _final_state(rows: list[DrillRow], notified: bool) -> State:
    failed = [r for r in rows if not r.passed]
    if not rows:
        return Failed(message="nothing to drill: the plan expects no database with a backup")
    if failed or not notified:
        parts = (
            [f"{len(failed)} of {len(rows)} drills failed: " + ", ".join(f"{r.instance}/{r.database}" for r in failed)]
            if failed
            else []
        )
        if not notified:
            parts.append("the drill events could not be written")
        return Failed(message="; ".join(parts))
    return Completed(message=f"{len(rows)} backups restored and verified")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.firedrill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", required=True, help="backup plan YAML (with a drill section)")
    parser.add_argument("--instance", action="append", dest="instances", help="only this instance (repeatable)")
    args = parser.parse_args(argv)
    if load_plan_or_report("firedrill", args.plan) is None:
        return 2
    return run_flow("firedrill", firedrill, plan_path=args.plan, instances=args.instances)


if __name__ == "__main__":
    sys.exit(main())
