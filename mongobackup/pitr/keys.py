"""Where an instance's archived oplog lives in the bucket: the one place that spells those keys.

    <prefix>oplog/<instance>/<first ts>-<last ts>.bson.zst.gpg    a segment: raw BSON entries -> zstd -> gpg
    <prefix>oplog/<instance>/<first ts>-<last ts>.manifest.json   its manifest, written last: the commit marker
    <prefix>oplog/<instance>/<ts>.gap.json                        a gap: entries before <ts> were lost

A ts is an oplog entry's BSON timestamp spelled `<UTC YYYYMMDDTHHMMSSZ>.<increment, 10 digits>`, so that keys
sort in oplog order and a listing alone gives each segment's range, the newest archived entry and the gaps,
without reading a single manifest. `oplog/` is a sibling of the tier prefixes, so the lifecycle rule of the
oplog and those of the backups never overlap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from bson import Timestamp

OPLOG_PREFIX = "oplog/"
SEGMENT_SUFFIX = ".bson.zst.gpg"
SEGMENT_MANIFEST_SUFFIX = ".manifest.json"
GAP_SUFFIX = ".gap.json"

_TS = r"\d{8}T\d{6}Z\.\d{10}"
_SEGMENT = re.compile(rf"^(?P<first>{_TS})-(?P<last>{_TS})$")
_GAP = re.compile(rf"^(?P<ts>{_TS})$")
_TS_FORMAT = "%Y%m%dT%H%M%SZ"


def format_ts(ts: Timestamp) -> str:
    """`20261202T093437Z.0000000001`: sorts as the timestamps do (the increment is at most 2**32 - 1)."""
    return f"{datetime.fromtimestamp(ts.time, UTC):{_TS_FORMAT}}.{ts.inc:010d}"


def parse_ts(text: str) -> Timestamp:
    """The timestamp `format_ts` spelled; ValueError when `text` is not one."""
    when, _, inc = text.partition(".")
    seconds = datetime.strptime(when, _TS_FORMAT).replace(tzinfo=UTC).timestamp()
    return Timestamp(int(seconds), int(inc))


def ts_datetime(ts: Timestamp) -> datetime:
    """The second of an oplog timestamp as an aware UTC datetime."""
    return datetime.fromtimestamp(ts.time, UTC)


def ts_pair(ts: Timestamp) -> tuple[int, int]:
    """A timestamp as manifests store it: (seconds, increment)."""
    return ts.time, ts.inc


def instance_prefix(prefix: str, instance: str) -> str:
    """`<prefix>oplog/<instance>/`: everything archived of one instance, and nothing else, lists under it."""
    return f"{prefix}{OPLOG_PREFIX}{instance}/"


@dataclass(frozen=True)
class SegmentLocation:
    """The identity of one segment: its instance and the timestamps of its first and last entries."""

    prefix: str
    instance: str
    first: Timestamp
    last: Timestamp

    @property
    def stem(self) -> str:
        return f"{instance_prefix(self.prefix, self.instance)}{format_ts(self.first)}-{format_ts(self.last)}"

    @property
    def object_key(self) -> str:
        return self.stem + SEGMENT_SUFFIX

    @property
    def manifest_key(self) -> str:
        return self.stem + SEGMENT_MANIFEST_SUFFIX

    @classmethod
    def parse(cls, key: str, prefix: str, instance: str) -> SegmentLocation:
        """The segment a segment or manifest key names; ValueError (naming the key) if it is not one."""
        name = _name_under(key, prefix, instance)
        for suffix in (SEGMENT_SUFFIX, SEGMENT_MANIFEST_SUFFIX):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        else:
            raise ValueError(f"key {key!r} is neither an oplog segment nor a segment manifest")
        match = _SEGMENT.match(name)
        if match is None:
            raise ValueError(f"key {key!r} has no <first ts>-<last ts> name")
        first, last = parse_ts(match["first"]), parse_ts(match["last"])
        if last < first:
            raise ValueError(f"key {key!r} ends before it starts")
        return cls(prefix, instance, first, last)


def gap_key(prefix: str, instance: str, resumed_at: Timestamp) -> str:
    """The marker of a gap: the chain that starts at `resumed_at` does not join the one before it."""
    return f"{instance_prefix(prefix, instance)}{format_ts(resumed_at)}{GAP_SUFFIX}"


def parse_gap_key(key: str, prefix: str, instance: str) -> Timestamp:
    """The timestamp a gap marker's key names; ValueError if the key is not a gap marker."""
    name = _name_under(key, prefix, instance)
    if not name.endswith(GAP_SUFFIX) or _GAP.match(name[: -len(GAP_SUFFIX)]) is None:
        raise ValueError(f"key {key!r} is not a gap marker")
    return parse_ts(name[: -len(GAP_SUFFIX)])


def _name_under(key: str, prefix: str, instance: str) -> str:
    below = instance_prefix(prefix, instance)
    if not key.startswith(below) or "/" in key[len(below) :]:
        raise ValueError(f"key {key!r} is not directly under {below!r}")
    return key[len(below) :]
