"""Prefect tasks of the backup flow: thin wrappers that add retries, hooks and logging to the core.

Every task body calls one plain function of `mongobackup`. Retries (see `tasks.retries`) apply only to
transient faults (a network blip, a restarted primary); bad credentials, a missing bucket or an unknown GPG key
fail at once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun

from mongobackup import metrics, uploads
from mongobackup.backup import (
    TransferOutcome,
    build_manifest,
    commit_manifest,
    transfer_database,
    verify_upload,
)
from mongobackup.dump import list_databases
from mongobackup.errors import PipelineError, one_line
from mongobackup.keys import BackupLocation
from mongobackup.manifest import BackupManifest
from mongobackup.redact import redact_text
from mongobackup.roster import record_roster

if TYPE_CHECKING:  # the flow builds the resources and hands them in: tasks never import flows
    from flows.resources import RunResources


def failure_event_hook(
    resources: RunResources, instance: str, database: str | None, tier: str, stage: str
) -> Callable[..., None]:
    """An on_failure hook writing `instance_backup_failed` for this (instance, database); database None: the
    whole instance failed (e.g. it could not be listed).

    Hooks fire after retries are spent and run in the flow's process. A backup whose process dies never gets
    here: the watchdog, which reads the bucket, is the backstop for that.
    """

    def hook(task: Task, task_run: TaskRun, state: State) -> None:
        error = error_of(state)
        failed_stage = error.stage if isinstance(error, PipelineError) else stage
        record_failure(resources, instance, database, tier, failed_stage, str(error))

    return hook


def record_failure(
    resources: RunResources, instance: str, database: str | None, tier: str, stage: str, error: str
) -> None:
    """Logs a failed backup with the instance and database named, and writes `instance_backup_failed`."""
    logger = get_run_logger()
    message = redact_text(error)
    logger.error("backup failed: instance %s, database %s, stage %s: %s", instance, database or "*", stage, message)
    try:
        sink = resources.event_sink
        if sink is None:
            return
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


def failure_message(state: State) -> str:
    """What a failed task or flow state says, on one line (for an artifact row or a run's message)."""
    return one_line(error_of(state))


@task(name="list-databases", cache_policy=NO_CACHE)
def list_instance_databases(resources: RunResources, instance: str, run_id: str) -> tuple[list[str], list[str]]:
    """(found, missing): the databases of `instance` the plan selects (admin/local/config only when listed),
    and those the plan lists by name that the instance does not have (a typo must not back up nothing).

    With `databases: all`, what the instance has is recorded as its roster in the bucket, so that status
    expects each database even when all of its backups are lost."""
    plan = resources.plan
    available = list_databases(resources.mongo_client(instance), instance)
    if plan.instance(instance)[1].databases == "all":  # a listed instance's plan says what to expect
        record_roster(resources.storage, plan.storage.prefix, instance, available, datetime.now(UTC), run_id)
    selected = plan.select_databases(instance, available)
    found = [name for name in selected if name in available]
    missing = [name for name in selected if name not in available]
    get_run_logger().info("instance %s: %d databases to back up: %s", instance, len(found), ", ".join(found))
    return found, missing


@task(name="preflight", cache_policy=NO_CACHE)
def preflight(resources: RunResources) -> None:
    """Fails the run at once, with one clear message, on what would fail every backup: a missing bucket,
    an unknown GPG recipient, a missing secret. Builds the run's storage and keys on the way."""
    resources.storage.check_bucket()
    resources.encryption  # noqa: B018 - built (key files imported, recipients resolved) or raises


@task(name="abort-stale-uploads", cache_policy=NO_CACHE)
def abort_stale_uploads(resources: RunResources) -> int:
    """Aborts open uploads of ours older than storage.abort_uploads_after_h (left by a killed run); how many."""
    logger, plan = get_run_logger(), resources.plan
    aborted = uploads.abort_stale_uploads(
        resources.storage,
        plan.storage.prefix,
        datetime.now(UTC),
        timedelta(hours=plan.storage.abort_uploads_after_h),
        log=logger.warning,
    )
    return len(aborted)


@task(name="transfer", cache_policy=NO_CACHE)
def transfer(resources: RunResources, location: BackupLocation) -> TransferOutcome:
    """dump -> zstd -> gpg -> S3 for one database; each retry starts a fresh upload (the failed one is aborted)."""
    logger = get_run_logger()
    encryption = resources.encryption
    outcome = transfer_database(
        dump=resources.archive_source(location, log=logger.info),
        location=location,
        storage=resources.storage,
        gpg=encryption.gpg(),
        keys=encryption.keys,
        compression=resources.plan.compression,
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
def verify(resources: RunResources, outcome: TransferOutcome) -> TransferOutcome:
    verify_upload(resources.storage, outcome)
    get_run_logger().info(
        "verified %s: %d bytes, ETag %s", outcome.receipt.key, outcome.receipt.size, outcome.receipt.etag
    )
    return outcome


@task(name="commit", cache_policy=NO_CACHE)
def commit(resources: RunResources, outcome: TransferOutcome, run_id: str, scheduled_at: datetime) -> BackupManifest:
    manifest = build_manifest(outcome, run_id=run_id, scheduled_at=scheduled_at)
    key = commit_manifest(resources.storage, manifest)
    get_run_logger().info("committed %s", key)
    return manifest


@task(name="notify", cache_policy=NO_CACHE)
def notify_database(resources: RunResources, manifest: BackupManifest) -> None:
    """The per-database success event; a failure here never touches the stored backup."""
    sink = resources.event_sink
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
def notify_instance(resources: RunResources, instance: str) -> None:
    """`instance_backup_completed,instance=<name> value=true`: what the team's Grafana panel turns green on."""
    sink = resources.event_sink
    if sink is not None:
        sink.write([metrics.instance_completed(instance, datetime.now(UTC))])
