"""One database's backup, as plain functions the Prefect tasks call: transfer, verify, commit.

transfer: dump -> zstd -> gpg -> S3 multipart, one stream with no temp file. The upload is completed only
          when every stage ended cleanly, and aborted otherwise.
verify:   the stored object's size and multipart ETag must match what was sent; a mismatch deletes it.
commit:   the manifest is written beside the object; only then does the backup exist.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from typing import Any, BinaryIO, Protocol

import zstandard

from mongobackup.archive import ARCHIVE_VERSION
from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.dump import DumpSummary
from mongobackup.errors import (
    BackupError,
    EncryptionError,
    PipelineError,
    SourceError,
    StageTable,
    StorageError,
    VerificationError,
    stage_of,
)
from mongobackup.keys import MONGODB_ARCHIVE, BackupLocation, StoredKind, manifest_key_for
from mongobackup.manifest import BackupManifest, EncryptionRecord, Sizes
from mongobackup.plan import Compression
from mongobackup.storage import Storage, Upload, UploadReceipt
from mongobackup.streams import CountingReader, IteratorReader, StageClock, zstd_compressing_reader

TOOL_NAME = "mongo-backup-flows"


def tool_version() -> str:
    try:
        return importlib_metadata.version(TOOL_NAME)
    except importlib_metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class TransferOutcome:
    """What the transfer stored: handed to verify and commit."""

    location: BackupLocation
    receipt: UploadReceipt
    summary: DumpSummary
    raw_bytes: int
    compressed_bytes: int
    #: Who can open the object (method, cipher, recipients): never the passphrase itself, which stays with
    #: the run's resources instead of travelling through task results.
    encryption: EncryptionRecord
    compression: Compression
    started_at: datetime
    finished_at: datetime
    stage_seconds: dict[str, float]

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


class ArchiveSource(Protocol):
    """Where the archive bytes come from: our own dump (DatabaseDump) or the stock mongodump."""

    summary: DumpSummary

    def chunks(self) -> Iterator[bytes]: ...


def encrypt_into_upload(
    gpg: Gpg, stream: BinaryIO, keys: EncryptionKeys, upload: Upload, source: IteratorReader, clock: StageClock
) -> None:
    """gpg-encrypts `stream` into `upload`. A failed write stops `source` at once: nothing more can be stored,
    so reading on from the database (or snapshot) would only waste the server's time."""

    def store(chunk: bytes) -> None:
        try:
            with clock.measure("upload"):
                upload.write(chunk)
        except BaseException as exc:
            source.abort(exc)
            raise

    gpg.encrypt_stream(stream, store, keys)


@contextlib.contextmanager
def pipeline_errors(target: str, stages: StageTable, default: str) -> Iterator[None]:
    """Turns a failure inside a streamed transfer into PipelineError naming its stage and `target`."""
    try:
        yield
    except BackupError as exc:
        raise PipelineError(stage_of(exc, stages, default), target, exc) from exc
    except zstandard.ZstdError as exc:
        raise PipelineError("compress", target, exc) from exc
    except OSError as exc:  # a broken pipe to gpg: it died mid-stream
        raise PipelineError("encrypt", target, EncryptionError(f"gpg stream broken: {exc}")) from exc


def transfer_database(
    *,
    dump: ArchiveSource,
    location: BackupLocation,
    storage: Storage,
    gpg: Gpg,
    keys: EncryptionKeys,
    compression: Compression,
    log: Callable[[str], None] = lambda message: None,
) -> TransferOutcome:
    """Streams one database into a new object under `location.object_key`; raises PipelineError naming the stage.

    Nothing is visible under the key unless every stage finished: the multipart upload is completed last.
    """
    target = f"instance {location.instance}, database {location.database} -> {storage.where(location.object_key)}"
    started = datetime.now(UTC)
    clock = StageClock()
    source = IteratorReader(dump.chunks(), clock=clock, stage="dump")
    compressed = CountingReader(
        zstd_compressing_reader(source, level=compression.level, threads=compression.threads),
        clock=clock,
        stage="compress",
    )
    object_metadata = {
        "backup-format": str(1),
        "tier": location.tier.value,
        "instance": location.instance,
        "database": location.database,
    }
    log(f"transfer: dump -> zstd(level {compression.level}) -> gpg -> {storage.where(location.object_key)}")
    with (
        pipeline_errors(target, TRANSFER_STAGES, "transfer"),
        storage.open_upload(location.object_key, object_metadata) as upload,
    ):
        encrypt_into_upload(gpg, compressed, keys, upload, source, clock)
        if not (source.exhausted and dump.summary.complete):
            raise SourceError(location.instance, location.database, "the dump stream ended before its end")
        receipt = upload.complete()
    finished = datetime.now(UTC)
    seconds = clock.rounded()
    seconds["total"] = round((finished - started).total_seconds(), 3)
    log(f"transfer: stored {receipt.size} bytes in {receipt.parts} parts; stage seconds {seconds}")
    return TransferOutcome(
        location,
        receipt,
        dump.summary,
        source.bytes_read,
        compressed.bytes_read,
        encryption_record(keys),
        compression,
        started,
        finished,
        seconds,
    )


def encryption_record(keys: EncryptionKeys) -> EncryptionRecord:
    """What the manifest says about the encryption: the method, cipher and recipients, no secret."""
    return EncryptionRecord(
        method="public-key" if keys.fingerprints else "symmetric",
        cipher=keys.cipher,
        recipients=list(keys.fingerprints),
    )


def verify_upload(storage: Storage, outcome: TransferOutcome) -> None:
    """Checks the stored object against the receipt; deletes it (it is uncommitted) when they differ."""
    verify_receipt(storage, outcome.receipt)


def verify_receipt(storage: Storage, receipt: UploadReceipt) -> None:
    """Checks a stored object (of any kind) against what its upload sent; deletes it when they differ."""
    key = receipt.key
    info = storage.head(key)
    if info is None:
        raise VerificationError(f"{storage.where(key)}: object missing right after its upload completed")
    problems = []
    if info.size != receipt.size:
        problems.append(f"size {info.size} != {receipt.size} sent")
    if info.etag != receipt.etag:
        problems.append(f"ETag {info.etag} != {receipt.etag} computed from the parts' MD5")
    if problems:
        storage.delete(key)
        raise VerificationError(f"{storage.where(key)}: " + "; ".join(problems) + " (object deleted)")


def build_manifest(outcome: TransferOutcome, *, run_id: str, scheduled_at: datetime) -> BackupManifest:
    location = outcome.location
    return BackupManifest(
        archive_format=ARCHIVE_VERSION,
        tool=TOOL_NAME,
        tool_version=tool_version(),
        instance=location.instance,
        replica_set=outcome.summary.replica_set,
        server_version=outcome.summary.server_version,
        database=location.database,
        tier=location.tier.value,
        object_key=location.object_key,
        run_id=run_id,
        scheduled_at=scheduled_at,
        started_at=outcome.started_at,
        finished_at=outcome.finished_at,
        compression=f"zstd-{outcome.compression.level}",
        sizes=Sizes(
            raw_bytes=outcome.raw_bytes, compressed_bytes=outcome.compressed_bytes, encrypted_bytes=outcome.receipt.size
        ),
        sha256=outcome.receipt.sha256,
        etag=outcome.receipt.etag,
        encryption=outcome.encryption,
        namespaces=outcome.summary.namespaces,
        oplog=outcome.summary.oplog,
        stage_seconds=outcome.stage_seconds,
    )


class Committable(Protocol):
    """A manifest of any kind of stored thing (a database's, a snapshot's): it names its object and serialises."""

    @property
    def object_key(self) -> str: ...

    def to_json_dict(self) -> dict[str, Any]: ...


def commit_manifest(storage: Storage, manifest: Committable, kind: StoredKind = MONGODB_ARCHIVE) -> str:
    """Writes the manifest beside its object: the moment the backup starts to exist. Returns its key."""
    location_key = manifest.object_key
    if storage.head(location_key) is None:
        raise VerificationError(f"{storage.where(location_key)}: refusing to commit a manifest for a missing object")
    manifest_key = manifest_key_for(location_key, kind)
    storage.put_json(manifest_key, manifest.to_json_dict())
    return manifest_key


#: The transfer's stages, by the error that stopped it.
TRANSFER_STAGES: StageTable = ((SourceError, "dump"), (StorageError, "upload"), (EncryptionError, "encrypt"))


def back_up_database(
    *,
    dump: ArchiveSource,
    location: BackupLocation,
    storage: Storage,
    gpg: Gpg,
    keys: EncryptionKeys,
    compression: Compression,
    log: Callable[[str], None] = lambda message: None,
) -> BackupManifest:
    """One database's whole backup in one call: transfer, verify, commit. Returns the committed manifest.

    For scripts, tests and benchmarks; the flow runs the same three steps as separate tasks, so that each
    retries and shows on its own. The run id and scheduled time are the location's.
    """
    outcome = transfer_database(
        dump=dump, location=location, storage=storage, gpg=gpg, keys=keys, compression=compression, log=log
    )
    verify_upload(storage, outcome)
    manifest = build_manifest(outcome, run_id=location.run_id, scheduled_at=location.taken_at)
    commit_manifest(storage, manifest)
    return manifest
