"""The exception tree of the backup core.

Every message names the thing at fault (instance, database, object key, config field) so that an operator
reading a failed run knows where to look without a debugger. Messages never carry secrets: callers pass
URIs through `redact_uri` before they reach an error.
"""

from __future__ import annotations

from collections.abc import Sequence


def one_line(message: str | BaseException, limit: int = 300) -> str:
    """`message` (an exception's text, or its type's name when it has none) on one line for a table cell,
    an event field or an error that wraps it: every run of whitespace, line breaks included, becomes one
    space, and a text longer than `limit` is cut with an ellipsis (drivers attach long diagnostics)."""
    text = str(message) or (type(message).__name__ if isinstance(message, BaseException) else "")
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


#: (exception types, stage name) pairs, most specific first: how one direction of the pipeline names its stages.
StageTable = Sequence[tuple[type[BaseException] | tuple[type[BaseException], ...], str]]


def stage_of(exc: BaseException, stages: StageTable, default: str) -> str:
    """The pipeline stage an exception is reported under: the first entry of `stages` it is an instance of,
    else its own `stage` attribute (a PipelineError's), else `default`. Backup and restore each pass their
    table (an S3 failure is "upload" in one and "download" in the other)."""
    for types, stage in stages:
        if isinstance(exc, types):
            return stage
    return getattr(exc, "stage", None) or default


class BackupError(Exception):
    """Base of every error the backup core raises on purpose."""

    #: Whether retrying the same operation can help (a network blip) or not (bad credentials, a missing
    #: bucket, an unknown GPG key). Prefect retries consult this so permanent faults fail fast.
    transient: bool = False


def is_transient(exc: BaseException) -> bool:
    """Whether one more attempt of the failed step may succeed: only for an error the core marked transient.

    An exception the core does not know (not a BackupError) is permanent: retrying what nobody recognised
    costs minutes and heals nothing that a retry inside the step (botocore's, pymongo's) did not already.
    """
    return isinstance(exc, BackupError) and exc.transient


class SourceError(BackupError):
    """Reading from a MongoDB instance failed."""

    def __init__(self, instance: str, database: str | None, reason: str, *, transient: bool = False):
        where = f"instance {instance}" + (f", database {database}" if database else "")
        super().__init__(f"{where}: {reason}")
        self.instance = instance
        self.database = database
        self.transient = transient


class EncryptionError(BackupError):
    """GPG refused to encrypt or decrypt (unknown recipient, wrong key, killed process)."""


class StorageError(BackupError):
    """An S3 operation failed; the message names the bucket and key. `code` is the store's error code."""

    def __init__(self, message: str, *, transient: bool = False, code: str = ""):
        super().__init__(message)
        self.transient = transient
        self.code = code


class Unsupported(StorageError):
    """The store does not implement what was asked (a lifecycle rule, Object Lock): `code` says how it refused."""


class VerificationError(BackupError):
    """A stored object does not match what was sent (size, checksum) or what its manifest says."""


class PipelineError(BackupError):
    """A stage of the streamed transfer failed; names the stage and wraps the cause."""

    def __init__(self, stage: str, target: str, cause: BaseException):
        super().__init__(f"{stage} failed for {target}: {cause}")
        self.stage = stage
        self.target = target
        self.cause = cause
        self.transient = bool(getattr(cause, "transient", False))


class SnapshotError(BackupError):
    """Taking or reading back a key/value store snapshot (Consul, etcd) failed; names the source."""

    def __init__(self, source: str, reason: str, *, transient: bool = False):
        super().__init__(f"snapshot source {source}: {reason}")
        self.source = source
        self.transient = transient


class SnapshotInvalid(SnapshotError):
    """A snapshot failed its own integrity check (hashes, framing, truncation): it is never committed."""
