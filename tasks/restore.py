"""Prefect tasks of the fire drill, and the plan resources a restore needs: thin wrappers around the core.

What to drill comes from `mongobackup.status` (the same rules and the same bucket reading as the watchdog:
the newest committed backup of each expected database, and its age); each drill is `restore.drill_restore`;
events are `instance_restore_drill` points. The decryption resources are here, not in `tasks.resources`,
because only a restore needs a private key or the scratch server.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mongobackup import metrics
from mongobackup.crypto import Gpg
from mongobackup.drill import drill_restore, scratch_database_name
from mongobackup.dump import open_client
from mongobackup.errors import BackupError
from mongobackup.inventory import load_manifest
from mongobackup.keys import BackupLocation
from mongobackup.metrics import Event
from mongobackup.plan import BackupPlan, DrillPlan
from mongobackup.status import StatusRow, read_status
from tasks.resources import event_sink, secret_value, storage_for


class DrillNotConfigured(BackupError):
    """The plan has no `drill` section: there is no scratch server to restore into."""


def drill_settings(plan: BackupPlan) -> DrillPlan:
    if plan.drill is None:
        raise DrillNotConfigured(
            "drill: the plan has no drill section (drill.scratch_uri or scratch_uri_env): "
            "there is no scratch MongoDB to restore into"
        )
    return plan.drill


def scratch_uri(plan: BackupPlan) -> str:
    """The scratch MongoDB of the drill, from the plan, an environment variable or a Prefect Secret block."""
    drill = drill_settings(plan)
    if drill.scratch_uri:
        return drill.scratch_uri
    value = secret_value(
        "drill.scratch_uri_env" if drill.scratch_uri_env else "drill.scratch_uri_secret",
        env=drill.scratch_uri_env,
        secret=drill.scratch_uri_secret,
    )
    assert value is not None  # the plan schema requires exactly one source
    return value


def decryption_for(plan: BackupPlan, gnupghome: str | Path | None = None) -> tuple[Gpg, str | None]:
    """The GnuPG home holding the private key (argument, else drill.gnupghome, else encryption.gnupghome, else
    $GNUPGHOME) and, for symmetric plans, the passphrase."""
    home = gnupghome or (plan.drill.gnupghome if plan.drill else None) or plan.encryption.gnupghome
    settings = plan.encryption
    passphrase = secret_value("encryption.passphrase", env=settings.passphrase_env, secret=settings.passphrase_secret)
    return Gpg(home), passphrase


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

    @property
    def passed(self) -> bool:
        return self.state == "Passed"


def drill_event(row: DrillRow, when: datetime) -> Event:
    """The row as an `instance_restore_drill` point: value true only when it restored, verified and was fresh."""
    tags = {metrics.INSTANCE: row.instance}
    if row.database != "*":
        tags[metrics.DATABASE] = row.database
    fields: dict[str, metrics.FieldValue] = {
        metrics.VALUE: row.passed,
        metrics.BYTES: row.bytes,
        metrics.DOCS: row.docs,
        metrics.DURATION_S: float(row.duration_s),
        metrics.RESTORE_MB_S: float(row.restore_mb_s),
    }
    if row.age_h is not None:
        fields[metrics.BACKUP_AGE_H] = float(row.age_h)
    return Event(metrics.INSTANCE_RESTORE_DRILL.name, tags, fields, when)


@task(name="drill-targets", cache_policy=NO_CACHE)
def drill_targets(plan: BackupPlan, now: datetime, instances: list[str] | None = None) -> list[StatusRow]:
    """The newest committed backup (or why there is none) of every database the plan expects, with its age."""
    report = read_status(storage_for(plan), plan, now, drill_settings(plan).max_age_h)
    rows = [row for row in report.rows if not instances or row.instance in instances]
    get_run_logger().info("drill targets in s3://%s: %d databases", report.bucket, len(rows))
    return rows


@task(name="drill-database", cache_policy=NO_CACHE)
def drill_database(plan: BackupPlan, object_key: str, run_id: str) -> DrillRow:
    """Restores one backup into a fresh scratch database, verifies it, drops it; raises on any failure."""
    logger = get_run_logger()
    storage = storage_for(plan)
    location = BackupLocation.parse(object_key, plan.storage.prefix)
    manifest = load_manifest(storage, location)
    scratch = scratch_database_name(location.database, run_id)
    gpg, passphrase = decryption_for(plan)
    logger.info("drill: %s -> scratch database %s", storage.where(object_key), scratch)
    with open_client(scratch_uri(plan)) as client:
        result = drill_restore(storage, object_key, gpg, client, scratch, manifest=manifest, passphrase=passphrase)
    logger.info(
        "drill: %s restored %d documents (%.1f MB) in %.1f s, %.1f MB/s; %s",
        location.database,
        result.documents,
        result.archive_bytes / 2**20,
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
    )


@task(name="notify-drill", cache_policy=NO_CACHE)
def notify_drill(plan: BackupPlan, rows: list[DrillRow], when: datetime) -> int:
    """One `instance_restore_drill` event per row; the number written (0 without a notify section)."""
    sink = event_sink(plan)
    if sink is None:
        get_run_logger().warning("plan has no notify section: %d drill results are not written as events", len(rows))
        return 0
    sink.write([drill_event(row, when) for row in rows])
    return len(rows)
