"""The storage seam: what backup, restore, inventory, status, prune and lifecycle need from an object store.

Storage sees keys and bytes, never what they mean (restic's backend interface is the model). The one
implementation is `mongobackup.s3.S3Storage` (AWS S3 and S3-compatible stores); the conformance tests in
`tests/test_storage_conformance.py` hold every store the project runs against to the contract below.

The contract every method keeps:
- Keys are UTF-8 strings (`café-ünï/日本.archive` is a valid key). Metadata values may be any text: the
  store keeps them percent-encoded (`encode_metadata`, UTF-8, RFC 3986; S3 sends metadata as HTTP headers,
  which must be ASCII) and `head` returns them decoded.
- Failures raise `StorageError` naming the action, the bucket and the key (`s3://bucket/key`). `transient`
  is True only for causes a retry can heal (5xx, throttling, timeouts, a dropped connection); everything
  else, and anything not recognised, is permanent and never retried. `code` is the store's error code.
- Retries on the wire happen inside the implementation (botocore's standard mode for S3); callers retry
  only whole steps, through Prefect, and only transient errors (see `tasks/retries.py`).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Protocol


@dataclass(frozen=True)
class ObjectInfo:
    """ObjectInfo is one stored object: its key, size in bytes, ETag (unquoted) and user metadata."""

    key: str
    size: int
    etag: str
    metadata: Mapping[str, str]
    #: As a listing or HEAD reports it (S3 leaves it out for STANDARD).
    storage_class: str = "STANDARD"
    #: HEAD's `x-amz-restore` header: the state of a thaw of an archived object (see `mongobackup.glacier`).
    restore: str | None = None


@dataclass(frozen=True)
class UploadReceipt:
    """What the uploader sent, to be checked against what the store reports."""

    key: str
    size: int
    sha256: str
    etag: str  # the multipart ETag S3 computes: md5 of the parts' md5s, "-<parts>"
    parts: int


@dataclass(frozen=True)
class OpenUpload:
    """OpenUpload is a multipart upload started and neither completed nor aborted: its parts cost storage."""

    key: str
    upload_id: str
    initiated: datetime
    #: Bytes of the parts uploaded so far.
    size: int


class Upload(Protocol):
    """A write-only stream into one object that becomes visible only on `complete()`.

    Used as a context manager: leaving the block with an exception, or without `complete()`, aborts.
    """

    key: str
    size: int

    def write(self, data: bytes) -> None:
        """Appends bytes; memory is bounded by a few parts (S3: those in flight and the one filling), whatever
        the object's size."""

    def complete(self) -> UploadReceipt:
        """Makes the object visible under its key, whole; before this nothing is visible under it."""
        ...

    def abort(self) -> None:
        """Drops every part sent; leaves no object and no open upload. Idempotent; never raises."""

    def __enter__(self) -> Upload: ...

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None: ...


class Storage(Protocol):
    """One bucket (or container) of an object store: the narrow interface the backup core uses."""

    bucket: str

    def where(self, key: str | None = None) -> str:
        """The address of the bucket, or of a key in it, as messages show it: `s3://bucket/key`."""
        ...

    def check_bucket(self) -> None:
        """Returns when the bucket exists and is ours to use; StorageError naming it otherwise."""

    def open_upload(self, key: str, metadata: Mapping[str, str] | None = None) -> Upload:
        """Starts a streamed upload to `key`, with user metadata (any text; stored percent-encoded)."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """The object's size, ETag, metadata, storage class and thaw state; None when there is no such object."""
        ...

    def request_restore(self, key: str, days: int, retrieval: str) -> bool:
        """Asks for a thaw of an archived object (GLACIER, DEEP_ARCHIVE) for `days` at `retrieval` (expedited,
        standard, bulk). True when taken; False when one is already under way (nothing is asked twice)."""
        ...

    def put_json(self, key: str, document: Mapping[str, Any]) -> None:
        """Stores a small JSON document whole (one request, checked with Content-MD5)."""

    def get_json(self, key: str) -> dict[str, Any]:
        """The JSON document under `key`; StorageError (permanent) when it is missing or not JSON."""
        ...

    def open_read(self, key: str) -> BinaryIO:
        """A stream of the object's bytes (`read(n)`); read failures raise StorageError naming the key."""
        ...

    def list_keys(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under `prefix`, in key order, page by page, with its storage class (metadata is not
        listed: empty; nor is the thaw state: HEAD says it)."""
        ...

    def delete(self, key: str) -> None:
        """Removes the object; deleting a missing key is not an error (S3 semantics)."""

    def open_uploads(self, prefix: str = "") -> list[OpenUpload]:
        """The multipart uploads still open under `prefix`, with their start time and the bytes they hold."""
        ...

    def abort_upload(self, upload: OpenUpload) -> None:
        """Aborts an open upload (its parts are freed); one already gone is not an error."""


class BucketAdmin(Protocol):
    """Bucket-level settings, for the retention flow: lifecycle rules, versioning, Object Lock.

    Rules and configurations are in the shape of S3's API (boto3's dicts). A store that does not implement
    a setting raises `errors.Unsupported` (a StorageError) naming the bucket and the store's code.
    """

    bucket: str

    def where(self, key: str | None = None) -> str: ...

    def lifecycle_rules(self) -> tuple[list[dict[str, Any]], str | None]:
        """The bucket's lifecycle rules ([] when none) and its TransitionDefaultMinimumObjectSize."""
        ...

    def put_lifecycle_rules(self, rules: Sequence[Mapping[str, Any]], min_transition_size: str | None) -> None:
        """Replaces the bucket's whole lifecycle configuration (S3 has no per-rule call)."""

    def versioning(self) -> str:
        """`Enabled`, `Suspended` or `Off`."""
        ...

    def enable_versioning(self) -> None: ...

    def object_lock(self) -> dict[str, Any] | None:
        """The Object Lock configuration, or None when the bucket has none."""
        ...

    def put_object_lock(self, configuration: Mapping[str, Any]) -> None: ...


#: Characters kept as they are in a metadata value; everything else is percent-encoded (RFC 3986, UTF-8).
_METADATA_SAFE = "-_.~:/+@ "


def encode_metadata(value: str) -> str:
    """An ASCII form of any text for an object metadata value: UTF-8 percent-encoding (RFC 3986).

    ASCII names stay readable as they are (`rs-orders`); `café-ünï` is stored as `caf%C3%A9-%C3%BCn%C3%AF`.
    """
    return urllib.parse.quote(value, safe=_METADATA_SAFE)


def decode_metadata(value: str) -> str:
    """The text `encode_metadata` encoded."""
    return urllib.parse.unquote(value)
