"""Backup status from the truth: the newest committed backup of each (instance, database), read from the bucket.

Nothing but the bucket is asked: not MongoDB (status must work when an instance is down, which is exactly
when it matters), not Prefect (a dead scheduler is one of the failures status exists to catch), not
InfluxDB (events can be lost). A database is GREEN when its newest committed backup (manifest and object,
of the size the manifest records: `inventory`'s rule) finished at most `max_age_h` hours ago, RED when it is
older, when there is none, or when any of its manifests has lost its object (an orphan: a backup the bucket
promises and cannot deliver; the row names its key).

Which databases are expected (the bucket cannot say what is missing on its own):
- an instance with a list of databases: exactly those (one dropped from the list stops being watched,
  even while its old backups remain);
- an instance with `databases: all`: every database of that instance's roster (what the last backup run
  found there, `mongobackup.roster`) plus every database with a committed backup in the bucket, minus the
  plan's `exclude` patterns and system databases, since status must not ask MongoDB. A database whose
  backups were all lost is RED by name (the roster still lists it); one dropped on purpose leaves the roster
  at the next run, and stays RED through its old backups until it is added to `exclude` (or they expire).
  An instance with nothing expected is one RED row with database `*`; so is one whose roster is unreadable.
- instances not in the plan are not reported, whatever the bucket holds.
- a key/value snapshot source of the plan (`snapshots:`) is one row: the source's name as the instance and
  `snapshot` as the database, judged by the same age rule on its newest committed snapshot.

Open multipart uploads of ours (a backup process killed mid-upload) are a warning: count, bytes, oldest.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from mongobackup import metrics
from mongobackup.errors import StorageError, VerificationError, one_line
from mongobackup.inventory import Inventory, StoredBackup, age_hours, load_manifest, scan
from mongobackup.keys import KV_SNAPSHOT, SNAPSHOT_SEGMENT
from mongobackup.manifest import BackupManifest
from mongobackup.metrics import Event
from mongobackup.names import is_system_database
from mongobackup.pitr.lag import LagRow, judge_lag, lag_events, lag_table, read_archives
from mongobackup.plan import BackupPlan, InstancePlan
from mongobackup.roster import read_roster
from mongobackup.snapshots.manifest import SnapshotManifest, load_snapshot_manifest
from mongobackup.storage import Storage
from mongobackup.units import human_size
from mongobackup.uploads import UploadSummary, our_open_uploads

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
    #: Open multipart uploads of ours; None when they were not looked at.
    open_uploads: UploadSummary | None = None
    #: Each instance's recovery point lag, when the plan archives the oplog (`pitr:`); see mongobackup.pitr.lag.
    pitr: tuple[LagRow, ...] = ()
    max_lag_s: float | None = None

    @property
    def warnings(self) -> list[str]:
        """What is not RED but wants a look: open uploads left by a killed backup."""
        if self.open_uploads is None:
            return []
        line = self.open_uploads.warning(lambda key: f"s3://{self.bucket}/{key}")
        return [line] if line else []

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
            "open_uploads": _uploads_json(self.open_uploads),
            "warnings": self.warnings,
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
        lines += [
            f"s3://{self.bucket} at {self.now.isoformat()}, max age {self.max_age_h:g} h: {verdict}",
            *(f"WARNING: {warning}" for warning in self.warnings),
        ]
        if self.max_lag_s is not None:
            lines += ["", lag_table(self.pitr, self.max_lag_s)]
        return "\n".join(lines)


def _uploads_json(summary: UploadSummary | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    oldest = summary.oldest
    return {
        "count": summary.count,
        "bytes": summary.bytes,
        "oldest_key": oldest.key if oldest else None,
        "oldest_started": oldest.initiated.isoformat() if oldest else None,
    }


def _fmt_age(age_h: float | None) -> str:
    return "-" if age_h is None else f"{age_h:.1f}"


def _watched(instance: InstancePlan, database: str) -> bool:
    """Whether a database found in the bucket is expected for an instance with `databases: all`."""
    return not is_system_database(database) and not instance.is_excluded(database)


def expected_pairs(
    plan: BackupPlan, inventory: Inventory, rosters: Mapping[str, Collection[str]] | None = None
) -> list[tuple[str, str]]:
    """The (instance, database) rows status reports, in plan order; see the module docstring for the rules.

    `rosters`: per instance, the databases the last backup run found there (instances without one: none).
    """
    found = inventory.pairs()
    expected: list[tuple[str, str]] = []
    for instance in plan.instances:
        if isinstance(instance.databases, list):
            expected += [(instance.name, name) for name in instance.databases]
            continue
        seen = {db for inst, db in found if inst == instance.name} | set((rosters or {}).get(instance.name, ()))
        mine = sorted(db for db in seen if _watched(instance, db))
        expected += [(instance.name, db) for db in mine] or [(instance.name, ANY_DATABASE)]
    expected += [(source.name, SNAPSHOT_SEGMENT) for source in plan.snapshots]
    return expected


#: Reads (and checks) the manifest of a committed backup or snapshot; ValueError when it cannot be trusted.
ManifestReader = Callable[[StoredBackup], BackupManifest | SnapshotManifest]


def judge(
    plan: BackupPlan,
    inventory: Inventory,
    read_manifest: ManifestReader,
    now: datetime,
    max_age_h: float | None = None,
    *,
    bucket: str = "",
    rosters: Mapping[str, Collection[str]] | None = None,
    roster_problems: Mapping[str, str] | None = None,
    open_uploads: UploadSummary | None = None,
) -> StatusReport:
    """The status of every expected (instance, database) at the aware instant `now`.

    `read_manifest(backup)` is asked only for the newest committed backup of each expected pair.
    `roster_problems`: per instance, why its roster could not be read (the instance is RED: what it should
    hold is unknown).
    """
    if now.tzinfo is None:
        raise ValueError(f"status needs an aware `now`, got naive {now.isoformat()}")
    limit = plan.status.max_age_h if max_age_h is None else max_age_h
    newest = inventory.newest_committed()
    problems = roster_problems or {}
    orphans: dict[tuple[str, str], list[StoredBackup]] = {}
    for orphan in inventory.orphans():
        orphans.setdefault(orphan.pair, []).append(orphan)
    rows = [
        _with_orphans(
            _row(instance, database, newest.get((instance, database)), read_manifest, now, limit),
            orphans.get((instance, database), []),
            newest.get((instance, database)),
        )
        for instance, database in expected_pairs(plan, inventory, rosters)
        if not (database == ANY_DATABASE and instance in problems)  # the problem row says more
    ]
    rows += [StatusRow(instance, ANY_DATABASE, Health.RED, problem) for instance, problem in problems.items()]
    return StatusReport(now, limit, bucket, tuple(rows), open_uploads)


def _with_orphans(row: StatusRow, orphans: list[StoredBackup], newest: StoredBackup | None) -> StatusRow:
    """RED, naming the newest orphaned manifest: a backup whose object is gone is data lost, whatever else is
    there. The fix is to find out what deleted the object, then delete the manifest (or restore the object)."""
    if not orphans:
        return row
    orphan = orphans[-1]
    newer = newest is None or orphan.order > newest.order
    reason = f"{'newest ' if newer else ''}manifest {orphan.manifest_key} has no object beside it"
    if len(orphans) > 1:
        reason += f" (and {len(orphans) - 1} older manifests without their object)"
    if row.reason and row.health is Health.RED and newest is not None:
        reason += f"; {row.reason}"
    return replace(row, health=Health.RED, reason=reason)


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
    try:
        manifest = read_manifest(backup)
    except ValueError as exc:  # an unreadable commit marker is no commit (pydantic's errors are ValueErrors too)
        return replace(base, reason=f"newest backup fails its manifest check: {str(exc).splitlines()[0]}")
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
    """A ManifestReader over the bucket: `inventory.load_manifest`, which also checks that the manifest describes
    the object beside it and records its size (as restore does).

    A permanent failure (not JSON, not a manifest of ours, describes another object, gone since the listing)
    reads as ValueError, so that the row turns RED naming the manifest; a transient one (network, throttling)
    is raised for the caller to retry.
    """

    def read(backup: StoredBackup) -> BackupManifest | SnapshotManifest:
        try:
            location = backup.location
            if location.kind is KV_SNAPSHOT:
                return load_snapshot_manifest(
                    storage,
                    location.manifest_key,
                    location.object_key,
                    location.instance,
                    object_size=backup.object_size,
                )
            return load_manifest(storage, backup.location, object_size=backup.object_size)
        except VerificationError as exc:
            raise ValueError(str(exc)) from exc
        except StorageError as exc:
            if exc.transient:
                raise
            raise ValueError(str(exc)) from exc

    return read


def read_status(storage: Storage, plan: BackupPlan, now: datetime, max_age_h: float | None = None) -> StatusReport:
    """The status of the plan's backups in its bucket at `now`: one listing, one manifest per database, the
    rosters of instances with `databases: all`, and the open uploads."""
    prefix = plan.storage.prefix
    inventory = scan(storage, prefix)
    rosters: dict[str, Collection[str]] = {}
    problems: dict[str, str] = {}
    for instance in plan.instances:
        if isinstance(instance.databases, list):
            continue
        try:
            roster = read_roster(storage, prefix, instance.name)
        except (ValueError, StorageError) as exc:
            if getattr(exc, "transient", False):
                raise
            problems[instance.name] = f"roster unreadable, expected databases unknown: {one_line(exc)}"
            continue
        if roster is not None:
            rosters[instance.name] = roster.databases
    uploads = UploadSummary.of(our_open_uploads(storage, prefix))
    report = judge(
        plan,
        inventory,
        manifest_reader(storage),
        now,
        max_age_h,
        bucket=storage.bucket,
        rosters=rosters,
        roster_problems=problems,
        open_uploads=uploads,
    )
    if plan.pitr is None:
        return report
    archives = read_archives(storage, prefix, plan.instance_names)
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
