"""One snapshot stream through the backup pipeline's stages: check -> (zstd) -> gpg -> S3 multipart.

The stages are the database backup's own (`streams`, `crypto`, `storage`): the source's chunks pass
through a check (the store's integrity rule, see `consul` and `etcd`) and a SHA-256 on their way to gpg,
and the multipart upload is completed only when the stream ended, every stage ended cleanly AND the
check passed. A snapshot that fails its check therefore never becomes an object under its final key, let
alone a committed backup: the upload is aborted. Consul's stream is gzip already and goes to gpg as it
is; etcd's database compresses well and goes through zstd first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from mongobackup.backup import encrypt_into_upload, encryption_record, pipeline_errors
from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.errors import EncryptionError, SnapshotError, SnapshotInvalid, StageTable, StorageError
from mongobackup.keys import BackupLocation
from mongobackup.manifest import EncryptionRecord
from mongobackup.plan import Compression
from mongobackup.storage import Storage, UploadReceipt
from mongobackup.streams import CountingReader, IteratorReader, StageClock, zstd_compressing_reader

#: The snapshot transfer's stages, by the error that stopped it: `check` means the snapshot itself was refused.
SNAPSHOT_STAGES: StageTable = (
    (SnapshotInvalid, "check"),
    (SnapshotError, "snapshot"),
    (StorageError, "upload"),
    (EncryptionError, "encrypt"),
)


class SnapshotCheck(Protocol):
    """A store's integrity rule, fed the snapshot's bytes as they pass; `finish` raises SnapshotInvalid."""

    method: str

    def feed(self, chunk: bytes) -> None: ...

    def finish(self) -> Any: ...


@dataclass(frozen=True)
class StoredSnapshot:
    """What the transfer stored and what the check found: handed to verify and commit."""

    location: BackupLocation
    receipt: UploadReceipt
    snapshot_bytes: int
    snapshot_sha256: str
    compressed_bytes: int
    compression: str  # "none" or "zstd-<level>"
    check_method: str
    checked: Any  # what the check returned (store-specific details)
    #: Method, cipher and recipients only: no passphrase travels to verify and commit.
    encryption: EncryptionRecord
    started_at: datetime
    finished_at: datetime
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


class _Tap:
    """The source's chunks, hashed and fed to the check on their way; remembers the source's own failure.

    It runs in gpg's copy thread, where python-gnupg would swallow an exception, so the failure is kept
    here and raised again by the caller after gpg returned.
    """

    def __init__(self, chunks: Iterator[bytes], check: SnapshotCheck):
        self._chunks = chunks
        self._check = check
        self.sha256 = hashlib.sha256()
        self.bytes = 0
        self.failure: BaseException | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._chunks:
                self.sha256.update(chunk)
                self.bytes += len(chunk)
                self._check.feed(chunk)
                yield chunk
        except BaseException as exc:
            self.failure = exc
            raise


def store_snapshot(
    *,
    chunks: Iterator[bytes],
    check: SnapshotCheck,
    location: BackupLocation,
    storage: Storage,
    gpg: Gpg,
    keys: EncryptionKeys,
    compression: Compression | None,
    log: Callable[[str], None] = lambda message: None,
) -> StoredSnapshot:
    """Streams one snapshot into a new object under `location.object_key`; PipelineError naming the stage.

    `compression` None: the bytes go to gpg as they are (an already compressed stream).
    """
    target = f"snapshot source {location.instance} -> {storage.where(location.object_key)}"
    started = datetime.now(UTC)
    clock = StageClock()
    tap = _Tap(chunks, check)
    source = IteratorReader(tap, clock=clock, stage="snapshot")
    stream = source
    if compression is not None:
        stream = CountingReader(
            zstd_compressing_reader(source, level=compression.level, threads=compression.threads),
            clock=clock,
            stage="compress",
        )
    metadata = {"backup-format": "1", "tier": location.tier.value, "snapshot-source": location.instance}
    described = f"zstd(level {compression.level})" if compression else "no compression (already compressed)"
    log(f"snapshot: source -> check -> {described} -> gpg -> {storage.where(location.object_key)}")
    with (
        pipeline_errors(target, SNAPSHOT_STAGES, "snapshot"),
        storage.open_upload(location.object_key, metadata) as upload,
    ):
        encrypt_into_upload(gpg, stream, keys, upload, source, clock)
        if tap.failure is not None:
            raise tap.failure
        if not source.exhausted:
            raise SnapshotError(location.instance, "the snapshot stream ended before its end")
        with clock.measure("check"):
            checked = check.finish()  # SnapshotInvalid: the upload is aborted, nothing is stored
        receipt = upload.complete()
    finished = datetime.now(UTC)
    seconds = clock.rounded()
    seconds["total"] = round((finished - started).total_seconds(), 3)
    log(f"snapshot: {tap.bytes} bytes checked ({check.method}), stored {receipt.size} bytes in {receipt.parts} parts")
    return StoredSnapshot(
        location=location,
        receipt=receipt,
        snapshot_bytes=tap.bytes,
        snapshot_sha256=tap.sha256.hexdigest(),
        compressed_bytes=stream.bytes_read if compression is not None else tap.bytes,
        compression=f"zstd-{compression.level}" if compression is not None else "none",
        check_method=check.method,
        checked=checked,
        encryption=encryption_record(keys),
        started_at=started,
        finished_at=finished,
        stage_seconds=seconds,
    )
