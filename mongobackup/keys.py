"""Where a backup lives in the bucket: the one place that spells the object and manifest key layout.

    <prefix><tier>/<instance>/<database>/<UTC timestamp>-<short run id>.archive.zst.gpg
    <prefix><tier>/<instance>/<database>/<UTC timestamp>-<short run id>.manifest.json
    <prefix><tier>/<source>/snapshot/<UTC timestamp>-<short run id>.snap.gpg             (KV_SNAPSHOT)
    <prefix><tier>/<source>/snapshot/<UTC timestamp>-<short run id>.snap.manifest.json

The tier comes first so that S3 lifecycle rules can expire each tier by prefix; the timestamp sorts
lexicographically so the newest backup is the last key of a listing.

The suffixes belong to a `StoredKind`: a MongoDB backup is one kind (`MONGODB_ARCHIVE`); a sibling kind of
stored thing (a key/value store snapshot, `<prefix><tier>/<source>/snapshot/<stamp>.snap.gpg`) reuses the
same layout, pairing and committed rule (`mongobackup.inventory`) with suffixes of its own. Each kind's
manifest suffix must be one no other kind's key parses under (`.snap.manifest.json` does not parse as a
MongoDB manifest: its stem holds a dot), so that a manifest whose object is gone is still told apart by its
key alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from mongobackup.tiers import Tier, prefix_for

TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"

_STEM = re.compile(r"^(?P<ts>\d{8}T\d{6}Z)-(?P<run>[0-9A-Za-z]+)$")


@dataclass(frozen=True)
class StoredKind:
    """A kind of stored thing: the suffixes of its encrypted object and of the manifest that commits it."""

    name: str
    object_suffix: str
    manifest_suffix: str

    def suffix_of(self, key: str) -> str | None:
        """The suffix of this kind that `key` ends with, or None."""
        return next((s for s in (self.object_suffix, self.manifest_suffix) if key.endswith(s)), None)


#: A MongoDB backup: an OpenPGP message of a zstd frame of a mongodump archive, and its JSON manifest.
MONGODB_ARCHIVE = StoredKind("mongodb", ".archive.zst.gpg", ".manifest.json")
OBJECT_SUFFIX = MONGODB_ARCHIVE.object_suffix
MANIFEST_SUFFIX = MONGODB_ARCHIVE.manifest_suffix
#: A key/value store snapshot (Consul, etcd): an OpenPGP message of the snapshot file, and its JSON manifest.
KV_SNAPSHOT = StoredKind("kv-snapshot", ".snap.gpg", ".snap.manifest.json")
#: Every kind of stored thing: what a listing of the whole bucket (status, prune) pairs and judges.
STORED_KINDS = (MONGODB_ARCHIVE, KV_SNAPSHOT)
#: The <database> segment of a key/value snapshot's keys (the source's name takes the instance's place).
SNAPSHOT_SEGMENT = "snapshot"


@dataclass(frozen=True)
class BackupLocation:
    """The identity of one backup: enough to derive both of its keys."""

    prefix: str
    tier: Tier
    instance: str
    database: str
    taken_at: datetime
    run_id: str
    kind: StoredKind = MONGODB_ARCHIVE

    @classmethod
    def snapshot(cls, prefix: str, tier: Tier, source: str, taken_at: datetime, run_id: str) -> BackupLocation:
        """The location of a key/value snapshot of `source`."""
        return cls(prefix, tier, source, SNAPSHOT_SEGMENT, taken_at, run_id, KV_SNAPSHOT)

    @property
    def stem(self) -> str:
        when = self.taken_at.astimezone(UTC).strftime(TIMESTAMP_FORMAT)
        return f"{self.prefix}{prefix_for(self.tier)}{self.instance}/{self.database}/{when}-{self.run_id}"

    @property
    def object_key(self) -> str:
        return self.stem + self.kind.object_suffix

    @property
    def manifest_key(self) -> str:
        return self.stem + self.kind.manifest_suffix

    @classmethod
    def parse(cls, key: str, prefix: str = "", kind: StoredKind = MONGODB_ARCHIVE) -> BackupLocation:
        """The location an object or manifest key of `kind` names; ValueError (naming the key) if it is not."""
        if not key.startswith(prefix):
            raise ValueError(f"object key {key!r} is outside the prefix {prefix!r}")
        suffix = kind.suffix_of(key)
        if suffix is None:
            raise ValueError(f"object key {key!r} is neither a backup object nor a manifest")
        rest = key[len(prefix) : -len(suffix)]
        parts = rest.split("/")
        if len(parts) != 4:
            raise ValueError(f"object key {key!r} does not follow <tier>/<instance>/<database>/<stamp>")
        tier_name, instance, database, stem = parts
        match = _STEM.match(stem)
        if match is None:
            raise ValueError(f"object key {key!r} has no <UTC timestamp>-<run id> name")
        try:
            tier = Tier(tier_name)
        except ValueError:
            raise ValueError(f"object key {key!r} names an unknown tier {tier_name!r}") from None
        if kind is KV_SNAPSHOT and database != SNAPSHOT_SEGMENT:
            raise ValueError(f"object key {key!r} is a snapshot key outside <tier>/<source>/{SNAPSHOT_SEGMENT}/")
        taken_at = datetime.strptime(match["ts"], TIMESTAMP_FORMAT).replace(tzinfo=UTC)
        return cls(prefix, tier, instance, database, taken_at, match["run"], kind)


def parse_stored(key: str, prefix: str = "", kinds: tuple[StoredKind, ...] = STORED_KINDS) -> BackupLocation:
    """The location a key of any of `kinds` names (each key belongs to one kind at most); ValueError if none."""
    problems = []
    for kind in kinds:
        try:
            return BackupLocation.parse(key, prefix, kind)
        except ValueError as exc:
            problems.append(str(exc))
    raise ValueError(problems[0] if len(problems) == 1 else f"object key {key!r} is not a key of ours")


def manifest_key_for(object_key: str, kind: StoredKind = MONGODB_ARCHIVE) -> str:
    """The manifest key that commits a backup object."""
    if not object_key.endswith(kind.object_suffix):
        raise ValueError(f"object key {object_key!r} does not end with {kind.object_suffix}")
    return object_key[: -len(kind.object_suffix)] + kind.manifest_suffix


def short_run_id(run_id: str) -> str:
    """The first 8 alphanumerics of a (Prefect flow run) id: short in keys, unique enough per second."""
    compact = re.sub(r"[^0-9A-Za-z]", "", run_id)
    if not compact:
        raise ValueError(f"run id {run_id!r} has no letters or digits")
    return compact[:8].lower()
