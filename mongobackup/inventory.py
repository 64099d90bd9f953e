"""What the bucket holds: every backup object and manifest under a plan's prefix, paired by backup.

Retention (`prune`) and `status` both start here. A listing is the whole truth they need: the key names
the tier, instance, database and scheduled time, the listing gives the object's size, and a manifest key's
presence is the commit (a backup exists if and only if its manifest exists). No manifest body is read, so
a scan of a bucket with years of backups costs one LIST request per 1,000 keys and nothing else.

Only the tier prefixes are listed (`<prefix>daily/`, ...), so other data under the plan's prefix is never
looked at, let alone deleted. Keys under a tier prefix that do not parse as ours are kept apart in
`Inventory.foreign` for the caller to report.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mongobackup.keys import MANIFEST_SUFFIX, OBJECT_SUFFIX, BackupLocation
from mongobackup.storage import ObjectInfo, Storage
from mongobackup.tiers import Tier, prefix_for

#: (instance, database): what status reports on and what prune protects the newest backup of.
Pair = tuple[str, str]


@dataclass(frozen=True)
class StoredBackup:
    """StoredBackup is one backup as the bucket shows it: its location and which of its two keys exist."""

    location: BackupLocation
    #: Size of the encrypted object in bytes; None when there is no object (a manifest left alone).
    object_size: int | None
    #: Whether its manifest exists: the backup is committed.
    committed: bool

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

    def pairs(self) -> set[Pair]:
        """Every (instance, database) with at least one committed backup."""
        return {b.pair for b in self.backups if b.committed}

    def newest_committed(self) -> dict[Pair, StoredBackup]:
        """The newest committed backup of each (instance, database), across all tiers."""
        newest: dict[Pair, StoredBackup] = {}
        for backup in self.committed():
            current = newest.get(backup.pair)
            if current is None or backup.order > current.order:
                newest[backup.pair] = backup
        return newest


def build_inventory(listing: Iterable[ObjectInfo], prefix: str) -> Inventory:
    """The inventory of a key listing (pure: no storage access); objects and manifests are paired by stem."""
    objects: dict[BackupLocation, int] = {}
    manifests: set[BackupLocation] = set()
    foreign: list[str] = []
    for info in listing:
        try:
            location = BackupLocation.parse(info.key, prefix)
        except ValueError:
            foreign.append(info.key)
            continue
        if info.key.endswith(OBJECT_SUFFIX):
            objects[location] = info.size
        elif info.key.endswith(MANIFEST_SUFFIX):
            manifests.add(location)
    backups = [
        StoredBackup(location, objects.get(location), location in manifests) for location in set(objects) | manifests
    ]
    backups.sort(key=lambda b: (b.pair, b.order))
    return Inventory(prefix, tuple(backups), tuple(sorted(foreign)))


def scan(storage: Storage, prefix: str) -> Inventory:
    """Lists every tier prefix under `prefix` in the bucket; StorageError (naming the prefix) if listing fails."""
    return build_inventory(_list_tiers(storage, prefix), prefix)


def _list_tiers(storage: Storage, prefix: str) -> Iterable[ObjectInfo]:
    for tier in Tier:
        yield from storage.list_keys(prefix + prefix_for(tier))
