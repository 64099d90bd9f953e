"""Segment keys and chains from a listing alone (pure: no server)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from bson import Timestamp

from mongobackup.pitr.chain import build_archive
from mongobackup.pitr.keys import SegmentLocation, format_ts, gap_key, parse_gap_key, parse_ts
from mongobackup.storage import ObjectInfo

T0 = int(datetime(2026, 12, 2, 9, 0, tzinfo=UTC).timestamp())


def ts(seconds: int, inc: int = 1) -> Timestamp:
    return Timestamp(T0 + seconds, inc)


def test_timestamps_spell_in_utc_and_sort_as_they_compare():
    assert format_ts(Timestamp(T0, 7)) == "20261202T090000Z.0000000007"
    stamps = [Timestamp(T0, 10), Timestamp(T0, 9), Timestamp(T0 + 1, 1), Timestamp(T0, 2**32 - 1)]
    assert sorted(stamps) == [parse_ts(text) for text in sorted(map(format_ts, stamps))]
    assert parse_ts(format_ts(Timestamp(T0, 2**32 - 1))) == Timestamp(T0, 2**32 - 1)


def test_segment_keys_round_trip_and_foreign_keys_are_refused():
    location = SegmentLocation("team/", "rs-a", ts(0, 3), ts(30, 1))
    assert location.object_key == "team/oplog/rs-a/20261202T090000Z.0000000003-20261202T090030Z.0000000001.bson.zst.gpg"
    assert SegmentLocation.parse(location.manifest_key, "team/", "rs-a") == location
    for bad in ("team/oplog/rs-a/x.bson.zst.gpg", "team/oplog/rs-b/" + location.object_key.rsplit("/", 1)[1]):
        with pytest.raises(ValueError):
            SegmentLocation.parse(bad, "team/", "rs-a")
    assert parse_gap_key(gap_key("team/", "rs-a", ts(5)), "team/", "rs-a") == ts(5)


def listing(*segments: tuple[Timestamp, Timestamp], manifests: bool = True, gaps: tuple[Timestamp, ...] = ()):
    for first, last in segments:
        location = SegmentLocation("", "rs", first, last)
        yield ObjectInfo(location.object_key, 100, "etag", {})
        if manifests:
            yield ObjectInfo(location.manifest_key, 10, "etag", {})
    for gap in gaps:
        yield ObjectInfo(gap_key("", "rs", gap), 10, "etag", {})


def test_a_gap_marker_splits_the_segments_into_chains_and_leftovers_stay_apart():
    keys = [
        *listing((ts(0), ts(30)), (ts(31), ts(60)), (ts(500), ts(530)), gaps=(ts(500),)),
        *listing((ts(61), ts(90)), manifests=False),  # an upload whose manifest never came: not a segment
        ObjectInfo("oplog/rs/README", 1, "e", {}),
    ]
    archive = build_archive(keys, "", "rs")
    chains = archive.chains()
    assert [(c.first, c.last) for c in chains] == [(ts(0), ts(60)), (ts(500), ts(530))]
    assert [s.first for s in archive.leftovers] == [ts(61)]
    assert archive.foreign == ("oplog/rs/README",)
    assert archive.newest is not None and archive.newest.last == ts(530)
    assert chains[1].newest_complete_second == T0 + 529
    assert archive.lag_seconds(datetime.fromtimestamp(T0 + 545, UTC)) == 15
