"""Prefect tasks of the backup flow: thin wrappers that add retries, hooks and logging to the core.

Every task body calls one plain function of `mongobackup`. Retries (see `tasks.retries`) apply only to
transient faults (a network blip, a restarted primary); bad credentials, a missing bucket or an unknown GPG key
fail at once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun

from mongobackup import metrics, uploads
from mongobackup.backup import (
    Compression,
    TransferOutcome,
    build_manifest,
    commit_manifest,
    transfer_database,
    verify_upload,
)
from mongobackup.dump import list_databases
from mongobackup.errors import PipelineError
from mongobackup.keys import BackupLocation
from mongobackup.manifest import BackupManifest
from mongobackup.plan import BackupPlan
from mongobackup.redact import redact_text
from mongobackup.roster import record_roster
from tasks.resources import archive_source, encryption_for, event_sink, mongo_client, storage_for


def failure_event_hook(
    plan: BackupPlan, instance: str, database: str | None, tier: str, stage: str
) -> Callable[..., None]:
    """An on_failure hook writing `instance_backup_failed` for this (instance, database); database None: the
    whole instance failed (e.g. it could not be listed).

    Hooks fire after retries are spent and run in the flow's process. A backup whose process dies never gets
    here: the watchdog, which reads the bucket, is the backstop for that.
    """

    def hook(task: Task, task_run: TaskRun, state: State) -> None:
        error = error_of(state)
        failed_stage = error.stage if isinstance(error, PipelineError) else stage
        record_failure(plan, instance, database, tier, failed_stage, str(error))

    return hook


def record_failure(plan: BackupPlan, instance: str, database: str | None, tier: str, stage: str, error: str) -> None:
    """Logs a failed backup with the instance and database named, and writes `instance_backup_failed`."""
    logger = get_run_logger()
    message = redact_text(error)
    logger.error("backup failed: instance %s, database %s, stage %s: %s", instance, database or "*", stage, message)
    sink = event_sink(plan)
    if sink is None:
        return
    try:
        sink.write([metrics.backup_failed(instance, database, tier, stage, message, datetime.now(UTC))])
    except Exception as exc:  # the event is best effort; the Failed run itself stays the truth
        logger.error("could not write %s event: %s", metrics.INSTANCE_BACKUP_FAILED.name, exc)


def error_of(state: State) -> BaseException:
    """The exception a failed state holds (or one carrying its message)."""
    try:
        state.result(raise_on_failure=True)
    except BaseException as exc:
        return exc
    return RuntimeError(state.message or "failed")


@task(name="list-databases", cache_policy=NO_CACHE)
def list_instance_databases(plan: BackupPlan, instance: str, run_id: str) -> tuple[list[str], list[str]]:
    """(found, missing): the databases of `instance` the plan selects (admin/local/config only when listed),
    and those the plan lists by name that the instance does not have (a typo must not back up nothing).

    With `databases: all`, what the instance has is recorded as its roster in the bucket, so that status
    expects each database even when all of its backups are lost."""
    _, instance_plan = plan.instance(instance)
    with mongo_client(plan, instance) as client:
        available = list_databases(client, instance)
    if instance_plan.databases == "all":  # a listed instance's plan says what to expect; no roster needed
        record_roster(storage_for(plan), plan.storage.prefix, instance, available, datetime.now(UTC), run_id)
    selected = plan.select_databases(instance_plan, available)
    found = [name for name in selected if name in available]
    missing = [name for name in selected if name not in available]
    get_run_logger().info("instance %s: %d databases to back up: %s", instance, len(found), ", ".join(found))
    return found, missing


@task(name="preflight", cache_policy=NO_CACHE)
def preflight(plan: BackupPlan) -> None:
    """Fails the run at once, with one clear message, on what would fail every backup: a missing bucket,
    an unknown GPG recipient, a missing secret."""
    storage_for(plan).check_bucket()
    encryption_for(plan)


@task(name="abort-stale-uploads", cache_policy=NO_CACHE)
def abort_stale_uploads(plan: BackupPlan) -> int:
    """Aborts open uploads of ours older than storage.abort_uploads_after_h (left by a killed run); how many."""
    logger = get_run_logger()
    aborted = uploads.abort_stale_uploads(
        storage_for(plan),
        plan.storage.prefix,
        datetime.now(UTC),
        timedelta(hours=plan.storage.abort_uploads_after_h),
        log=logger.warning,
    )
    return len(aborted)


@task(name="transfer", cache_policy=NO_CACHE)
def transfer(plan: BackupPlan, location: BackupLocation) -> TransferOutcome:
    """dump -> zstd -> gpg -> S3 for one database; each retry starts a fresh upload (the failed one is aborted)."""
    logger = get_run_logger()
    gpg, keys = encryption_for(plan)
    compression = Compression(level=plan.compression.level, threads=plan.compression.threads)
    with mongo_client(plan, location.instance) as client:
        dump = archive_source(plan, client, location, log=logger.info)
        outcome = transfer_database(
            dump=dump,
            location=location,
            storage=storage_for(plan),
            gpg=gpg,
            keys=keys,
            compression=compression,
            log=logger.info,
        )
    logger.info(
        "stored %s: %d documents, %d raw -> %d stored bytes in %.1f s",
        location.object_key,
        outcome.summary.documents,
        outcome.raw_bytes,
        outcome.receipt.size,
        outcome.duration_s,
    )
    return outcome


@task(name="verify", cache_policy=NO_CACHE)
def verify(plan: BackupPlan, outcome: TransferOutcome) -> TransferOutcome:
    verify_upload(storage_for(plan), outcome)
    get_run_logger().info(
        "verified %s: %d bytes, ETag %s", outcome.receipt.key, outcome.receipt.size, outcome.receipt.etag
    )
    return outcome


@task(name="commit", cache_policy=NO_CACHE)
def commit(plan: BackupPlan, outcome: TransferOutcome, run_id: str, scheduled_at: datetime) -> BackupManifest:
    manifest = build_manifest(outcome, run_id=run_id, scheduled_at=scheduled_at)
    key = commit_manifest(storage_for(plan), manifest)
    get_run_logger().info("committed %s", key)
    return manifest


@task(name="notify", cache_policy=NO_CACHE)
def notify_database(plan: BackupPlan, manifest: BackupManifest) -> None:
    """The per-database success event; a failure here never touches the stored backup."""
    sink = event_sink(plan)
    if sink is None:
        get_run_logger().warning("plan has no notify section: no success event for %s", manifest.object_key)
        return
    duration = (manifest.finished_at - manifest.started_at).total_seconds()
    sink.write(
        [
            metrics.backup_completed(
                manifest.instance,
                manifest.database,
                manifest.tier,
                manifest.sizes.encrypted_bytes,
                manifest.documents,
                duration,
                manifest.finished_at,
            )
        ]
    )


@task(name="notify-instance", cache_policy=NO_CACHE)
def notify_instance(plan: BackupPlan, instance: str) -> None:
    """`instance_backup_completed,instance=<name> value=true`: what the team's Grafana panel turns green on."""
    sink = event_sink(plan)
    if sink is not None:
        sink.write([metrics.instance_completed(instance, datetime.now(UTC))])
