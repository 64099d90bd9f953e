"""Prefect tasks of the fire drill: thin wrappers around the core.

What to drill comes from `mongobackup.status` (the same rules and the same bucket reading as the watchdog:
the newest committed backup of each expected database, and its age); each drill is `restore.drill_restore`;
events are `instance_restore_drill` points. The storage, keys and scratch server come from the run's
`flows.resources.RunResources`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mongobackup import metrics
from mongobackup.drill import drill_restore, scratch_database_name
from mongobackup.drill_picks import DrillPick, archived_picks
from mongobackup.dump import open_client
from mongobackup.inventory import load_manifest, scan
from mongobackup.keys import BackupLocation
from mongobackup.metrics import Event
from mongobackup.status import StatusRow, read_status
from mongobackup.thaw import Thawing, ThawOutcome, ThawSettings, request_thaw
from mongobackup.units import MIB

if TYPE_CHECKING:  # the flow builds the resources and hands them in: tasks never import flows
    from flows.resources import RunResources


@dataclass
class DrillRow:
    """One database's drill: one artifact row and one `instance_restore_drill` event."""

    instance: str
    database: str
    key: str = ""
    age_h: float | None = None
    stale: bool = False
    verdict: str = ""
    bytes: int = 0  # of the stored object
    docs: int = 0
    duration_s: float = 0.0
    restore_mb_s: float = 0.0
    state: str = "Pending"  # Passed, Failed
    error: str = ""
    tier: str = ""
    #: Why this backup: `newest` of its database, or an archived tier's pick (`oldest weekly`, ...).
    pick: str = "newest"
    #: Time to restore, by stage (seconds): waiting for a thaw, download and decryption, writing, verifying.
    thaw_wait_s: float = 0.0
    download_s: float = 0.0
    restore_s: float = 0.0
    verify_s: float = 0.0
    total_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.state == "Passed"


def drill_event(row: DrillRow, when: datetime) -> Event:
    """The row as an `instance_restore_drill` point: value true only when it restored, verified and was fresh."""
    tags = {metrics.INSTANCE: row.instance}
    if row.database != "*":
        tags[metrics.DATABASE] = row.database
    if row.tier:
        tags[metrics.TIER] = row.tier
    fields: dict[str, metrics.FieldValue] = {
        metrics.VALUE: row.passed,
        metrics.BYTES: row.bytes,
        metrics.DOCS: row.docs,
        metrics.DURATION_S: float(row.duration_s),
        metrics.RESTORE_MB_S: float(row.restore_mb_s),
        metrics.THAW_WAIT_S: float(row.thaw_wait_s),
        metrics.DOWNLOAD_S: float(row.download_s),
        metrics.RESTORE_S: float(row.restore_s),
        metrics.VERIFY_S: float(row.verify_s),
        metrics.TOTAL_S: float(row.total_s),
    }
    if row.age_h is not None:
        fields[metrics.BACKUP_AGE_H] = float(row.age_h)
    return Event(metrics.INSTANCE_RESTORE_DRILL.name, tags, fields, when)


@task(name="drill-targets", cache_policy=NO_CACHE)
def drill_targets(resources: RunResources, now: datetime, instances: list[str] | None = None) -> list[StatusRow]:
    """The newest committed backup (or why there is none) of every database the plan expects, with its age."""
    report = read_status(resources.storage, resources.plan, now, resources.drill.max_age_h)
    rows = [row for row in report.rows if not instances or row.instance in instances]
    get_run_logger().info("drill targets in s3://%s: %d databases", report.bucket, len(rows))
    return rows


@task(name="drill-picks", cache_policy=NO_CACHE)
def drill_picks(resources: RunResources, as_of: datetime, targets: list[StatusRow]) -> list[DrillPick]:
    """One archived backup per tier (`mongobackup.drill_picks`), among the databases the drill targets."""
    plan = resources.plan
    pairs = {(row.instance, row.database) for row in targets}
    committed = [b for b in scan(resources.storage, plan.storage.prefix).committed() if b.pair in pairs]
    picks = archived_picks(committed, plan.tiers, as_of)
    for pick in picks:
        get_run_logger().info("drill pick %s: %s (%s)", pick.tier.value, pick.backup.object_key, pick.reason)
    return picks


@task(name="thaw-for-drill", cache_policy=NO_CACHE)
def thaw_for_drill(resources: RunResources, object_key: str) -> ThawOutcome:
    """Asks for the thaw of one backup the drill will restore (nothing when it needs none or has one)."""
    plan, storage = resources.plan, resources.storage
    outcome = request_thaw(storage, object_key, ThawSettings.from_plan(plan.restore))
    get_run_logger().info("thaw: %s: %s", storage.where(object_key), outcome.describe(plan.prices))
    return outcome


@task(name="drill-database", cache_policy=NO_CACHE)
def drill_database(resources: RunResources, object_key: str, run_id: str) -> DrillRow:
    """Restores one backup into a fresh scratch database, verifies it, drops it; raises on any failure.

    An archived backup must have been thawed already (the thaw run asks the day before): the drill asks for
    nothing and waits for nothing, and fails naming the key when the backup cannot be read.
    """
    logger = get_run_logger()
    storage = resources.storage
    location = BackupLocation.parse(object_key, resources.plan.storage.prefix)
    manifest = load_manifest(storage, location)
    scratch = scratch_database_name(location.database, run_id)
    gpg, passphrase = resources.decryption()
    # Asks for nothing and waits for nothing: an archived backup not thawed by the thaw run fails, by name.
    thaw = Thawing(ThawSettings.from_plan(resources.plan.restore, wait_s=0, ask=False), say=logger.info)
    logger.info("drill: %s -> scratch database %s", storage.where(object_key), scratch)
    started = time.monotonic()
    with open_client(resources.scratch_uri()) as client:
        result = drill_restore(
            storage, object_key, gpg, client, scratch, manifest=manifest, passphrase=passphrase, thaw=thaw
        )
    total = time.monotonic() - started
    logger.info(
        "drill: %s restored %d documents (%.1f MB) in %.1f s, %.1f MB/s; %s",
        location.database,
        result.documents,
        result.archive_bytes / MIB,
        result.seconds,
        result.mb_per_s,
        result.verdict.summary(),
    )
    return DrillRow(
        location.instance,
        location.database,
        object_key,
        verdict=result.verdict.summary(),
        bytes=result.object_bytes,
        docs=result.documents,
        duration_s=round(result.seconds, 3),
        restore_mb_s=round(result.mb_per_s, 3),
        state="Passed",
        tier=location.tier.value,
        thaw_wait_s=round(result.thaw.waited_s if result.thaw else 0.0, 3),
        download_s=round(result.download_s, 3),
        restore_s=round(max(result.seconds - result.download_s - result.verify_s, 0.0), 3),
        verify_s=round(result.verify_s, 3),
        total_s=round(total, 3),
    )


@task(name="notify-drill", cache_policy=NO_CACHE)
def notify_drill(resources: RunResources, rows: list[DrillRow], when: datetime) -> int:
    """One `instance_restore_drill` event per row; the number written (0 without a notify section)."""
    sink = resources.event_sink
    if sink is None:
        get_run_logger().warning("plan has no notify section: %d drill results are not written as events", len(rows))
        return 0
    # A microsecond apart: two rows of one database and tier (its newest backup is also its tier's pick) stay
    # two points instead of one overwriting the other; a retried write still overwrites itself.
    sink.write([drill_event(row, when + timedelta(microseconds=n)) for n, row in enumerate(rows)])
    return len(rows)
