"""What the bucket holds, and which of it is a backup: the one module that lists backups and decides "committed".

A backup is **committed** when its manifest AND its object are both in the bucket; where the manifest is read
(`load_manifest`), the object must also have the size the manifest records. A manifest alone (its object
deleted or lost) is an *orphan*: never a backup, and a fault that status reports RED. An object alone is an
upload that never committed (failed, or still running). Status, the watchdog, prune, restore and the drill
all pick backups through this module, so they cannot disagree on which backup is the newest.

Two listings, both of the tier prefixes only (`<prefix>daily/`, ...), so other data under the plan's prefix
is never looked at, let alone deleted:
- `scan`: everything, for retention and status; one LIST request per 1,000 keys, no manifest body read.
- `list_backups`: one instance (and database), `<prefix><tier>/<instance>/<database>/` per tier, so finding
  the backup to restore costs one LIST per tier however many other backups the bucket holds.
Keys under a tier prefix that do not parse as the kind listed are kept apart in `Inventory.foreign`.

Everything here takes a `StoredKind` (keys.py), so a sibling kind of stored thing with the same layout and
a manifest beside each object (a key/value store snapshot) reuses the listing, pairing and committed rule.
Times compared with `--at` are the scheduled times spelled in the keys: what an operator sees in a listing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mongobackup.errors import BackupError, VerificationError
from mongobackup.keys import MONGODB_ARCHIVE, STORED_KINDS, BackupLocation, StoredKind, parse_stored
from mongobackup.manifest import BackupManifest
from mongobackup.storage import ObjectInfo, Storage
from mongobackup.tiers import Tier, prefix_for

#: (instance, database): what status reports on and what prune protects the newest backup of.
Pair = tuple[str, str]


class BackupNotFound(BackupError):
    """No backup matches what was asked for; the message says where it looked."""


class UncommittedBackup(BackupNotFound):
    """The named object has no manifest: it is not a committed backup."""


@dataclass(frozen=True)
class StoredBackup:
    """StoredBackup is one backup as a listing shows it: its location and which of its two keys exist."""

    location: BackupLocation
    #: Size of the encrypted object in bytes; None when there is no object.
    object_size: int | None
    #: Whether its manifest exists.
    has_manifest: bool

    @property
    def committed(self) -> bool:
        """Manifest and object both present: the rule every reader of the bucket applies."""
        return self.has_manifest and self.object_size is not None

    @property
    def orphaned(self) -> bool:
        """A manifest whose object is gone: it promises a backup that is not there."""
        return self.has_manifest and self.object_size is None

    @property
    def pair(self) -> Pair:
        return self.location.instance, self.location.database

    @property
    def object_key(self) -> str:
        return self.location.object_key

    @property
    def manifest_key(self) -> str:
        return self.location.manifest_key

    @property
    def order(self) -> tuple[object, ...]:
        """Sort key, oldest first: the scheduled time, then the run id (two runs in the same second)."""
        return self.location.taken_at, self.location.run_id


@dataclass(frozen=True)
class Inventory:
    """Inventory is every backup under a prefix, oldest first per (instance, database)."""

    prefix: str
    backups: tuple[StoredBackup, ...]
    #: Keys under a tier prefix that are not a backup object or manifest of ours: never touched.
    foreign: tuple[str, ...] = field(default=())

    def committed(self) -> list[StoredBackup]:
        return [b for b in self.backups if b.committed]

    def orphans(self) -> list[StoredBackup]:
        """Manifests whose object is gone, oldest first."""
        return [b for b in self.backups if b.orphaned]

    def pairs(self) -> set[Pair]:
        """Every (instance, database) with a manifest in the bucket (committed, or orphaned: both matter)."""
        return {b.pair for b in self.backups if b.has_manifest}

    def newest_committed(self) -> dict[Pair, StoredBackup]:
        """The newest committed backup of each (instance, database), across all tiers."""
        newest: dict[Pair, StoredBackup] = {}
        for backup in self.committed():
            current = newest.get(backup.pair)
            if current is None or backup.order > current.order:
                newest[backup.pair] = backup
        return newest


def build_inventory(
    listing: Iterable[ObjectInfo], prefix: str, kind: StoredKind | Sequence[StoredKind] = MONGODB_ARCHIVE
) -> Inventory:
    """The inventory of a key listing (pure: no storage access); objects and manifests are paired by stem.

    `kind`: one kind of stored thing, or several (each key is parsed as the one kind it belongs to).
    """
    kinds = (kind,) if isinstance(kind, StoredKind) else tuple(kind)
    objects: dict[BackupLocation, int] = {}
    manifests: set[BackupLocation] = set()
    foreign: list[str] = []
    for info in listing:
        location = _parse(info.key, prefix, kinds)
        if location is None:
            foreign.append(info.key)
            continue
        if info.key == location.object_key:
            objects[location] = info.size
        else:
            manifests.add(location)
    backups = [
        StoredBackup(location, objects.get(location), location in manifests) for location in set(objects) | manifests
    ]
    backups.sort(key=lambda b: (b.pair, b.order))
    return Inventory(prefix, tuple(backups), tuple(sorted(foreign)))


def _parse(key: str, prefix: str, kinds: Sequence[StoredKind]) -> BackupLocation | None:
    try:
        return parse_stored(key, prefix, tuple(kinds))
    except ValueError:
        return None


def scan(storage: Storage, prefix: str, kind: StoredKind | Sequence[StoredKind] = STORED_KINDS) -> Inventory:
    """Lists every tier prefix under `prefix` in the bucket; StorageError (naming the prefix) if listing fails.

    By default every kind of stored thing (database backups and key/value snapshots) is paired and judged: the
    whole bucket, for status, the watchdog and prune.
    """
    return build_inventory(_listing(storage, prefix, "", tuple(Tier)), prefix, kind)


def list_backups(
    storage: Storage,
    prefix: str,
    instance: str,
    database: str | None = None,
    tiers: Iterable[Tier] = tuple(Tier),
    kind: StoredKind = MONGODB_ARCHIVE,
) -> list[StoredBackup]:
    """Every backup (committed or not) of `instance` (and `database`), oldest first, across the given tiers."""
    below = f"{instance}/" + (f"{database}/" if database is not None else "")
    backups = build_inventory(_listing(storage, prefix, below, tiers), prefix, kind).backups
    # The trailing slash of each listed prefix already pins instance and database; this guards a foreign key.
    return sorted(
        (
            b
            for b in backups
            if b.location.instance == instance and (database is None or b.location.database == database)
        ),
        key=lambda b: b.order,
    )


def _listing(storage: Storage, prefix: str, below: str, tiers: Iterable[Tier]) -> Iterator[ObjectInfo]:
    for tier in tiers:
        yield from storage.list_keys(prefix + prefix_for(tier) + below)


def newest_committed(backups: Sequence[StoredBackup], at: datetime | None = None) -> StoredBackup | None:
    """The newest committed backup, at or before `at` when given; None if there is none."""
    candidates = [b for b in backups if b.committed and (at is None or b.location.taken_at <= at)]
    return max(candidates, key=lambda b: b.order, default=None)


def newest_by_database(backups: Sequence[StoredBackup]) -> dict[str, StoredBackup]:
    """The newest committed backup of each database in `backups` (one instance's listing)."""
    newest: dict[str, StoredBackup] = {}
    for database in sorted({b.location.database for b in backups}):
        found = newest_committed([b for b in backups if b.location.database == database])
        if found is not None:
            newest[database] = found
    return newest


def select_backup(
    storage: Storage,
    prefix: str,
    instance: str,
    database: str,
    *,
    at: datetime | None = None,
    key: str | None = None,
    uncommitted: bool = False,
    kind: StoredKind = MONGODB_ARCHIVE,
) -> StoredBackup:
    """The backup a restore asks for: by `key`, else the newest committed at or before `at`, else the newest.

    `uncommitted` allows a named object without a manifest; it is refused without a key, so that "the newest"
    can never silently mean an upload that never completed.
    """
    if key is not None:
        return _by_key(storage, prefix, instance, database, key, uncommitted, kind)
    if uncommitted:
        raise BackupNotFound("an uncommitted backup is only restored when named by its key (--key)")
    if at is not None and at.tzinfo is None:
        raise ValueError(f"--at {at.isoformat()}: give a time with a zone")
    backups = list_backups(storage, prefix, instance, database, kind=kind)
    found = newest_committed(backups, at.astimezone(UTC) if at else None)
    if found is None:
        where = storage.where(f"{prefix}<tier>/{instance}/{database}/")
        when = f" at or before {at.astimezone(UTC).isoformat()}" if at else ""
        raise BackupNotFound(
            f"no committed backup of instance {instance}, database {database}{when} under {where}"
            f"{_what_is_there(backups)}"
        )
    return found


def _what_is_there(backups: Sequence[StoredBackup]) -> str:
    if not backups:
        return ""
    committed = [b for b in backups if b.committed]
    oldest = f", the oldest taken {committed[0].location.taken_at.isoformat()}" if committed else ""
    return f" ({len(backups)} backups there, {len(committed)} committed{oldest})"


def _by_key(
    storage: Storage, prefix: str, instance: str, database: str, key: str, uncommitted: bool, kind: StoredKind
) -> StoredBackup:
    key = key.removeprefix(storage.where() + "/")  # an s3://bucket/key address as printed by our messages
    try:
        location = BackupLocation.parse(key, prefix, kind)  # a manifest key names the same backup
    except ValueError as exc:
        raise BackupNotFound(str(exc)) from None
    if (location.instance, location.database) != (instance, database):
        raise BackupNotFound(
            f"{storage.where(key)} is a backup of instance {location.instance}, database "
            f"{location.database}, not of instance {instance}, database {database}"
        )
    info = storage.head(location.object_key)
    if info is None:
        raise BackupNotFound(f"{storage.where(location.object_key)}: no such backup object")
    has_manifest = storage.head(location.manifest_key) is not None
    if not has_manifest and not uncommitted:
        raise UncommittedBackup(
            f"{storage.where(location.object_key)} has no manifest ({location.manifest_key}): it is not a "
            "committed backup (its upload or verification did not finish). Pass --uncommitted to restore it "
            "anyway, unverified against a manifest"
        )
    return StoredBackup(location, info.size, has_manifest)


def load_manifest(storage: Storage, location: BackupLocation, *, object_size: int | None = None) -> BackupManifest:
    """The manifest of the backup at `location`, checked to describe that very object.

    With `object_size` (the object's size from a listing or HEAD) it is also checked against the size the
    manifest recorded: an object replaced or truncated since its commit is no committed backup.
    VerificationError names the manifest key; StorageError when it cannot be read.
    """
    key = location.manifest_key
    try:
        manifest = BackupManifest.from_json_dict(storage.get_json(key), key=storage.where(key))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError too
        raise VerificationError(f"{storage.where(key)}: not a valid manifest: {exc}") from exc
    found = (manifest.object_key, manifest.instance, manifest.database)
    wanted = (location.object_key, location.instance, location.database)
    if found != wanted:
        raise VerificationError(f"{storage.where(key)} describes {found}, not the backup {wanted} beside it")
    if object_size is not None and object_size != manifest.sizes.encrypted_bytes:
        raise VerificationError(
            f"{storage.where(location.object_key)} is {object_size} bytes, its manifest {key} says "
            f"{manifest.sizes.encrypted_bytes}: the object was truncated or replaced since its commit"
        )
    return manifest


def age_hours(manifest: BackupManifest, now: datetime) -> float:
    """How old the data of a backup is: hours since its dump finished."""
    return (now - manifest.finished_at).total_seconds() / 3600
