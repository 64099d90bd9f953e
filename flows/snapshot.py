"""The `snapshot` flow: every key/value store of the plan (`snapshots:`, Consul and etcd) snapshotted, checked,
encrypted and stored in S3 beside the database backups.

    python -m flows.snapshot --plan PLAN.yaml [--at ISO-8601] [--source NAME ...] [--dry-run]

Per source a chain of tasks runs: take (stream, check, store) -> verify -> commit -> notify, the same
stages and commit rule as a database's backup. Sources run side by side (tasks are tagged
`kv-source:<name>` for a tag concurrency limit); one failing source does not stop the others, but the run
ends Failed if anything failed. The tier comes from the run's scheduled time, as for the backup flow.

A flow of its own, not a part of `backup`: a Consul or etcd outage is not a MongoDB backup failure and must
not turn the database run red (nor the other way round); each has its own runs, retries, artifacts and
schedule in the Prefect UI, and a snapshot deployment can run on a worker that can reach the control plane.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prefect import flow, get_run_logger, runtime, tags
from prefect.artifacts import create_table_artifact
from prefect.futures import PrefectFuture
from prefect.states import Completed, Failed, State

from flows.backup import scheduled_time
from flows.cli import load_plan_or_report, run_flow
from flows.fan_out import fan_out
from flows.parameters import When
from flows.resources import RunResources
from mongobackup.keys import BackupLocation, short_run_id
from mongobackup.plan import BackupPlan, load_plan
from mongobackup.times import parse_at
from tasks import snapshot as t
from tasks.backup import failure_message, preflight
from tasks.retries import retrying

#: How long a fanned-out parent waits for its source runs (a snapshot takes minutes; the night is long).
FAN_OUT_DEADLINE = timedelta(hours=6)


@dataclass
class SnapshotRow:
    """One line of the run's artifact table."""

    source: str
    kind: str
    tier: str
    key: str
    bytes: int = 0
    snapshot_bytes: int = 0
    index: int = 0
    duration_s: float = 0.0
    state: str = "Pending"
    error: str = ""


def selected_sources(plan: BackupPlan, names: Sequence[str] | None) -> list[str]:
    """The plan's snapshot sources, or those named; a name the plan does not have is an error."""
    known = [source.name for source in plan.snapshots]
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        raise ValueError(f"--source {', '.join(unknown)}: not in the plan (it has {', '.join(known) or 'none'})")
    return [name for name in known if not names or name in names]


def planned_locations(plan: BackupPlan, names: Sequence[str], when: datetime, run_id: str) -> list[BackupLocation]:
    tier = plan.tiers.tier_for(when)
    return [BackupLocation.snapshot(plan.storage.prefix, tier, name, when, run_id) for name in names]


def _run_name() -> str:
    return "snapshot-" + Path(runtime.flow_run.parameters["plan_path"]).stem


@flow(name="snapshot", flow_run_name=_run_name, log_prints=False)
def snapshot(plan_path: str, at: When = None, sources: tuple[str, ...] = (), fan_out_deployment: str = "") -> State:
    """Snapshots every key/value store the plan names; returns Failed when any snapshot or event failed.

    Args:
        plan_path: The backup plan (YAML), relative to the project folder the worker runs in, or absolute.
        at: Decide the tier from this time instead of the run's scheduled time.
        sources: Only these snapshot sources of the plan; empty: all of them.
        fan_out_deployment: Run each source as its own run of this deployment (prefect.yaml: snapshot/source);
            empty: snapshot here.
    """
    logger = get_run_logger()
    plan = load_plan(plan_path)
    when = scheduled_time(at)
    tier = plan.tiers.tier_for(when)
    run_id = short_run_id(str(runtime.flow_run.id or "local"))
    wanted = selected_sources(plan, sources)
    logger.info("run %s: tier %s for %s, %d sources", run_id, tier.value, when.isoformat(), len(wanted))
    if not wanted:
        return Completed(message="the plan names no snapshot sources")
    if fan_out_deployment:
        return fan_out(
            fan_out_deployment,
            plan_path,
            when,
            wanted,
            run_name=runtime.flow_run.name or "snapshot",
            deadline=FAN_OUT_DEADLINE,
            parameter="sources",
        )

    with RunResources(plan) as resources:
        return _snapshot(resources, wanted, when, run_id)


def _snapshot(resources: RunResources, wanted: list[str], when: datetime, run_id: str) -> State:
    """The run's task chains, sharing `resources` (one storage, one key import)."""
    plan = resources.plan
    tier = plan.tiers.tier_for(when)
    kinds = {source.name: source.kind for source in plan.snapshots}
    preflight.with_options(
        **retrying(
            plan,
            on_failure=[t.failure_event_hook(resources, kinds[name], name, tier.value, "preflight") for name in wanted],
        )
    )(resources)
    chains = []
    for location in planned_locations(plan, wanted, when, run_id):
        row = SnapshotRow(location.instance, kinds[location.instance], tier.value, location.object_key)
        chains.append((row, *_submit_chain(resources, row.kind, location, run_id, when)))
    rows = [_collect(row, committed, notified) for row, committed, notified in chains]
    _publish(rows, run_id, tier.value)
    return _final_state(rows)


def _submit_chain(
    resources: RunResources, kind: str, location: BackupLocation, run_id: str, when: datetime
) -> tuple[PrefectFuture, PrefectFuture]:
    plan, source, tier = resources.plan, location.instance, location.tier.value

    def hook(stage: str) -> list:
        return [t.failure_event_hook(resources, kind, source, tier, stage)]

    with tags(f"kv-source:{source}"):
        taken = t.take.with_options(**retrying(plan, on_failure=hook("take"))).submit(resources, location)
        verified = t.verify.with_options(**retrying(plan, on_failure=hook("verify"))).submit(resources, taken)
        committed = t.commit.with_options(**retrying(plan, on_failure=hook("commit"))).submit(
            resources, verified, run_id, when
        )
        notified = t.notify.with_options(**retrying(plan)).submit(resources, committed)
    return committed, notified


def _collect(row: SnapshotRow, committed: PrefectFuture, notified: PrefectFuture) -> SnapshotRow:
    committed.wait()
    if not committed.state.is_completed():
        row.state, row.error = "Failed", failure_message(committed.state)
        return row
    manifest = committed.result()
    row.bytes, row.snapshot_bytes, row.index = manifest.sizes.encrypted_bytes, manifest.sizes.raw_bytes, manifest.index
    row.duration_s = round((manifest.finished_at - manifest.started_at).total_seconds(), 2)
    row.state = "Completed"
    notified.wait()
    if not notified.state.is_completed():
        row.state, row.error = "Completed (notify failed)", failure_message(notified.state)
    return row


def _publish(rows: list[SnapshotRow], run_id: str, tier: str) -> None:
    table = [
        {
            "source": r.source,
            "kind": r.kind,
            "tier": r.tier,
            "key": r.key,
            "bytes": r.bytes,
            "snapshot_bytes": r.snapshot_bytes,
            "index": r.index,
            "duration_s": r.duration_s,
            "state": r.state,
            "error": r.error,
        }
        for r in rows
    ]
    create_table_artifact(table=table, key="snapshot-run", description=f"Snapshots of run {run_id} (tier {tier})")


def _final_state(rows: list[SnapshotRow]) -> State:
    failed = [r for r in rows if r.state == "Failed"]
    unnotified = [r for r in rows if r.state == "Completed (notify failed)"]
    if failed or unnotified:
        parts = []
        if failed:
            parts.append(f"{len(failed)} of {len(rows)} snapshots failed: " + ", ".join(r.source for r in failed))
        if unnotified:
            parts.append(f"{len(unnotified)} stored snapshots have no success event (InfluxDB write failed)")
        return Failed(message="; ".join(parts))
    return Completed(message=f"{len(rows)} snapshots stored and committed")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.snapshot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", required=True, help="backup plan YAML (with a snapshots section)")
    parser.add_argument("--at", help="decide the tier from this ISO-8601 time instead of now")
    parser.add_argument("--source", action="append", dest="sources", help="only this source (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="list the planned snapshots; touch nothing")
    args = parser.parse_args(argv)
    plan = load_plan_or_report("snapshot", args.plan)
    if plan is None:
        return 2
    try:
        names = selected_sources(plan, args.sources)
        when = scheduled_time(args.at) if args.at else datetime.now(UTC)
    except ValueError as exc:
        print(f"snapshot: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        kinds = {source.name: source.kind for source in plan.snapshots}
        for location in planned_locations(plan, names, when, "dryrun"):
            print(f"{location.tier.value} {location.instance} {kinds[location.instance]} {location.object_key}")
        return 0
    at = parse_at(args.at) if args.at else None  # the run form's type: a datetime, read by the one --at rule
    return run_flow("snapshot", snapshot, plan_path=args.plan, at=at, sources=tuple(args.sources or ()))


if __name__ == "__main__":
    sys.exit(main())
