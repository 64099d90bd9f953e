"""Backup status from the truth: the newest committed backup of each (instance, database), read from the bucket.

Nothing but the bucket is asked: not MongoDB (status must work when an instance is down, which is exactly
when it matters), not Prefect (a dead scheduler is one of the failures status exists to catch), not
InfluxDB (events can be lost). A database is GREEN when its newest committed backup finished at most
`max_age_h` hours ago, RED when it is older or there is none.

Which databases are expected (the bucket cannot say what is missing on its own):
- an instance with a list of databases: exactly those (one dropped from the list stops being watched,
  even while its old backups remain);
- an instance with `databases: all`: every database of that instance that has a committed backup in the
  bucket and is not excluded by the plan's `exclude` patterns or a system database, since status must not
  ask MongoDB. A database dropped on purpose stays RED until it is added to `exclude` (or its backups
  expire); one that has never been backed up is not seen, so an instance with no backup at all is one RED
  row with database `*`.
- instances not in the plan are not reported, whatever the bucket holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from mongobackup import metrics
from mongobackup.catalog import age_hours, load_manifest
from mongobackup.errors import StorageError, VerificationError
from mongobackup.inventory import Inventory, StoredBackup, scan
from mongobackup.manifest import BackupManifest
from mongobackup.metrics import Event
from mongobackup.pitr.lag import LagRow, judge_lag, lag_events, lag_table, read_archives
from mongobackup.plan import SYSTEM_DATABASES, BackupPlan, InstancePlan
from mongobackup.storage import Storage
from mongobackup.units import human_size

#: The database shown for an instance with `databases: all` and no backup of any database.
ANY_DATABASE = "*"


class Health(StrEnum):
    GREEN = "GREEN"
    RED = "RED"


@dataclass(frozen=True)
class StatusRow:
    """StatusRow is the state of one (instance, database): its newest committed backup, or why it is RED."""

    instance: str
    database: str
    health: Health
    reason: str
    age_h: float | None = None
    tier: str | None = None
    size_bytes: int | None = None
    scheduled_at: datetime | None = None
    finished_at: datetime | None = None
    object_key: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["health"] = self.health.value
        for name in ("scheduled_at", "finished_at"):
            data[name] = data[name].isoformat() if data[name] is not None else None
        return data


@dataclass(frozen=True)
class StatusReport:
    """StatusReport is every expected (instance, database) at `now`, judged against `max_age_h`."""

    now: datetime
    max_age_h: float
    bucket: str
    rows: tuple[StatusRow, ...]
    #: Each instance's recovery point lag, when the plan archives the oplog (`pitr:`); see mongobackup.pitr.lag.
    pitr: tuple[LagRow, ...] = ()
    max_lag_s: float | None = None

    @property
    def red(self) -> list[StatusRow]:
        return [row for row in self.rows if row.health is Health.RED]

    @property
    def red_pitr(self) -> list[LagRow]:
        return [row for row in self.pitr if not row.green]

    @property
    def ok(self) -> bool:
        return not self.red and not self.red_pitr

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "max_age_h": self.max_age_h,
            "bucket": self.bucket,
            "ok": self.ok,
            "red": len(self.red),
            "rows": [row.to_json_dict() for row in self.rows],
            "pitr": [row.to_json_dict() for row in self.pitr],
        }

    def table(self) -> str:
        """A fixed-width table for a terminal, one row per (instance, database), RED ones first."""
        header = ("HEALTH", "INSTANCE", "DATABASE", "AGE_H", "TIER", "SIZE", "FINISHED (UTC)", "NOTE")
        body = [
            (
                row.health.value,
                row.instance,
                row.database,
                _fmt_age(row.age_h),
                row.tier or "-",
                human_size(row.size_bytes),
                row.finished_at.strftime("%Y-%m-%d %H:%M") if row.finished_at else "-",
                row.reason,
            )
            for row in sorted(self.rows, key=lambda r: (r.health is Health.GREEN, r.instance, r.database))
        ]
        widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header) - 1)]
        lines = [
            ("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[-1]).rstrip()
            for line in (header, *body)
        ]
        verdict = "all GREEN" if not self.red else f"{len(self.red)} of {len(self.rows)} RED"
        lines.append(f"s3://{self.bucket} at {self.now.isoformat()}, max age {self.max_age_h:g} h: {verdict}")
        if self.max_lag_s is not None:
            lines += ["", lag_table(self.pitr, self.max_lag_s)]
        return "\n".join(lines)


def _fmt_age(age_h: float | None) -> str:
    return "-" if age_h is None else f"{age_h:.1f}"


def _watched(instance: InstancePlan, database: str) -> bool:
    """Whether a database found in the bucket is expected for an instance with `databases: all`."""
    return database not in SYSTEM_DATABASES and not instance.is_excluded(database)


def expected_pairs(plan: BackupPlan, inventory: Inventory) -> list[tuple[str, str]]:
    """The (instance, database) rows status reports, in plan order; see the module docstring for the rules."""
    found = inventory.pairs()
    expected: list[tuple[str, str]] = []
    for instance in plan.instances:
        if isinstance(instance.databases, list):
            expected += [(instance.name, name) for name in instance.databases]
            continue
        mine = sorted(db for inst, db in found if inst == instance.name and _watched(instance, db))
        expected += [(instance.name, db) for db in mine] or [(instance.name, ANY_DATABASE)]
    return expected


#: Reads (and checks) the manifest of a committed backup; ValueError when it cannot be trusted.
ManifestReader = Callable[[StoredBackup], BackupManifest]


def judge(
    plan: BackupPlan,
    inventory: Inventory,
    read_manifest: ManifestReader,
    now: datetime,
    max_age_h: float | None = None,
    *,
    bucket: str = "",
) -> StatusReport:
    """The status of every expected (instance, database) at the aware instant `now`.

    `read_manifest(backup)` is asked only for the newest committed backup of each expected pair.
    """
    if now.tzinfo is None:
        raise ValueError(f"status needs an aware `now`, got naive {now.isoformat()}")
    limit = plan.status.max_age_h if max_age_h is None else max_age_h
    newest = inventory.newest_committed()
    rows = [
        _row(instance, database, newest.get((instance, database)), read_manifest, now, limit)
        for instance, database in expected_pairs(plan, inventory)
    ]
    return StatusReport(now, limit, bucket, tuple(rows))


def _row(
    instance: str,
    database: str,
    backup: StoredBackup | None,
    read_manifest: ManifestReader,
    now: datetime,
    limit: float,
) -> StatusRow:
    if backup is None:
        what = "no committed backup of any database" if database == ANY_DATABASE else "no committed backup"
        return StatusRow(instance, database, Health.RED, f"{what} in the bucket")
    location = backup.location
    base = StatusRow(
        instance,
        database,
        Health.RED,
        "",
        tier=location.tier.value,
        scheduled_at=location.taken_at,
        object_key=backup.object_key,
        size_bytes=backup.object_size,
    )
    if backup.object_size is None:
        return replace(base, reason=f"newest manifest {backup.manifest_key} has no object beside it")
    try:
        manifest = read_manifest(backup)
    except ValueError as exc:  # an unreadable commit marker is no commit (pydantic's errors are ValueErrors too)
        return replace(base, reason=f"newest manifest is unreadable: {str(exc).splitlines()[0]}")
    age_h = round(age_hours(manifest, now), 2)
    fresh = age_h <= limit
    return replace(
        base,
        health=Health.GREEN if fresh else Health.RED,
        age_h=age_h,
        finished_at=manifest.finished_at,
        size_bytes=manifest.sizes.encrypted_bytes,
        reason="" if fresh else f"newest backup is {age_h:.1f} h old (more than {limit:g} h)",
    )


def manifest_reader(storage: Storage) -> ManifestReader:
    """A ManifestReader over the bucket: `catalog.load_manifest`, which also checks that the manifest describes
    the object beside it (as restore does).

    A permanent failure (not JSON, not a manifest of ours, describes another object, gone since the listing)
    reads as ValueError, so that the row turns RED naming the manifest; a transient one (network, throttling)
    is raised for the caller to retry.
    """

    def read(backup: StoredBackup) -> BackupManifest:
        try:
            return load_manifest(storage, backup)
        except VerificationError as exc:
            raise ValueError(str(exc)) from exc
        except StorageError as exc:
            if exc.transient:
                raise
            raise ValueError(str(exc)) from exc

    return read


def read_status(storage: Storage, plan: BackupPlan, now: datetime, max_age_h: float | None = None) -> StatusReport:
    """The status of the plan's backups in its bucket at `now`: one listing plus one manifest per database."""
    inventory = scan(storage, plan.storage.prefix)
    report = judge(plan, inventory, manifest_reader(storage), now, max_age_h, bucket=storage.bucket)
    if plan.pitr is None:
        return report
    archives = read_archives(storage, plan.storage.prefix, plan.instance_names)
    finished = {name: [r.finished_at for r in report.rows if r.instance == name] for name in plan.instance_names}
    rows = judge_lag(plan.pitr, archives, finished, now)
    return replace(report, pitr=tuple(rows), max_lag_s=plan.pitr.max_lag_s)


def stale_events(report: StatusReport) -> list[Event]:
    """One `instance_backup_stale` event per RED row, and one `instance_oplog_lag` per RED recovery point,
    timed at the report's `now`."""
    return [
        metrics.backup_stale(
            row.instance, None if row.database == ANY_DATABASE else row.database, row.age_h, report.now
        )
        for row in report.red
    ] + lag_events(report.pitr, report.now)
