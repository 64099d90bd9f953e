"""The `backup` flow: every (instance, database) of a plan, dumped, compressed, encrypted and stored in S3.

    python -m flows.backup --plan PLAN.yaml [--at ISO-8601] [--instance NAME ...] [--dry-run]

Per (instance, database) a chain of tasks runs: transfer -> verify -> commit -> notify. Databases of one
instance run one lane at a time (plan: instances[].max_parallel) so a replica set is not hammered; instances
run side by side. One failing database does not stop the others, but the run ends Failed if anything failed.
"""

from __future__ import annotations

import argparse
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, runtime, tags
from prefect.futures import PrefectFuture, as_completed
from prefect.states import State
from prefect.utilities.annotations import allow_failure

from flows.backup_report import WHOLE_INSTANCE, BackupRow, final_state, publish
from flows.cli import load_plan_or_report, run_flow
from flows.fan_out import fan_out
from flows.parameters import When
from flows.resources import RunResources
from mongobackup import uploads
from mongobackup.errors import BackupError
from mongobackup.keys import BackupLocation, short_run_id
from mongobackup.malloc import return_large_buffers
from mongobackup.plan import BackupPlan, load_plan
from mongobackup.tiers import Tier
from mongobackup.times import parse_at
from tasks import backup as t
from tasks.retries import retrying


def planned_locations(
    plan: BackupPlan, databases: dict[str, list[str]], when: datetime, run_id: str
) -> list[BackupLocation]:
    """The backups a run makes: one location per selected (instance, database), all of the run's tier."""
    tier = plan.tiers.tier_for(when)
    return [
        BackupLocation(plan.storage.prefix, tier, instance, database, when, run_id)
        for instance, names in databases.items()
        for database in names
    ]


def scheduled_time(at: str | datetime | None) -> datetime:
    """The time the run's tier is decided from: --at, else the flow run's scheduled start (kept by retries)."""
    if at:
        return parse_at(at)
    return runtime.flow_run.scheduled_start_time.astimezone(UTC)


def selected_instances(plan: BackupPlan, names: Sequence[str] | None) -> list[str]:
    """The plan's instances, or those named; a name the plan does not have is an error, not an empty run."""
    unknown = sorted(set(names or ()) - set(plan.instance_names))
    if unknown:
        raise ValueError(f"--instance {', '.join(unknown)}: not in the plan (it has {', '.join(plan.instance_names)})")
    return [name for name in plan.instance_names if not names or name in names]


def run_name(plan: BackupPlan, when: datetime, instances: Sequence[str] = ()) -> str:
    """`backup-<tier>-<scheduled date in the plan's timezone>`, and `-<instance>` for a run of given instances:
    a nightly run and its instance runs read as one family in the UI, each telling its tier and day."""
    day = plan.tiers.local_time(when).date().isoformat()
    return "-".join(["backup", plan.tiers.tier_for(when).value, day, *instances])


def _flow_run_name() -> str:
    """The run's name from its parameters; the plan file's name when the plan cannot be read (the run then
    fails and says why)."""
    parameters: dict[str, Any] = runtime.flow_run.parameters
    try:
        plan = load_plan(parameters["plan_path"])
        when = scheduled_time(parameters.get("at"))
    except Exception:
        return "backup-" + Path(str(parameters.get("plan_path", "plan"))).stem
    return run_name(plan, when, () if parameters.get("fan_out_deployment") else parameters.get("instances") or ())


@flow(name="backup", flow_run_name=_flow_run_name, log_prints=False)
def backup(plan_path: str, at: When = None, instances: tuple[str, ...] = (), fan_out_deployment: str = "") -> State:
    """Backs up every database the plan selects; ends Failed when any backup or its success event failed.

    Args:
        plan_path: The backup plan (YAML), relative to the project folder the worker runs in, or absolute.
        at: Decide the tier (daily, weekly, ...) from this time instead of the run's scheduled time.
        instances: Only these instances of the plan; empty: all of them.
        fan_out_deployment: Run each instance as its own run of this deployment (backup/nightly gives
            backup/instance), all for this run's scheduled time, and wait for them up to the plan's
            fan_out.deadline_h; empty: back up here.
    """
    return_large_buffers()  # before the tasks' threads allocate: see mongobackup.malloc
    logger = get_run_logger()
    plan = load_plan(plan_path)
    for warning in plan.warnings():
        logger.warning("plan %s: %s", plan_path, warning)
    when = scheduled_time(at)
    tier = plan.tiers.tier_for(when)
    run_id = short_run_id(str(runtime.flow_run.id or "local"))
    wanted = selected_instances(plan, instances)
    logger.info("run %s: tier %s for %s (%s)", run_id, tier.value, when.isoformat(), plan.tiers.timezone)
    if fan_out_deployment:
        deadline = timedelta(hours=plan.fan_out.deadline_h)
        return fan_out(fan_out_deployment, plan_path, when, wanted, run_name=run_name(plan, when), deadline=deadline)
    with RunResources(plan) as resources:
        return _back_up(resources, wanted, when, tier, run_id)


def _back_up(resources: RunResources, wanted: list[str], when: datetime, tier: Tier, run_id: str) -> State:
    """The run's task chains, sharing `resources` (one storage, one key import, one client per instance)."""
    plan = resources.plan
    t.preflight.with_options(
        **retrying(
            plan, on_failure=[t.failure_event_hook(resources, name, None, tier.value, "preflight") for name in wanted]
        )
    )(resources)
    # Uploads left open by a killed run: a failed sweep is logged, it does not stop the backups.
    swept = t.abort_stale_uploads.with_options(**retrying(plan))(resources, return_state=True)
    if not swept.is_completed():
        get_run_logger().warning("stale open uploads not aborted: %s", t.failure_message(swept))
    listings = {
        name: t.list_instance_databases.with_options(
            task_run_name=f"list-databases {name}",
            **retrying(plan, on_failure=[t.failure_event_hook(resources, name, None, tier.value, "list")]),
        ).submit(resources, name, run_id)
        for name in wanted
    }
    open_now = _open_uploads(resources)
    rows: list[BackupRow] = []
    queues: dict[str, deque[tuple[BackupRow, BackupLocation]]] = {}
    for instance, listing in listings.items():
        listing.wait()
        if not listing.state.is_completed():
            error = t.failure_message(listing.state)
            rows.append(BackupRow(instance, WHOLE_INSTANCE, tier.value, "", state="Failed", error=error))
            continue
        found, missing = listing.result()
        for database in missing:
            error = f"instance {instance}: database {database} not found (listed in the plan)"
            t.record_failure(resources, instance, database, tier.value, "list", error)
            rows.append(BackupRow(instance, database, tier.value, "", state="Failed", error=error))
        _warn_other_runs(resources, open_now, {(instance, database) for database in found}, run_id)
        queues[instance] = deque()
        for location in planned_locations(plan, {instance: found}, when, run_id):
            row = BackupRow(instance, location.database, tier.value, location.object_key)
            rows.append(row)
            queues[instance].append((row, location))
    del listings  # their futures hold the listings' results and task engines

    _run_chains(resources, queues, run_id, when)
    for instance in wanted:
        mine = [r for r in rows if r.instance == instance]
        if mine and all(r.state == "Completed" for r in mine):
            try:
                t.notify_instance.with_options(task_run_name=f"notify {instance}")(resources, instance)
            except Exception as exc:
                for r in mine:
                    r.state, r.error = "Completed (notify failed)", str(exc)
    publish(rows, tier.value, run_id)
    return final_state(rows)


def _open_uploads(resources: RunResources) -> list:
    """Our open uploads now (after the sweep of stale ones); none when they cannot be listed (logged)."""
    try:
        return uploads.our_open_uploads(resources.storage, resources.plan.storage.prefix)
    except Exception as exc:  # a listing that fails must not stop the backups; the sweep already said why
        get_run_logger().warning("could not list open uploads: %s", exc)
        return []


def _warn_other_runs(resources: RunResources, open_now: list, databases: set[tuple[str, str]], run_id: str) -> None:
    """Says so when another run is uploading one of these databases right now: a command-line run is not held
    back by the deployment's concurrency limit, and two runs at once store every backup twice."""
    after = timedelta(hours=resources.plan.storage.abort_uploads_after_h)
    prefix = resources.plan.storage.prefix
    for line in uploads.other_runs_uploading(open_now, prefix, databases, datetime.now(UTC), after, run_id):
        get_run_logger().warning(line)


@dataclass
class _Chain:
    """One database's tasks in flight: the row they fill in, and the futures of its last two tasks."""

    row: BackupRow
    committed: PrefectFuture
    notified: PrefectFuture


def _run_chains(
    resources: RunResources,
    queues: dict[str, deque[tuple[BackupRow, BackupLocation]]],
    run_id: str,
    when: datetime,
) -> None:
    """Runs every queued database's chain, at most `max_parallel` per instance at once, instances side by side.

    Each instance has `max_parallel` lanes; a lane runs its chains one after another. Chains are submitted as
    the run goes, one running and one waiting per lane (the waiting one's task runs are created while the
    other transfers, so Prefect's bookkeeping stays off the critical path), and a finished chain's futures are
    dropped once its row is filled in: the run holds at most 2 x `max_parallel` chains per instance whatever
    the number of databases. (Submitting every chain at once kept a thread, a task engine and a result per
    task for the whole run.)
    """
    running: dict[str, list[_Chain]] = {instance: [] for instance in queues}
    tails: dict[str, list[PrefectFuture | None]] = {
        instance: [None] * resources.plan.instance(instance)[1].max_parallel for instance in queues
    }
    submitted = dict.fromkeys(queues, 0)
    while True:
        for instance, queue in queues.items():
            lanes = tails[instance]
            while queue and len(running[instance]) < 2 * len(lanes):
                lane = submitted[instance] % len(lanes)
                row, location = queue.popleft()
                chain = _Chain(row, *_submit_chain(resources, location, run_id, when, after=lanes[lane]))
                lanes[lane] = chain.notified
                submitted[instance] += 1
                running[instance].append(chain)
        in_flight = {chain.notified: chain for chains in running.values() for chain in chains}
        if not in_flight:
            return
        finished = in_flight[next(iter(as_completed(list(in_flight))))]
        _collect(finished)
        running[finished.row.instance].remove(finished)


def _submit_chain(
    resources: RunResources, location: BackupLocation, run_id: str, when: datetime, after: PrefectFuture | None
) -> tuple[PrefectFuture, PrefectFuture]:
    plan, hook = resources.plan, t.failure_event_hook
    instance, database, tier = location.instance, location.database, location.tier.value
    wait_for = [allow_failure(after)] if after is not None else []
    # Only the transfer reads the instance: its tag lets a Prefect tag concurrency limit bound the instance's
    # load across runs. Every tagged task costs a call to the server's concurrency API (a write transaction,
    # which a busy SQLite server answers with 503 and a retry seconds later), so the S3 and event steps after
    # it are not tagged.
    with tags(f"mongo-instance:{instance}"):
        stored = t.transfer.with_options(
            task_run_name=_named("transfer", instance, database),
            **retrying(plan, on_failure=[hook(resources, instance, database, tier, "transfer")]),
        ).submit(resources, location, wait_for=wait_for)
    verified = t.verify.with_options(
        task_run_name=_named("verify", instance, database),
        **retrying(plan, on_failure=[hook(resources, instance, database, tier, "verify")]),
    ).submit(resources, stored)
    committed = t.commit.with_options(
        task_run_name=_named("commit", instance, database),
        **retrying(plan, on_failure=[hook(resources, instance, database, tier, "commit")]),
    ).submit(resources, verified, run_id, when)
    notified = t.notify_database.with_options(
        task_run_name=_named("notify", instance, database), **retrying(plan)
    ).submit(resources, committed)
    return committed, notified


def _named(step: str, instance: str, database: str):
    """`transfer rs-a/shop`: a callable, so that Prefect does not read braces in a database name as a template."""
    return lambda: f"{step} {instance}/{database}"


def _collect(chain: _Chain) -> None:
    """Fills in the chain's row from its finished tasks (the notify task has ended, run or not)."""
    row, committed, notified = chain.row, chain.committed, chain.notified
    committed.wait()
    if committed.state.is_completed():
        manifest = committed.result()
        row.bytes, row.docs = manifest.sizes.encrypted_bytes, manifest.documents
        row.duration_s = round((manifest.finished_at - manifest.started_at).total_seconds(), 2)
        row.state = "Completed"
        notified.wait()
        if not notified.state.is_completed():
            row.state, row.error = "Completed (notify failed)", t.failure_message(notified.state)
    else:
        row.state, row.error = "Failed", t.failure_message(committed.state)


def dry_run_lines(plan: BackupPlan, when: datetime, instances: Sequence[str] | None = None) -> list[str]:
    """`<tier> <instance> <database> <object key>` for each planned backup, reading no data and no storage.

    Only the database names are read from each instance (for `databases: all`). The run id of a real run is
    not known yet, so keys show `dryrun` in its place.
    """
    from mongobackup.dump import list_databases

    databases: dict[str, list[str]] = {}
    with RunResources(plan) as resources:
        for name in selected_instances(plan, instances):
            instance = plan.instance(name)[1]
            if isinstance(instance.databases, list):
                available = list(instance.databases)
            else:
                available = list_databases(resources.mongo_client(name), name)
            databases[name] = plan.select_databases(instance, available)
    return [
        f"{loc.tier.value} {loc.instance} {loc.database} {loc.object_key}"
        for loc in planned_locations(plan, databases, when, "dryrun")
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.backup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", required=True, help="backup plan YAML")
    parser.add_argument("--at", help="decide the tier from this ISO-8601 time instead of now")
    parser.add_argument("--instance", action="append", dest="instances", help="only this instance (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="list the planned backups; touch nothing")
    args = parser.parse_args(argv)
    plan = load_plan_or_report("backup", args.plan)
    if plan is None:
        return 2
    try:
        selected_instances(plan, args.instances)
    except ValueError as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        when = scheduled_time(args.at) if args.at else datetime.now(UTC)
        try:
            lines = dry_run_lines(plan, when, args.instances)
        except BackupError as exc:  # an instance it must list is unreachable, or its URI is unusable
            print(f"backup: dry run: {exc}", file=sys.stderr)
            return 1
        for line in lines:
            print(line)
        return 0
    try:
        at = parse_at(args.at) if args.at else None  # the run form's type: a datetime, read by the one --at rule
    except ValueError as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return 2
    return run_flow("backup", backup, plan_path=args.plan, at=at, instances=tuple(args.instances or ()))


if __name__ == "__main__":
    sys.exit(main())
