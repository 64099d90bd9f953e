"""The oplog archiver: tails `local.oplog.rs` and commits a segment every `segment_s` seconds or `segment_mib`.

    start   list the instance's archive; the newest committed segment is the chain head. Open a tailable
            await cursor at `ts >= head.last` (`$gte`: an exclusive bound is answered very slowly by some
            servers) and require the head's own entry to come first: then nothing between is lost, and the
            entries at exactly that time (a transaction's share one) are skipped, being archived already.
            If it does not come first, the oplog rolled over while nobody archived it: a gap marker, an
            `instance_oplog_gap` report, and a new chain from the oldest entry still there.
    tail    (tail.py) entries gather raw in memory (a segment is at most `segment_mib`); a segment is cut once its
            first entry is `segment_s` old, or when the next entry would pass `segment_mib`, and never
            between two entries with the same timestamp (the resume rule above relies on that).
    cut     raw entries -> zstd -> gpg -> S3, verified, then the manifest (see segment.py). An S3 outage is
            waited out with backoff, the open segment kept and the cursor left where it is; an error that
            cannot heal (access denied, an unknown key) ends the run. The entries are still in the oplog:
            the next start resumes from the head, losing nothing.
    stop    the open segment is cut and committed, then `run` returns.

A lost cursor (MongoDB restarted, the position rolled off the oplog) commits what is open, then starts over
from the head as at start. Only one archiver may run per instance: two would write overlapping segments
(the deployment has a concurrency limit of one; a terminal run must not run beside it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from bson import Timestamp
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.dump import AUTH_FAILED_CODES, source_errors
from mongobackup.errors import BackupError, SourceError, VerificationError
from mongobackup.pitr.chain import chain_head, scan_archive
from mongobackup.pitr.keys import SegmentLocation, format_ts, gap_key, instance_prefix, ts_datetime, ts_pair
from mongobackup.pitr.segment import SegmentManifest, write_segment
from mongobackup.pitr.settings import PitrPlan
from mongobackup.pitr.tail import OplogTail
from mongobackup.storage import Storage

#: How long one getMore waits for new entries: also how quickly a stop or a due cut is noticed when idle.
AWAIT_MS = 1000
#: Backoff between attempts to store a segment while S3 fails: doubling from this to `pitr.retry_max_s`.
RETRY_FIRST_S = 1.0
#: After a stop is asked for, how long a failing store of the open segment is still retried.
STOP_GRACE_S = 30.0
#: Verification failures (a stored object that is not what was sent) retried before giving up.
VERIFY_ATTEMPTS = 3


@dataclass(frozen=True)
class SegmentReport:
    """A committed segment, for the events and the log."""

    manifest: SegmentManifest
    lag_s: float  # now minus the newest archived entry's time, right after the commit


@dataclass(frozen=True)
class GapReport:
    """Entries lost between two chains: the oplog no longer held them when the archiver resumed."""

    instance: str
    last_archived: Timestamp
    resumed_at: Timestamp

    @property
    def seconds(self) -> float:
        return float(self.resumed_at.time - self.last_archived.time)


class _OpenSegment:
    """Entries read but not committed yet."""

    def __init__(self) -> None:
        self.raw = bytearray()
        self.entries = 0
        self.first: Timestamp | None = None
        self.last: Timestamp | None = None
        self.opened = 0.0

    def add(self, raw: bytes, ts: Timestamp) -> None:
        if self.first is None:
            self.first, self.opened = ts, time.monotonic()
        self.raw += raw
        self.entries += 1
        self.last = ts


class OplogArchiver:
    """Archives one instance's oplog into `<prefix>oplog/<instance>/` until `stop` is set."""

    def __init__(
        self,
        *,
        client: MongoClient,
        storage: Storage,
        gpg: Gpg,
        keys: EncryptionKeys,
        instance: str,
        prefix: str,
        settings: PitrPlan,
        compression_level: int = 3,
        on_segment: Callable[[SegmentReport], None] = lambda report: None,
        on_gap: Callable[[GapReport], None] = lambda report: None,
        log: Callable[[str], None] = lambda message: None,
    ):
        self.client = client
        self.storage = storage
        self.gpg = gpg
        self.keys = keys
        self.instance = instance
        self.prefix = prefix
        self.settings = settings
        self.compression_level = compression_level
        self.on_segment = on_segment
        self.on_gap = on_gap
        self.log = log
        self.head: Timestamp | None = None  # last entry of the newest committed segment of the current chain
        self.committed = 0
        self._segment = _OpenSegment()
        self._replica_set: str | None = None

    # --- the loop ----------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Archives until `stop` is set, then commits the open segment. Raises on an error that cannot heal."""
        delay = RETRY_FIRST_S
        while True:
            try:
                self._start()
                break
            except BackupError as exc:  # S3 down at start: the same patience as for a segment
                if not exc.transient or stop.is_set():
                    raise
                self.log(f"reading the archive failed, again in {delay:.0f} s: {exc}")
                stop.wait(delay)
                delay = min(delay * 2, self.settings.retry_max_s)
        delay = RETRY_FIRST_S
        while not stop.is_set():
            try:
                with source_errors(self.instance, None):
                    self._tail(stop)
                delay = RETRY_FIRST_S
            except SourceError as exc:
                if not _heals(exc):
                    raise
                # The server restarted, or the cursor's position rolled off the oplog: keep what was read,
                # then start over from the head, which checks for a gap.
                self.log(f"reading the oplog failed, again in {delay:.0f} s: {exc}")
                self._cut(stop)
                stop.wait(delay)
                delay = min(delay * 2, self.settings.retry_max_s)
        self._cut(stop)

    def commit_open(self, stop: threading.Event) -> None:
        """Commits the entries read so far, after `run` was interrupted (a cancelled flow run); with `stop`
        set, S3 failures are retried for STOP_GRACE_S at most."""
        self._cut(stop)

    def _start(self) -> None:
        for upload in self.storage.open_uploads(instance_prefix(self.prefix, self.instance)):
            # Only a dead archiver of this instance leaves one: there is never more than one running.
            self.log(f"aborting an upload a killed archiver left open: {self.storage.where(upload.key)}")
            self.storage.abort_upload(upload)
        manifest = chain_head(self.storage, scan_archive(self.storage, self.prefix, self.instance))
        self.head = None if manifest is None else manifest.last
        where = "a new chain" if self.head is None else f"after {format_ts(self.head)}"
        self.log(f"archiving the oplog of instance {self.instance} into {self._where()}: {where}")

    def _tail(self, stop: threading.Event) -> None:
        self._cut(stop)  # a cursor always starts at the committed head, so nothing is read twice
        if self._replica_set is None:
            self._replica_set = self.client.admin.command("hello").get("setName")
        start = self.head
        if start is None:
            oldest = self.client.local["oplog.rs"].find_one({}, projection={"ts": 1}, sort=[("$natural", 1)])
            if oldest is None:
                stop.wait(AWAIT_MS / 1000)  # an empty oplog: nothing to archive yet
                return
            start = oldest["ts"]
        tail = OplogTail(self.client, start, await_ms=AWAIT_MS)
        skip = self.head  # entries at the head's time are archived already
        checked = self.head is None
        try:
            for batch in tail.batches():
                for entry in batch:
                    ts: Timestamp = entry["ts"]
                    if not checked:
                        checked = True
                        if ts != skip:
                            self._gap(ts)
                            skip = None
                    if skip is not None and ts == skip:
                        continue
                    self._take(entry.raw, ts, stop)
                if stop.is_set():
                    return
                # Caught up (an empty batch): every entry visible now is read, so a due segment is whole.
                if not batch and self._due():
                    self._cut(stop)
        finally:
            tail.close()
        stop.wait(AWAIT_MS / 1000)  # the server ended the cursor: open the next one after a pause

    def _take(self, raw: bytes, ts: Timestamp, stop: threading.Event) -> None:
        segment = self._segment
        full = len(segment.raw) + len(raw) > self.settings.segment_bytes
        if segment.entries and ts != segment.last and (full or self._due()):
            self._cut(stop)
        self._segment.add(raw, ts)

    def _due(self) -> bool:
        segment = self._segment
        return segment.entries > 0 and time.monotonic() - segment.opened >= self.settings.segment_s

    # --- gaps ---------------------------------------------------------------------------------------------

    def _gap(self, resumed_at: Timestamp) -> None:
        """The head's entry is gone from the oplog: what came between it and `resumed_at` is lost."""
        assert self.head is not None
        report = GapReport(self.instance, self.head, resumed_at)
        key = gap_key(self.prefix, self.instance, resumed_at)
        self.storage.put_json(
            key,
            {
                "instance": self.instance,
                "last_archived_ts": ts_pair(self.head),
                "resumed_at_ts": ts_pair(resumed_at),
                "detected_at": datetime.now(UTC).isoformat(),
            },
        )
        self.log(
            f"GAP in the oplog archive of instance {self.instance}: the oplog no longer holds the entries after "
            f"{format_ts(self.head)}; a new chain starts at {format_ts(resumed_at)} ({self.storage.where(key)}). "
            "Restores to points before the gap still work; the next base backup closes it."
        )
        self.head = None
        self.on_gap(report)

    # --- cutting --------------------------------------------------------------------------------------------

    def _cut(self, stop: threading.Event) -> None:
        """Stores and commits the open segment, waiting out S3 failures that may heal."""
        segment = self._segment
        if segment.entries == 0:
            return
        assert segment.first is not None and segment.last is not None
        location = SegmentLocation(self.prefix, self.instance, segment.first, segment.last)
        delay, verify_failures, stop_deadline = RETRY_FIRST_S, 0, None
        while True:
            try:
                manifest = write_segment(
                    self.storage,
                    self.gpg,
                    self.keys,
                    location=location,
                    raw=bytes(segment.raw),
                    entries=segment.entries,
                    prev_last=self.head,
                    replica_set=self._replica_set,
                    compression_level=self.compression_level,
                )
                break
            except VerificationError as exc:
                verify_failures += 1
                if verify_failures >= VERIFY_ATTEMPTS:
                    raise
                self.log(f"segment {self.storage.where(location.object_key)} failed verification, again: {exc}")
            except BackupError as exc:
                if not exc.transient:
                    raise
                if stop.is_set():
                    stop_deadline = stop_deadline or time.monotonic() + STOP_GRACE_S
                    if time.monotonic() > stop_deadline:
                        raise
                self.log(
                    f"storing segment {self.storage.where(location.object_key)} failed, retry in {delay:.0f} s: {exc}"
                )
            time.sleep(delay)
            delay = min(delay * 2, self.settings.retry_max_s)
        self.head = segment.last
        self.committed += 1
        self._segment = _OpenSegment()
        lag = (datetime.now(UTC) - ts_datetime(segment.last)).total_seconds()
        self.log(
            f"segment {location.object_key}: {manifest.entries} entries, {manifest.sizes.encrypted_bytes} bytes "
            f"stored, lag {lag:.1f} s"
        )
        self.on_segment(SegmentReport(manifest, max(0.0, lag)))

    def _where(self) -> str:
        return self.storage.where(instance_prefix(self.prefix, self.instance))


def _heals(exc: SourceError) -> bool:
    """Whether reading the oplog again may work: anything but bad credentials or missing privileges."""
    cause = exc.__cause__
    return exc.transient or (isinstance(cause, OperationFailure) and cause.code not in AUTH_FAILED_CODES)
