"""What a restore reports: its progress while it runs, its result, and the stage a failure stopped it in."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass

import zstandard
from pymongo.errors import PyMongoError

from mongobackup.archive import ArchiveError
from mongobackup.errors import EncryptionError, PipelineError, StageTable, StorageError, VerificationError
from mongobackup.manifest import NamespaceRecord
from mongobackup.oplog_replay import OplogReplayError
from mongobackup.restore_inserter import InsertFailed
from mongobackup.thaw import ThawOutcome
from mongobackup.units import MIB
from mongobackup.verify import Verdict

#: The restore's stages, by the error that stopped it (a VerificationError is "verify", checked first).
RESTORE_STAGES: StageTable = (
    (VerificationError, "verify"),
    (EncryptionError, "decrypt"),
    ((zstandard.ZstdError, gzip.BadGzipFile, EOFError), "decompress"),
    (ArchiveError, "archive"),
    (OplogReplayError, "oplog"),
    (StorageError, "download"),  # the storage seam turns every S3 failure, reads included, into one
    ((PyMongoError, InsertFailed), "write"),
    (ValueError, "plan"),
)


class RestoreFailed(PipelineError):
    """A stage of a restore failed; the message names the stage, the source object and what was cleaned up."""

    def __init__(self, stage: str, target: str, cause: BaseException, cleanup: str):
        super().__init__(stage, target, cause)
        self.cleanup = cleanup
        self.args = (f"{self.args[0]}; {cleanup}",)


@dataclass
class RestoreProgress:
    """Where a restore is: handed to the progress callback after each batch."""

    object_bytes: int = 0  # of the stored object (or archive file) read so far
    object_total: int | None = None
    archive_bytes: int = 0  # uncompressed archive bytes parsed
    documents: int = 0  # documents written (read, for a verification without writing)
    namespace: str = ""


ProgressCallback = Callable[[RestoreProgress], None]


@dataclass
class RestoreResult:
    """What a restore (or a verification without writing) did."""

    source: str
    target: str  # redacted URI and database names, or "(verify only)"
    namespaces: list[NamespaceRecord]  # as read from the archive
    documents: int  # written (read, when verifying only)
    archive_bytes: int
    object_bytes: int
    verdict: Verdict
    seconds: float
    oplog_applied: int = 0
    oplog_skipped: int = 0
    #: Of `seconds`: waiting for archive bytes (S3, gpg, zstd), and reading the restored data back to verify it.
    download_s: float = 0.0
    verify_s: float = 0.0
    #: Of `seconds`: moving the staging collections into place (renameCollection: a metadata change on MongoDB,
    #: a copy of the data on SecantusDB, which the benchmark reports apart).
    swap_s: float = 0.0
    #: What the thaw before the download did (a stored backup restored with a `Thawing`), else None.
    thaw: ThawOutcome | None = None

    @property
    def mb_per_s(self) -> float:
        """Uncompressed archive MB per second: the MongoDB-side rate, comparable with mongorestore's."""
        return self.archive_bytes / MIB / self.seconds if self.seconds > 0 else 0.0
