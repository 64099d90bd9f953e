"""Prefect tasks of the `snapshot` flow and of the snapshot drill: thin wrappers around `mongobackup.snapshots`.

The same shape as the backup flow's tasks: one plain function per body, retries on transient faults only
(`tasks.backup.retrying`), failure hooks that write `<kind>_snapshot_failed` after the retries are spent.
A snapshot refused by its integrity check is not transient: it fails at once and is never committed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun

from mongobackup import metrics
from mongobackup.errors import PipelineError
from mongobackup.keys import KV_SNAPSHOT, BackupLocation
from mongobackup.plan import BackupPlan
from mongobackup.redact import redact_text
from mongobackup.snapshots.drill import drill_snapshot
from mongobackup.snapshots.manifest import SnapshotManifest, load_snapshot_manifest
from mongobackup.snapshots.take import (
    TakenSnapshot,
    build_snapshot_manifest,
    commit_snapshot,
    take_snapshot,
    verify_snapshot,
)
from tasks.backup import error_of
from tasks.drill import DrillRow

if TYPE_CHECKING:  # the flow builds the resources and hands them in: tasks never import flows
    from flows.resources import RunResources


def failure_event_hook(resources: RunResources, kind: str, source: str, tier: str, stage: str) -> Callable[..., None]:
    """An on_failure hook writing `<kind>_snapshot_failed` (stage from the error when the pipeline names it)."""

    def hook(task: Task, task_run: TaskRun, state: State) -> None:
        error = error_of(state)
        if isinstance(error, PipelineError):  # the event says why; the log line below has the object key too
            get_run_logger().error("snapshot of %s failed: %s", source, redact_text(str(error)))
            record_failure(resources, kind, source, tier, error.stage, str(error.cause))
        else:
            record_failure(resources, kind, source, tier, stage, str(error))

    return hook


def record_failure(resources: RunResources, kind: str, source: str, tier: str | None, stage: str, error: str) -> None:
    """Logs a failed snapshot naming the source and stage, and writes `<kind>_snapshot_failed`."""
    logger = get_run_logger()
    message = redact_text(error)
    logger.error("snapshot failed: source %s (%s), stage %s: %s", source, kind, stage, message)
    try:
        sink = resources.event_sink
        if sink is None:
            return
        sink.write([metrics.snapshot_failed(kind, source, tier, stage, message, datetime.now(UTC))])
    except Exception as exc:  # the event is best effort; the Failed run itself stays the truth
        logger.error("could not write %s event: %s", metrics.SNAPSHOT_FAILED[kind].name, exc)


@task(name="take-snapshot", cache_policy=NO_CACHE)
def take(resources: RunResources, location: BackupLocation) -> TakenSnapshot:
    """source -> check -> (zstd) -> gpg -> S3 for one source; each retry starts a fresh snapshot and upload."""
    logger = get_run_logger()
    _, source = resources.plan.snapshot_source(location.instance)
    encryption = resources.encryption
    taken = take_snapshot(
        source,
        resources.snapshot_secret(source.name),
        location=location,
        storage=resources.storage,
        gpg=encryption.gpg(),
        keys=encryption.keys,
        compression=resources.plan.compression,
        log=logger.info,
    )
    logger.info(
        "stored %s: %d snapshot bytes -> %d stored in %.1f s",
        location.object_key,
        taken.stored.snapshot_bytes,
        taken.stored.receipt.size,
        taken.stored.duration_s,
    )
    return taken


@task(name="verify-snapshot", cache_policy=NO_CACHE)
def verify(resources: RunResources, taken: TakenSnapshot) -> TakenSnapshot:
    verify_snapshot(resources.storage, taken)
    get_run_logger().info("verified %s: %d bytes", taken.stored.receipt.key, taken.stored.receipt.size)
    return taken


@task(name="commit-snapshot", cache_policy=NO_CACHE)
def commit(resources: RunResources, taken: TakenSnapshot, run_id: str, scheduled_at: datetime) -> SnapshotManifest:
    manifest = build_snapshot_manifest(taken, run_id=run_id, scheduled_at=scheduled_at)
    key = commit_snapshot(resources.storage, manifest)
    get_run_logger().info("committed %s", key)
    return manifest


@task(name="notify-snapshot", cache_policy=NO_CACHE)
def notify(resources: RunResources, manifest: SnapshotManifest) -> None:
    """The success event; a failure here never touches the stored snapshot."""
    sink = resources.event_sink
    if sink is None:
        get_run_logger().warning("plan has no notify section: no success event for %s", manifest.object_key)
        return
    duration = (manifest.finished_at - manifest.started_at).total_seconds()
    sink.write(
        [
            metrics.snapshot_completed(
                manifest.kind,
                manifest.source,
                manifest.tier,
                manifest.sizes.encrypted_bytes,
                manifest.sizes.raw_bytes,
                duration,
                manifest.index,
                manifest.finished_at,
            )
        ]
    )


def is_snapshot_source(plan: BackupPlan, name: str) -> bool:
    return any(source.name == name for source in plan.snapshots)


@task(name="drill-snapshot", cache_policy=NO_CACHE)
def drill(resources: RunResources, object_key: str, run_id: str) -> DrillRow:
    """Restores the snapshot at `object_key` (etcd: into a scratch etcd, keys read back); raises on any failure.

    `run_id` is the drill run's, for the same call shape as a database's drill; nothing here is named by it.
    """
    logger = get_run_logger()
    storage = resources.storage
    location = BackupLocation.parse(object_key, resources.plan.storage.prefix, KV_SNAPSHOT)
    manifest = load_snapshot_manifest(storage, location.manifest_key, object_key, location.instance)
    gpg, passphrase = resources.decryption()
    workdir = Path(tempfile.mkdtemp(prefix=f"drill-{location.instance}-"))
    try:
        result = drill_snapshot(storage, manifest, gpg, workdir, passphrase=passphrase)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    logger.info("drill: %s (%s): %s in %.1f s", location.instance, manifest.kind, result.verdict, result.seconds)
    return DrillRow(
        location.instance,
        location.database,
        object_key,
        verdict=result.verdict,
        bytes=result.object_bytes,
        docs=result.keys,
        duration_s=result.seconds,
        restore_mb_s=round(result.mb_per_s, 3),
        state="Passed",
    )
