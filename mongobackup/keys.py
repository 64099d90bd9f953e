"""Where a backup lives in the bucket: the one place that spells the object and manifest key layout.

    <prefix><tier>/<instance>/<database>/<UTC timestamp>-<short run id>.archive.zst.gpg
    <prefix><tier>/<instance>/<database>/<UTC timestamp>-<short run id>.manifest.json

The tier comes first so that S3 lifecycle rules can expire each tier by prefix; the timestamp sorts
lexicographically so the newest backup is the last key of a listing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from mongobackup.tiers import Tier, prefix_for

OBJECT_SUFFIX = ".archive.zst.gpg"
MANIFEST_SUFFIX = ".manifest.json"
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

    @property
    def stem(self) -> str:
        when = self.taken_at.astimezone(UTC).strftime(TIMESTAMP_FORMAT)
        return f"{self.prefix}{prefix_for(self.tier)}{self.instance}/{self.database}/{when}-{self.run_id}"

    @property
    def object_key(self) -> str:
        return self.stem + OBJECT_SUFFIX

    @property
    def manifest_key(self) -> str:
        return self.stem + MANIFEST_SUFFIX

    @classmethod
    def parse(cls, key: str, prefix: str = "") -> BackupLocation:
        """The location an object or manifest key names; ValueError (naming the key) if it is not ours."""
        if not key.startswith(prefix):
            raise ValueError(f"object key {key!r} is outside the prefix {prefix!r}")
        rest = key[len(prefix) :]
        for suffix in (OBJECT_SUFFIX, MANIFEST_SUFFIX):
            if rest.endswith(suffix):
                rest = rest[: -len(suffix)]
                break
        else:
            raise ValueError(f"object key {key!r} is neither a backup object nor a manifest")
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
        taken_at = datetime.strptime(match["ts"], TIMESTAMP_FORMAT).replace(tzinfo=UTC)
        return cls(prefix, tier, instance, database, taken_at, match["run"])


def manifest_key_for(object_key: str) -> str:
    """The manifest key that commits a backup object."""
    if not object_key.endswith(OBJECT_SUFFIX):
        raise ValueError(f"object key {object_key!r} does not end with {OBJECT_SUFFIX}")
    return object_key[: -len(OBJECT_SUFFIX)] + MANIFEST_SUFFIX


def short_run_id(run_id: str) -> str:
    """The first 8 alphanumerics of a (Prefect flow run) id: short in keys, unique enough per second."""
    compact = re.sub(r"[^0-9A-Za-z]", "", run_id)
    if not compact:
        raise ValueError(f"run id {run_id!r} has no letters or digits")
    return compact[:8].lower()
