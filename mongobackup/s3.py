"""`S3Storage`: the storage seam (`mongobackup.storage.Storage`, `BucketAdmin`) over AWS S3 or an S3-compatible store.

An upload is a multipart upload that becomes visible under its final key only when `complete()` is called,
which the caller does after every upstream stage ended cleanly; anything else aborts it, so a failed backup
leaves neither a partial object nor an open upload behind (and one left by a killed process is found by
`open_uploads` and aborted by `uploads.abort_stale_uploads`).

Retries on the wire are botocore's standard mode (`s3_client`: 4 attempts with backoff, on throttling, 5xx
and connection faults); failures come out as StorageError classified by `s3_errors`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mongobackup.errors import StorageError
from mongobackup.s3_errors import NOT_FOUND_CODES, error_code, storage_error
from mongobackup.storage import ObjectInfo, OpenUpload, UploadReceipt, decode_metadata, encode_metadata
from mongobackup.units import MIB

MIN_PART_SIZE = 5 * MIB  # S3's floor for every part but the last
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_PARTS = 10_000
#: Parts per doubling of the part size. With 8 MiB parts, 10 doublings of 1,000 parts each reach ~8 TB in
#: 10,000 parts, beyond S3's 5 TB object limit, while a small database never buffers more than 8 MiB.
PARTS_PER_DOUBLING = 1_000
#: botocore's retry policy on the wire: the only retry inside a step (see tasks/retries.py for the other).
WIRE_RETRIES = {"mode": "standard", "max_attempts": 4}


def part_size_for(part_number: int, base: int) -> int:
    """Size of part `part_number` (1-based): grows so that MAX_PARTS parts cover any object S3 accepts."""
    return min(base << ((part_number - 1) // PARTS_PER_DOUBLING), MAX_PART_SIZE)


def s3_client(
    *, session: boto3.Session | None = None, endpoint_url: str | None = None, region: str | None = None
) -> Any:
    """A boto3 S3 client for AWS or an S3-compatible store (path-style when an endpoint is given)."""
    config = Config(
        retries=dict(WIRE_RETRIES),  # type: ignore[arg-type]
        s3={"addressing_style": "path"} if endpoint_url else {},
        # Parts carry Content-MD5, which every S3 implementation verifies; the newer default CRC trailers
        # are not understood by every self-hosted store.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=10,
        read_timeout=120,
    )
    return (session or boto3.Session()).client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


class S3Storage:
    """One bucket of an S3-compatible store: implements `storage.Storage` and `storage.BucketAdmin`."""

    def __init__(self, client: Any, bucket: str, *, part_size: int = 8 * MIB, list_page_size: int = 1000):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"storage.part_size_mib: at least {MIN_PART_SIZE // MIB} MiB, got {part_size / MIB:g}")
        self.client = client
        self.bucket = bucket
        self.part_size = part_size
        #: Keys per LIST request (S3's maximum is 1,000); smaller only to test paging.
        self.list_page_size = list_page_size

    def where(self, key: str | None = None) -> str:
        return f"s3://{self.bucket}/{key}" if key is not None else f"s3://{self.bucket}"

    def check_bucket(self) -> None:
        with self._errors("check bucket"):
            self.client.head_bucket(Bucket=self.bucket)

    def open_upload(self, key: str, metadata: Mapping[str, str] | None = None) -> MultipartUpload:
        # S3 sends metadata as HTTP headers, which must be ASCII: values go percent-encoded (head decodes).
        encoded = {name: encode_metadata(value) for name, value in (metadata or {}).items()}
        with self._errors("start upload", key):
            reply = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, Metadata=encoded, ContentType="application/pgp-encrypted"
            )
        return MultipartUpload(self, key, reply["UploadId"])

    def head(self, key: str) -> ObjectInfo | None:
        try:
            reply = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in NOT_FOUND_CODES:
                return None
            raise self._error(exc, "head", key) from exc
        except BotoCoreError as exc:
            raise self._error(exc, "head", key) from exc
        metadata = {name: decode_metadata(value) for name, value in reply.get("Metadata", {}).items()}
        return ObjectInfo(
            key,
            reply["ContentLength"],
            reply["ETag"].strip('"'),
            metadata,
            reply.get("StorageClass") or "STANDARD",
            reply.get("Restore"),
        )

    def request_restore(self, key: str, days: int, retrieval: str) -> bool:
        try:
            self.client.restore_object(
                Bucket=self.bucket,
                Key=key,
                RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": retrieval.capitalize()}},
            )
        except ClientError as exc:
            if error_code(exc) == "RestoreAlreadyInProgress":
                return False
            raise self._error(exc, f"request a {retrieval} thaw of", key) from exc
        except BotoCoreError as exc:
            raise self._error(exc, f"request a {retrieval} thaw of", key) from exc
        return True

    def put_json(self, key: str, document: Mapping[str, Any]) -> None:
        body = json.dumps(document, indent=2, sort_keys=True).encode()
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        with self._errors("put", key):
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentMD5=md5, ContentType="application/json"
            )

    def get_json(self, key: str) -> dict[str, Any]:
        with self._errors("get", key):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        try:
            return json.loads(body)
        except ValueError as exc:
            raise StorageError(f"{self.where(key)}: not valid JSON: {exc}") from exc

    def open_read(self, key: str) -> _Reader:
        with self._errors("get", key):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        return _Reader(self, key, body)

    def delete(self, key: str) -> None:
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def list_keys(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors("list", prefix + "*"):
            pages = paginator.paginate(
                Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": self.list_page_size}
            )
            for page in pages:
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        item["Key"], item["Size"], item["ETag"].strip('"'), {}, item.get("StorageClass") or "STANDARD"
                    )

    def open_uploads(self, prefix: str = "") -> list[OpenUpload]:
        uploads = []
        with self._errors("list uploads", prefix + "*"):
            for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Uploads", []):
                    size = self._parts_size(item["Key"], item["UploadId"])
                    if size is not None:
                        uploads.append(OpenUpload(item["Key"], item["UploadId"], item["Initiated"], size))
        return uploads

    def _parts_size(self, key: str, upload_id: str) -> int | None:
        """Bytes held by an upload's parts; None when it was completed or aborted since the listing."""
        try:
            pages = self.client.get_paginator("list_parts").paginate(Bucket=self.bucket, Key=key, UploadId=upload_id)
            return sum(part["Size"] for page in pages for part in page.get("Parts", []))
        except ClientError as exc:
            if error_code(exc) == "NoSuchUpload":
                return None
            raise

    def abort_upload(self, upload: OpenUpload) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload.key, UploadId=upload.upload_id)
        except ClientError as exc:
            if error_code(exc) != "NoSuchUpload":
                raise self._error(exc, "abort upload", upload.key) from exc
        except BotoCoreError as exc:
            raise self._error(exc, "abort upload", upload.key) from exc

    # -- bucket administration (BucketAdmin) ------------------------------------------------------------

    def lifecycle_rules(self) -> tuple[list[dict[str, Any]], str | None]:
        try:
            with self._errors("get lifecycle configuration of"):
                reply = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
        except StorageError as exc:
            if exc.code == "NoSuchLifecycleConfiguration":
                return [], None
            raise
        return list(reply.get("Rules", [])), reply.get("TransitionDefaultMinimumObjectSize")

    def put_lifecycle_rules(self, rules: Sequence[Mapping[str, Any]], min_transition_size: str | None) -> None:
        extra = {"TransitionDefaultMinimumObjectSize": min_transition_size} if min_transition_size else {}
        with self._errors("put lifecycle configuration of"):
            self.client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": list(rules)}, **extra
            )

    def versioning(self) -> str:
        with self._errors("get versioning of"):
            return self.client.get_bucket_versioning(Bucket=self.bucket).get("Status") or "Off"

    def enable_versioning(self) -> None:
        with self._errors("enable versioning of"):
            self.client.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})

    def object_lock(self) -> dict[str, Any] | None:
        try:
            with self._errors("get object lock configuration of"):
                return self.client.get_object_lock_configuration(Bucket=self.bucket)["ObjectLockConfiguration"]
        except StorageError as exc:
            if exc.code == "ObjectLockConfigurationNotFoundError":
                return None
            raise

    def put_object_lock(self, configuration: Mapping[str, Any]) -> None:
        with self._errors("set object lock retention of"):
            self.client.put_object_lock_configuration(Bucket=self.bucket, ObjectLockConfiguration=dict(configuration))

    # -- errors -------------------------------------------------------------------------------------------

    def _error(self, exc: BaseException, action: str, key: str | None = None) -> StorageError:
        return storage_error(exc, action, self.bucket, self.where(key))

    def _errors(self, action: str, key: str | None = None) -> _ErrorContext:
        return _ErrorContext(self, action, key)


class MultipartUpload:
    """A write-only stream into one multipart upload (`storage.Upload`); memory is one part buffer."""

    def __init__(self, storage: S3Storage, key: str, upload_id: str):
        self.storage = storage
        self.key = key
        self.upload_id = upload_id
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._part_md5s: list[bytes] = []
        self._sha256 = hashlib.sha256()
        self.size = 0
        self.finished = False

    def write(self, data: bytes) -> None:
        if self.finished:
            raise StorageError(f"{self.storage.where(self.key)}: write after the upload finished")
        self._sha256.update(data)
        self.size += len(data)
        self._buffer += data
        while len(self._buffer) >= self._next_part_size():
            size = self._next_part_size()
            part = bytes(self._buffer[:size])
            del self._buffer[:size]
            self._send(part)

    def complete(self) -> UploadReceipt:
        """Sends the last part and makes the object visible under its key."""
        if self._buffer or not self._parts:
            self._send(bytes(self._buffer))  # the last part may be small (or empty for an empty stream)
            self._buffer = bytearray()
        with self.storage._errors("complete upload", self.key):
            self.storage.client.complete_multipart_upload(
                Bucket=self.storage.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self.finished = True
        etag = hashlib.md5(b"".join(self._part_md5s)).hexdigest() + f"-{len(self._parts)}"
        return UploadReceipt(self.key, self.size, self._sha256.hexdigest(), etag, len(self._parts))

    def abort(self) -> None:
        """Drops every uploaded part. Safe to call twice; never raises over the error that caused it."""
        if self.finished:
            return
        self.finished = True
        # If even the abort fails, the next run's stale-upload sweep (and the lifecycle rule) is the backstop.
        with contextlib.suppress(ClientError, BotoCoreError):
            self.storage.client.abort_multipart_upload(
                Bucket=self.storage.bucket, Key=self.key, UploadId=self.upload_id
            )

    def _next_part_size(self) -> int:
        return part_size_for(len(self._parts) + 1, self.storage.part_size)

    def _send(self, part: bytes) -> None:
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise StorageError(f"{self.storage.where(self.key)}: more than {MAX_PARTS} parts")
        md5 = hashlib.md5(part).digest()
        with self.storage._errors(f"upload part {number}", self.key):
            reply = self.storage.client.upload_part(
                Bucket=self.storage.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=part,
                ContentMD5=base64.b64encode(md5).decode(),
            )
        self._parts.append({"PartNumber": number, "ETag": reply["ETag"]})
        self._part_md5s.append(md5)

    def __enter__(self) -> MultipartUpload:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self.finished:
            self.abort()


class _Reader:
    """An object's streaming body whose read failures are StorageError naming the key (transient when a
    re-read may succeed: a read timeout, a dropped connection)."""

    def __init__(self, storage: S3Storage, key: str, body: Any):
        self._storage = storage
        self._key = key
        self._body = body

    def read(self, size: int = -1) -> bytes:
        try:
            return self._body.read(size if size >= 0 else None)
        except BotoCoreError as exc:
            raise self._storage._error(exc, "read", self._key) from exc

    def close(self) -> None:
        self._body.close()


class _ErrorContext:
    """Turns botocore failures into StorageError naming the action and the object."""

    def __init__(self, storage: S3Storage, action: str, key: str | None):
        self.storage = storage
        self.action = action
        self.key = key

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, ClientError | BotoCoreError):
            raise self.storage._error(exc, self.action, self.key) from exc
