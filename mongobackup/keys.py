"""Where a backup lives in the bucket: the one place that spells the object and manifest key layout.

    <prefix><tier>/<instance>/<database>/<UTC timestamp>-<short run id>.archive.zst.gpg
    <prefix><tier>/<instance>/<database>/<UTC timestamp>-<short run id>.manifest.json
    <prefix><tier>/<source>/snapshot/<UTC timestamp>-<short run id>.snap.gpg          (a key/value snapshot)
    <prefix><tier>/<source>/snapshot/<UTC timestamp>-<short run id>.snap.manifest.json

The tier comes first so that S3 lifecycle rules can expire each tier by prefix; the timestamp sorts
lexicographically so the newest backup is the last key of a listing. A snapshot's keys carry their own
suffixes, so that either key alone says which kind of backup it belongs to (a MongoDB database may well be
called `snapshot`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from mongobackup.tiers import Tier, prefix_for

OBJECT_SUFFIX = ".archive.zst.gpg"
MANIFEST_SUFFIX = ".manifest.json"
SNAPSHOT_SUFFIX = ".snap.gpg"
SNAPSHOT_MANIFEST_SUFFIX = ".snap.manifest.json"
#: The <database> segment of a key/value snapshot's keys.
SNAPSHOT_SEGMENT = "snapshot"

#: What a backup holds: a MongoDB database, or a key/value store snapshot (Consul, etcd).
Kind = Literal["database", "snapshot"]
#: (object suffix, manifest suffix) per kind; the snapshot's first, since ".snap.manifest.json" ends with
#: ".manifest.json".
_SUFFIXES: dict[str, tuple[str, str]] = {
    "snapshot": (SNAPSHOT_SUFFIX, SNAPSHOT_MANIFEST_SUFFIX),
    "database": (OBJECT_SUFFIX, MANIFEST_SUFFIX),
}
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"

_STEM = re.compile(r"^(?P<ts>\d{8}T\d{6}Z)-(?P<run>[0-9A-Za-z]+)$")


@dataclass(frozen=True)
class BackupLocation:
    """The identity of one backup: enough to derive both of its keys."""

    prefix: str
    tier: Tier
    instance: str
    database: str
    taken_at: datetime
    run_id: str
    kind: Kind = "database"

    @classmethod
    def snapshot(cls, prefix: str, tier: Tier, source: str, taken_at: datetime, run_id: str) -> BackupLocation:
        """The location of a key/value snapshot of `source` (its name takes the instance's place)."""
        return cls(prefix, tier, source, SNAPSHOT_SEGMENT, taken_at, run_id, "snapshot")

    @property
    def stem(self) -> str:
        when = self.taken_at.astimezone(UTC).strftime(TIMESTAMP_FORMAT)
        return f"{self.prefix}{prefix_for(self.tier)}{self.instance}/{self.database}/{when}-{self.run_id}"

    @property
    def object_key(self) -> str:
        return self.stem + _SUFFIXES[self.kind][0]

    @property
    def manifest_key(self) -> str:
        return self.stem + _SUFFIXES[self.kind][1]

    def is_object_key(self, key: str) -> bool:
        """Whether `key` is this backup's object (not its manifest)."""
        return key == self.object_key

    @classmethod
    def parse(cls, key: str, prefix: str = "") -> BackupLocation:
        """The location an object or manifest key names; ValueError (naming the key) if it is not ours."""
        if not key.startswith(prefix):
            raise ValueError(f"object key {key!r} is outside the prefix {prefix!r}")
        rest = key[len(prefix) :]
        kind = _kind_of(rest)
        if kind is None:
            raise ValueError(f"object key {key!r} is neither a backup object nor a manifest")
        for suffix in _SUFFIXES[kind]:
            if rest.endswith(suffix):
                rest = rest[: -len(suffix)]
                break
        parts = rest.split("/")
        if len(parts) != 4:
            raise ValueError(f"object key {key!r} does not follow <tier>/<instance>/<database>/<stamp>")
        tier_name, instance, database, stem = parts
        if kind == "snapshot" and database != SNAPSHOT_SEGMENT:
            raise ValueError(f"object key {key!r} is a snapshot key outside <tier>/<source>/{SNAPSHOT_SEGMENT}/")
        match = _STEM.match(stem)
        if match is None:
            raise ValueError(f"object key {key!r} has no <UTC timestamp>-<run id> name")
        try:
            tier = Tier(tier_name)
        except ValueError:
            raise ValueError(f"object key {key!r} names an unknown tier {tier_name!r}") from None
        taken_at = datetime.strptime(match["ts"], TIMESTAMP_FORMAT).replace(tzinfo=UTC)
        return cls(prefix, tier, instance, database, taken_at, match["run"], kind)


def _kind_of(key: str) -> Kind | None:
    for kind, suffixes in _SUFFIXES.items():
        if key.endswith(suffixes):
            return kind  # type: ignore[return-value]
    return None


def manifest_key_for(object_key: str) -> str:
    """The manifest key that commits a backup object (of either kind)."""
    for object_suffix, manifest_suffix in _SUFFIXES.values():
        if object_key.endswith(object_suffix):
            return object_key[: -len(object_suffix)] + manifest_suffix
    raise ValueError(f"object key {object_key!r} does not end with {OBJECT_SUFFIX} or {SNAPSHOT_SUFFIX}")


def object_key_for(key: str) -> str:
    """The object key of a backup named by its object or its manifest key."""
    for object_suffix, manifest_suffix in _SUFFIXES.values():
        if key.endswith(manifest_suffix):
            return key[: -len(manifest_suffix)] + object_suffix
    return key


def short_run_id(run_id: str) -> str:
    """The first 8 alphanumerics of a (Prefect flow run) id: short in keys, unique enough per second."""
    compact = re.sub(r"[^0-9A-Za-z]", "", run_id)
    if not compact:
        raise ValueError(f"run id {run_id!r} has no letters or digits")
    return compact[:8].lower()
