"""An instance's archived oplog as the bucket shows it: segments, gaps, chains, and what can be replayed.

A chain is a run of committed segments in which each one starts right after the one before (its manifest's
`prev_last_ts` is the previous segment's `last_ts`): every entry the oplog held between the chain's first and
last timestamps is in exactly one of its segments. A gap (the oplog rolled over while no archiver ran) ends a
chain; the archiver marks it with a gap marker and starts the next chain at the oldest entry still there.

Listing is cheap and reads no manifest: the keys give each segment's range, the newest archived entry (the
recovery point lag) and the gaps. What keys cannot prove (that each segment links to the one before, and that
each object is the one its manifest describes) is checked where it matters: `segments_between` for a restore,
`check_chain` for the drill, both reading manifests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bson import Timestamp

from mongobackup.errors import BackupError, VerificationError
from mongobackup.pitr.keys import (
    GAP_SUFFIX,
    SEGMENT_MANIFEST_SUFFIX,
    SEGMENT_SUFFIX,
    SegmentLocation,
    instance_prefix,
    parse_gap_key,
    ts_datetime,
)
from mongobackup.pitr.segment import SegmentManifest, fetch_segment, load_segment_manifest
from mongobackup.storage import ObjectInfo, Storage


class OutsideWindow(BackupError):
    """A point the archived oplog cannot reach (before the chain, after its newest entry, or across a gap)."""


@dataclass(frozen=True)
class StoredSegment:
    """One segment as a listing shows it."""

    location: SegmentLocation
    object_size: int | None  # None: the manifest is there but the object is not
    committed: bool  # its manifest exists

    @property
    def usable(self) -> bool:
        """Committed and its object present: the rule a backup follows too."""
        return self.committed and self.object_size is not None

    @property
    def first(self) -> Timestamp:
        return self.location.first

    @property
    def last(self) -> Timestamp:
        return self.location.last


@dataclass(frozen=True)
class Chain:
    """Consecutive committed segments with no gap marker between them, oldest first."""

    segments: tuple[StoredSegment, ...]

    @property
    def first(self) -> Timestamp:
        return self.segments[0].first

    @property
    def last(self) -> Timestamp:
        return self.segments[-1].last

    @property
    def newest_complete_second(self) -> int:
        """The newest whole second every entry of which is archived: later entries of the last entry's own
        second may still be on their way, so that second is not complete until a later entry is archived."""
        return self.last.time - 1

    def describe(self) -> str:
        return (
            f"{ts_datetime(self.first):%Y-%m-%dT%H:%M:%SZ} .. {ts_datetime(self.last):%Y-%m-%dT%H:%M:%SZ} "
            f"({len(self.segments)} segments)"
        )


@dataclass(frozen=True)
class OplogArchive:
    """Everything archived of one instance: committed segments, uncommitted leftovers, gap markers."""

    prefix: str
    instance: str
    segments: tuple[StoredSegment, ...]  # usable ones, by first timestamp
    leftovers: tuple[StoredSegment, ...] = ()  # objects without manifest, manifests without object
    gaps: tuple[Timestamp, ...] = ()  # each: a chain (re)started at this timestamp after lost entries
    foreign: tuple[str, ...] = field(default=())

    @property
    def newest(self) -> StoredSegment | None:
        return self.segments[-1] if self.segments else None

    def chains(self) -> list[Chain]:
        """The segments cut into chains at every gap marker (and wherever segments overlap: never ours)."""
        chains: list[list[StoredSegment]] = []
        for segment in self.segments:
            previous = chains[-1][-1] if chains else None
            broken = previous is None or segment.first <= previous.last
            broken = broken or any(previous.last < gap <= segment.first for gap in self.gaps)  # type: ignore[union-attr]
            if broken:
                chains.append([segment])
            else:
                chains[-1].append(segment)
        return [Chain(tuple(run)) for run in chains]

    def lag_seconds(self, now: datetime) -> float | None:
        """Now minus the newest archived entry's time: the recovery point lag; None when nothing is archived."""
        if self.newest is None:
            return None
        return max(0.0, (now - ts_datetime(self.newest.last)).total_seconds())

    def gaps_since(self, ts: Timestamp) -> list[Timestamp]:
        return [gap for gap in self.gaps if gap > ts]


def build_archive(listing: Iterable[ObjectInfo], prefix: str, instance: str) -> OplogArchive:
    """The archive of a key listing of `<prefix>oplog/<instance>/` (pure: no storage access)."""
    objects: dict[SegmentLocation, int] = {}
    manifests: set[SegmentLocation] = set()
    gaps: list[Timestamp] = []
    foreign: list[str] = []
    for info in listing:
        try:
            if info.key.endswith(GAP_SUFFIX):
                gaps.append(parse_gap_key(info.key, prefix, instance))
                continue
            location = SegmentLocation.parse(info.key, prefix, instance)
        except ValueError:
            foreign.append(info.key)
            continue
        if info.key.endswith(SEGMENT_SUFFIX):
            objects[location] = info.size
        elif info.key.endswith(SEGMENT_MANIFEST_SUFFIX):
            manifests.add(location)
    every = [StoredSegment(loc, objects.get(loc), loc in manifests) for loc in set(objects) | manifests]
    every.sort(key=lambda s: (s.first, s.last))
    return OplogArchive(
        prefix,
        instance,
        tuple(s for s in every if s.usable),
        tuple(s for s in every if not s.usable),
        tuple(sorted(gaps)),
        tuple(sorted(foreign)),
    )


def scan_archive(storage: Storage, prefix: str, instance: str) -> OplogArchive:
    """Lists `<prefix>oplog/<instance>/`; StorageError (naming the prefix) when listing fails."""
    return build_archive(storage.list_keys(instance_prefix(prefix, instance)), prefix, instance)


def chain_head(storage: Storage, archive: OplogArchive) -> SegmentManifest | None:
    """The manifest of the newest committed segment: where an archiver resumes. None when nothing is archived."""
    newest = archive.newest
    return None if newest is None else load_segment_manifest(storage, newest.location)


def chain_at(archive: OplogArchive, ts: Timestamp) -> Chain | None:
    """The chain whose range holds `ts`, or None."""
    return next((c for c in archive.chains() if c.first <= ts <= c.last), None)


def segments_between(storage: Storage, archive: OplogArchive, after: Timestamp, upto: int) -> list[SegmentManifest]:
    """The manifests of the segments holding every entry after `after` up to second `upto` (inclusive), each
    checked to link to the one before; OutsideWindow (the windows printed) when the archive cannot give them."""
    chain = chain_at(archive, after)
    if chain is None or chain.newest_complete_second < upto:
        raise OutsideWindow(
            f"instance {archive.instance}: the archived oplog does not hold every entry from "
            f"{ts_datetime(after):%Y-%m-%dT%H:%M:%SZ} to {datetime.fromtimestamp(upto, UTC):%Y-%m-%dT%H:%M:%SZ}; "
            f"archived: {describe_chains(archive)}"
        )
    wanted = [s for s in chain.segments if s.last > after and s.first.time <= upto]
    manifests = [load_segment_manifest(storage, s.location) for s in wanted]
    problems = link_problems(manifests)
    head = manifests[0] if manifests else None
    if head is not None and head.first > after and (head.prev_last is None or head.prev_last > after):
        problems.insert(0, f"{manifests[0].object_key} does not follow the entry at {after}")
    if problems:
        raise VerificationError(f"instance {archive.instance}: the oplog chain is broken: {'; '.join(problems)}")
    return manifests


def link_problems(manifests: Sequence[SegmentManifest]) -> list[str]:
    """Where consecutive segments do not link (a segment lost or replaced), by manifest key."""
    problems = []
    for before, after in zip(manifests, manifests[1:], strict=False):
        if after.prev_last != before.last:
            problems.append(
                f"{after.object_key} follows {after.prev_last} but the segment before it ends at {before.last}"
            )
    return problems


def check_chain(storage: Storage, archive: OplogArchive, chain: Chain) -> list[str]:
    """Every segment of a chain: its manifest, its link to the one before, its object's size and SHA-256.
    Returns the problems found (empty: the chain is whole); reads every object of the chain."""
    problems: list[str] = []
    manifests: list[SegmentManifest] = []
    for segment in chain.segments:
        try:
            manifest = load_segment_manifest(storage, segment.location)
            fetch_segment(storage, manifest)
        except BackupError as exc:
            problems.append(str(exc))
            continue
        manifests.append(manifest)
    problems += link_problems(manifests)
    return problems


def describe_chains(archive: OplogArchive) -> str:
    chains = archive.chains()
    if not chains:
        return f"nothing under {instance_prefix(archive.prefix, archive.instance)}"
    return "; ".join(chain.describe() for chain in chains)
