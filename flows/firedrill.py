"""The `firedrill` flow: prove, with numbers, that the newest backup of every database restores, and that
every tier's archived backups do.

    python -m flows.firedrill --plan PLAN.yaml [--instance NAME ...] [--drill-at TIME]
    python -m flows.firedrill --plan PLAN.yaml --thaw-only [--drill-at TIME]     # the day before the drill

For each database the plan expects (the watchdog's rules: listed databases, or every database with a backup
for `databases: all`; and every key/value snapshot source, see `mongobackup.snapshots.drill`), the newest
committed backup is restored into a fresh database on the plan's scratch
MongoDB (`drill_<database>_<run id>`), verified against its manifest and dropped again, whatever happened.
So is one archived backup per tier with backups (`mongobackup.drill_picks`: the oldest weekly, the newest
archived monthly, quarterly and yearly, in rotation over the databases). Those sit in Glacier: the thaw run
(`--thaw-only`, deployment `firedrill/thaw`, the day before) asks S3 to thaw them, and the drill restores
what is thawed and fails, by name, what is not. Drills run one after another: the scratch server is shared
and a restore is CPU-bound there.

Each backup drilled gets an `instance_restore_drill` event (tags instance, database, tier; the time of each
stage) and a row in the run's artifacts. The run ends Failed when any drill failed: no committed backup, not
thawed, a restore or verification failure, or a newest backup older than `drill.max_age_h` (an old backup is
a missed backup, even if it restores).

With a `pitr` section, one database (at random among those with a window) is also restored to a random
second of its point-in-time window, its oplog chain checked segment by segment (mongobackup.pitr.drill); a
failure there fails the run too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prefect import flow, get_run_logger, runtime
from prefect.artifacts import create_markdown_artifact
from prefect.futures import PrefectFuture
from prefect.states import Failed, State
from prefect.utilities.annotations import allow_failure

from flows.cli import load_plan_or_report, run_flow
from flows.drill_report import drill_state, publish_drill, publish_thaws
from flows.parameters import When
from flows.resources import RunResources
from mongobackup.errors import one_line
from mongobackup.keys import short_run_id
from mongobackup.pitr.drill import PointDrill
from mongobackup.plan import load_plan
from mongobackup.status import StatusRow
from mongobackup.thaw import ThawOutcome
from mongobackup.times import parse_at
from tasks import drill as t
from tasks import pitr as t_pitr
from tasks import snapshot as snapshot_tasks
from tasks.backup import failure_message
from tasks.drill import DrillRow
from tasks.retries import retrying


def _run_name() -> str:
    return "firedrill-" + Path(runtime.flow_run.parameters["plan_path"]).stem


@flow(name="firedrill", flow_run_name=_run_name, log_prints=False)
def firedrill(plan_path: str, instances: tuple[str, ...] = (), thaw_only: bool = False, drill_at: When = None) -> State:
    """Drills the newest committed backup of every expected database and one archived backup per tier;
    Failed when any drill failed.

    Args:
        plan_path: The backup plan (YAML) with its drill section, relative to the project folder the worker
            runs in, or absolute.
        instances: Only these instances of the plan; empty: all of them.
        thaw_only: Only ask for the thaws the drill at drill_at will need (run it the day before), and return.
        drill_at: The drill's time, for the archived picks; empty: now (with thaw_only: a day from now).
    """
    now = datetime.now(UTC)
    with RunResources(load_plan(plan_path)) as resources:
        if thaw_only:
            return _thaw(resources, parse_at(drill_at) if drill_at else now + timedelta(days=1), instances)
        return _drill(resources, now, parse_at(drill_at) if drill_at else now, instances)


def _targets(resources: RunResources, now: datetime, as_of: datetime, instances: list[str] | None) -> list[DrillRow]:
    """A row per backup to drill: the newest of each expected database, then each archived tier's pick."""
    plan, max_age_h = resources.plan, resources.drill.max_age_h
    newest = t.drill_targets.with_options(**retrying(plan))(resources, now, instances)
    picks = t.drill_picks.with_options(**retrying(plan))(resources, as_of, [r for r in newest if r.object_key])
    rows = [_row_for(target, max_age_h) for target in newest]
    for pick in picks:
        location = pick.backup.location
        age_h = (now - location.taken_at).total_seconds() / 3600  # since its scheduled time (the key's)
        rows.append(
            DrillRow(
                location.instance,
                location.database,
                pick.backup.object_key,
                age_h,
                tier=location.tier.value,
                pick=pick.reason,
            )
        )
    return rows


def _drill(resources: RunResources, now: datetime, as_of: datetime, instances: list[str] | None) -> State:
    plan, settings = resources.plan, resources.drill
    run_id = short_run_id(str(runtime.flow_run.id or "local"))
    rows = _targets(resources, now, as_of, instances)
    get_run_logger().info(
        "run %s: %d backups to drill (%d archived picks), max backup age %g h",
        run_id,
        len(rows),
        sum(1 for r in rows if r.pick != "newest"),
        settings.max_age_h,
    )
    drills: list[tuple[DrillRow, PrefectFuture]] = []
    previous: PrefectFuture | None = None
    for row in rows:
        if not row.key or row.state == "Failed":  # nothing restorable: no backup, or an unreadable manifest
            continue
        wait_for = [allow_failure(previous)] if previous is not None else []
        # A snapshot source's row (etcd: restored into a scratch etcd; Consul: restored to a file and checked).
        drill = snapshot_tasks.drill if snapshot_tasks.is_snapshot_source(plan, row.instance) else t.drill_database
        previous = drill.with_options(**retrying(plan)).submit(resources, row.key, run_id, wait_for=wait_for)
        drills.append((row, previous))
    _collect(drills)
    point = _point_in_time(resources, run_id, instances, now) if plan.pitr is not None else None
    notified = _notify(resources, rows, now)
    publish_drill(rows, run_id, settings.max_age_h)
    state = drill_state(rows, notified)
    if point is None or point.passed:
        return state
    failed = f"point-in-time drill failed: {point.describe()}"
    return Failed(message=f"{state.message}; {failed}" if state.is_failed() else failed)


def _thaw(resources: RunResources, as_of: datetime, instances: list[str] | None) -> State:
    """The thaw run: the day before the drill, asks for the thaw of every backup the drill will restore."""
    now, plan = datetime.now(UTC), resources.plan
    rows = [row for row in _targets(resources, now, as_of, instances) if row.key]
    results: list[tuple[DrillRow, ThawOutcome | None, str]] = []
    for row in rows:
        try:
            results.append((row, t.thaw_for_drill.with_options(**retrying(plan))(resources, row.key), ""))
        except Exception as exc:  # one refused thaw must not keep the others from being asked
            results.append((row, None, one_line(exc)))
    return publish_thaws(results, as_of.isoformat())


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
    row = DrillRow(target.instance, target.database, target.object_key or "", target.age_h, tier=target.tier or "")
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
            row.thaw_wait_s, row.download_s, row.restore_s = done.thaw_wait_s, done.download_s, done.restore_s
            row.verify_s, row.total_s = done.verify_s, done.total_s
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.firedrill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", required=True, help="backup plan YAML (with a drill section)")
    parser.add_argument("--instance", action="append", dest="instances", help="only this instance (repeatable)")
    parser.add_argument(
        "--thaw-only", action="store_true", help="ask for the thaws the next drill needs (run the day before)"
    )
    parser.add_argument(
        "--drill-at", help="the drill's ISO-8601 time, for the picks (default: now; --thaw-only: +1 day)"
    )
    args = parser.parse_args(argv)
    if load_plan_or_report("firedrill", args.plan) is None:
        return 2
    return run_flow(
        "firedrill",
        firedrill,
        plan_path=args.plan,
        instances=tuple(args.instances or ()),
        thaw_only=args.thaw_only,
        drill_at=parse_at(args.drill_at, "--drill-at") if args.drill_at else None,
    )


if __name__ == "__main__":
    sys.exit(main())
