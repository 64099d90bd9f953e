"""Restore to a point: the newest base backup that ended before it, then the archived oplog up to it.

A base backup is consistent at the end of its own oplog slice (`manifest.oplog.end`, E): the restore replays
that slice. Every entry after E up to the point P is in the archive if one chain holds E and reaches past P,
so the restore then replays, through the same replayer, the chain's entries with E < ts and ts's second at
most P's (applyOps entries unwrapped into their operations; entries of other databases skipped). Points are
whole seconds: P includes every entry written during its second. A chain's newest second counts only once
a later entry is archived (more of that second may still come), so a window ends one second before its
newest entry.

A database's restorable windows: per chain, from the oldest base backup whose E lies in the chain to the
chain's newest complete second. A point outside every window, or one whose newest base lies behind a gap,
is refused (OutsideWindow) with the windows in the message.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bson import Timestamp
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

from mongobackup.crypto import Gpg
from mongobackup.inventory import StoredBackup, list_backups, load_manifest
from mongobackup.manifest import BackupManifest
from mongobackup.pitr.chain import OplogArchive, OutsideWindow, chain_at, scan_archive, segments_between
from mongobackup.pitr.keys import ts_datetime
from mongobackup.pitr.segment import SegmentManifest, read_segment
from mongobackup.restore import RestoreOptions, restore_backup
from mongobackup.restore_result import ProgressCallback, RestoreResult
from mongobackup.storage import Storage


@dataclass(frozen=True)
class Base:
    """A committed backup usable as the start of a point-in-time restore: its consistent point is known."""

    backup: StoredBackup
    manifest: BackupManifest

    @property
    def consistent_at(self) -> Timestamp:
        assert self.manifest.oplog is not None
        return Timestamp(*self.manifest.oplog.end)


@dataclass(frozen=True)
class Window:
    """Seconds a database can be restored to: `start` and `end` inclusive, UTC."""

    start: datetime
    end: datetime

    def __contains__(self, point: datetime) -> bool:
        return self.start <= point <= self.end

    def describe(self) -> str:
        return f"{self.start:%Y-%m-%dT%H:%M:%SZ} .. {self.end:%Y-%m-%dT%H:%M:%SZ}"


@dataclass(frozen=True)
class PointRestore:
    """What a restore to `point` replays: a base backup, then these segments' entries after its end."""

    instance: str
    database: str
    point: datetime  # whole second, UTC
    base: Base
    segments: tuple[SegmentManifest, ...]

    @property
    def upto(self) -> int:
        return int(self.point.timestamp())


def bases(storage: Storage, prefix: str, instance: str, database: str) -> list[Base]:
    """The committed backups of a database that carry an oplog window, oldest first (reads their manifests)."""
    found = []
    for backup in list_backups(storage, prefix, instance, database):
        if backup.committed:
            manifest = load_manifest(storage, backup.location, object_size=backup.object_size)
            if manifest.oplog is not None:  # a dump without its oplog slice has no one consistent point
                found.append(Base(backup, manifest))
    return found


def windows(archive: OplogArchive, database_bases: Sequence[Base]) -> list[Window]:
    """The windows a database can be restored to, given its bases and the instance's archive."""
    found = []
    for chain in archive.chains():
        starts = [b.consistent_at for b in database_bases if chain.first <= b.consistent_at <= chain.last]
        if not starts:
            continue
        start = min(starts).time
        if start <= chain.newest_complete_second:
            found.append(
                Window(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(chain.newest_complete_second, UTC))
            )
    return found


def describe_windows(found: Sequence[Window]) -> str:
    return "; ".join(w.describe() for w in found) if found else "none"


def plan_point_restore(storage: Storage, prefix: str, instance: str, database: str, point: datetime) -> PointRestore:
    """The base and the segments a restore of `database` to `point` needs; OutsideWindow naming the windows."""
    if point.tzinfo is None:
        raise ValueError(f"--point-in-time {point.isoformat()}: give a time with a zone")
    point = datetime.fromtimestamp(int(point.timestamp()), UTC)  # whole seconds, as the oplog counts them
    archive = scan_archive(storage, prefix, instance)
    database_bases = bases(storage, prefix, instance, database)
    found = windows(archive, database_bases)
    refusal = (
        f"instance {instance}, database {database}: {point:%Y-%m-%dT%H:%M:%SZ} is outside the restorable "
        f"window(s): {describe_windows(found)}"
    )
    if not any(point in window for window in found):
        raise OutsideWindow(refusal + _gaps_note(archive))
    ended_before = [b for b in database_bases if b.consistent_at.time <= point.timestamp()]
    base = max(ended_before, key=lambda b: b.consistent_at)
    if chain_at(archive, base.consistent_at) is None:
        # The newest base before the point ended in a gap: an older base cannot help, its chain ends there too.
        raise OutsideWindow(refusal + _gaps_note(archive))
    segments = segments_between(storage, archive, base.consistent_at, int(point.timestamp()))
    return PointRestore(instance, database, point, base, tuple(segments))


def _gaps_note(archive: OplogArchive) -> str:
    if not archive.gaps:
        return ""
    listed = ", ".join(f"{ts_datetime(gap):%Y-%m-%dT%H:%M:%SZ}" for gap in archive.gaps)
    return f" (the oplog archive has gaps before {listed}: the next base backup after a gap starts a new window)"


def entries_to_replay(
    storage: Storage, gpg: Gpg, plan: PointRestore, *, passphrase: str | None = None
) -> Iterator[bytes]:
    """The archived entries after the base's end up to the point's second, in oplog order, each segment
    checked against its manifest as it is read."""
    after = plan.base.consistent_at
    own_gpg = Gpg(gpg.home)  # the base's decryption may still hold `gpg`'s one output sink while this runs
    for segment in plan.segments:
        for raw in read_segment(storage, own_gpg, segment, passphrase=passphrase):
            ts: Timestamp = RawBSONDocument(raw)["ts"]
            if ts.time > plan.upto:
                return
            if ts > after:
                yield raw


def restore_to_point(
    storage: Storage,
    gpg: Gpg,
    client: MongoClient,
    plan: PointRestore,
    options: RestoreOptions,
    *,
    passphrase: str | None = None,
    on_progress: ProgressCallback | None = None,
) -> RestoreResult:
    """Restores the base backup, then replays the archived oplog up to the point, as one restore: a failure
    anywhere (the base, a segment, an entry) leaves the target as any failed restore does."""
    return restore_backup(
        storage,
        plan.base.backup.object_key,
        gpg,
        client,
        options,
        manifest=plan.base.manifest,
        passphrase=passphrase,
        on_progress=on_progress,
        oplog_tail=entries_to_replay(storage, gpg, plan, passphrase=passphrase),
    )
