"""Finding a backup to restore: the committed backups of one instance/database, and the one a restore asks for.

A backup is committed if and only if its manifest exists (see manifest.py). Restore and the fire drill only
ever pick committed backups; an object without a manifest (an upload that failed, or one still running) is
restored only when it is named by its key AND the caller says it knows the backup is uncommitted.

Listing is narrow: `<prefix><tier>/<instance>/<database>/` for each tier, so finding the newest backup of
one database costs one LIST request per tier, however many other backups the bucket holds. Keys are paired
by `inventory.build_inventory`, the same pairing retention and status use. Times compared with `--at` are
the backups' scheduled times, as spelled in their keys: what an operator sees in a listing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime

from mongobackup.errors import BackupError, VerificationError
from mongobackup.inventory import StoredBackup, build_inventory
from mongobackup.keys import MANIFEST_SUFFIX, OBJECT_SUFFIX, BackupLocation
from mongobackup.manifest import BackupManifest
from mongobackup.storage import ObjectInfo, Storage
from mongobackup.tiers import Tier, prefix_for


class BackupNotFound(BackupError):
    """No backup matches what was asked for; the message says where it looked."""


class UncommittedBackup(BackupNotFound):
    """The named object has no manifest: it is not a committed backup."""


def list_backups(
    storage: Storage, prefix: str, instance: str, database: str | None = None, tiers: Iterable[Tier] = tuple(Tier)
) -> list[StoredBackup]:
    """Every backup (committed or not) of `instance` (and `database`), oldest first, across the given tiers."""
    listing = _listing(storage, prefix, instance, database, tiers)
    backups = build_inventory(listing, prefix).backups
    # The trailing slash of each listed prefix already pins instance and database; this guards a foreign key.
    return sorted(
        (
            b
            for b in backups
            if b.location.instance == instance and (database is None or b.location.database == database)
        ),
        key=lambda b: b.order,
    )


def _listing(
    storage: Storage, prefix: str, instance: str, database: str | None, tiers: Iterable[Tier]
) -> Iterator[ObjectInfo]:
    below = f"{instance}/" + (f"{database}/" if database is not None else "")
    for tier in tiers:
        yield from storage.list_keys(prefix + prefix_for(tier) + below)


def newest_committed(backups: Sequence[StoredBackup], at: datetime | None = None) -> StoredBackup | None:
    """The newest committed backup with an object, at or before `at` when given; None if there is none."""
    candidates = [
        b for b in backups if b.committed and b.object_size is not None and (at is None or b.location.taken_at <= at)
    ]
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
) -> StoredBackup:
    """The backup a restore asks for: by `key`, else the newest committed at or before `at`, else the newest.

    `uncommitted` allows a named object without a manifest; it is refused without a key, so that "the newest"
    can never silently mean an upload that never completed.
    """
    if key is not None:
        return _by_key(storage, prefix, instance, database, key, uncommitted)
    if uncommitted:
        raise BackupNotFound("an uncommitted backup is only restored when named by its key (--key)")
    if at is not None and at.tzinfo is None:
        raise ValueError(f"--at {at.isoformat()}: give a time with a zone")
    backups = list_backups(storage, prefix, instance, database)
    found = newest_committed(backups, at.astimezone(UTC) if at else None)
    if found is None:
        where = storage.where(f"{prefix}<tier>/{instance}/{database}/")
        when = f" at or before {at.astimezone(UTC).isoformat()}" if at else ""
        others = _what_is_there(backups)
        raise BackupNotFound(
            f"no committed backup of instance {instance}, database {database}{when} under {where}{others}"
        )
    return found


def _what_is_there(backups: Sequence[StoredBackup]) -> str:
    if not backups:
        return ""
    committed = [b for b in backups if b.committed and b.object_size is not None]
    oldest = f", the oldest taken {committed[0].location.taken_at.isoformat()}" if committed else ""
    return f" ({len(backups)} backups there, {len(committed)} committed{oldest})"


def _by_key(storage: Storage, prefix: str, instance: str, database: str, key: str, uncommitted: bool) -> StoredBackup:
    key = key.removeprefix(storage.where() + "/")  # an s3://bucket/key address as printed by our messages
    if key.endswith(MANIFEST_SUFFIX):  # a manifest key names the same backup
        key = key[: -len(MANIFEST_SUFFIX)] + OBJECT_SUFFIX
    try:
        location = BackupLocation.parse(key, prefix)
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
    committed = storage.head(location.manifest_key) is not None
    if not committed and not uncommitted:
        raise UncommittedBackup(
            f"{storage.where(location.object_key)} has no manifest ({location.manifest_key}): it is not a "
            "committed backup (its upload or verification did not finish). Pass --uncommitted to restore it "
            "anyway, unverified against a manifest"
        )
    return StoredBackup(location, info.size, committed)


def load_manifest(storage: Storage, backup: StoredBackup) -> BackupManifest:
    """The manifest of a committed backup, checked to describe that very object."""
    key = backup.manifest_key
    try:
        manifest = BackupManifest.from_json_dict(storage.get_json(key), key=storage.where(key))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError too
        raise VerificationError(f"{storage.where(key)}: not a valid manifest: {exc}") from exc
    location = backup.location
    found = (manifest.object_key, manifest.instance, manifest.database)
    wanted = (location.object_key, location.instance, location.database)
    if found != wanted:
        raise VerificationError(f"{storage.where(key)} describes {found}, not the backup {wanted} beside it")
    return manifest


def age_hours(manifest: BackupManifest, now: datetime) -> float:
    """How old the data of a backup is: hours since its dump finished."""
    return (now - manifest.finished_at).total_seconds() / 3600
