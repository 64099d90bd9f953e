"""S3 storage behind a narrow interface: streamed multipart upload, head, small JSON objects, listing.

Storage sees keys and bytes, never what they mean. An upload becomes visible under its final key only when
`complete()` is called, which the caller does after every upstream stage ended cleanly; anything else aborts
the multipart upload, so a failed backup leaves neither a partial object nor an open upload behind.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mongobackup.errors import StorageError
from mongobackup.streams import MIB

MIN_PART_SIZE = 5 * MIB  # S3's floor for every part but the last
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_PARTS = 10_000
#: Parts per doubling of the part size. With 8 MiB parts, 10 doublings of 1,000 parts each reach ~8 TB in
#: 10,000 parts, beyond S3's 5 TB object limit, while a small database never buffers more than 8 MiB.
PARTS_PER_DOUBLING = 1_000

_PERMANENT_CODES = {
    "NoSuchBucket",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidBucketName",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidArgument",
    "NoSuchKey",
    "404",
    "403",
    "400",
}


def part_size_for(part_number: int, base: int) -> int:
    """Size of part `part_number` (1-based): grows so that MAX_PARTS parts cover any object S3 accepts."""
    return min(base << ((part_number - 1) // PARTS_PER_DOUBLING), MAX_PART_SIZE)


def s3_client(
    *, session: boto3.Session | None = None, endpoint_url: str | None = None, region: str | None = None
) -> Any:
    """A boto3 S3 client for AWS or an S3-compatible store (path-style when an endpoint is given)."""
    config = Config(
        retries={"mode": "standard", "max_attempts": 4},
        s3={"addressing_style": "path"} if endpoint_url else {},
        # Parts carry Content-MD5, which every S3 implementation verifies; the newer default CRC trailers
        # are not understood by every self-hosted store.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=10,
        read_timeout=120,
    )
    return (session or boto3.Session()).client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    metadata: Mapping[str, str]


@dataclass(frozen=True)
class UploadReceipt:
    """What the uploader sent, to be checked against what the store reports."""

    key: str
    size: int
    sha256: str
    etag: str  # the multipart ETag S3 computes: md5 of the parts' md5s, "-<parts>"
    parts: int


class S3Storage:
    """One bucket of an S3-compatible store."""

    def __init__(self, client: Any, bucket: str, *, part_size: int = 8 * MIB):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"storage.part_size_mib: at least {MIN_PART_SIZE // MIB} MiB, got {part_size / MIB:g}")
        self.client = client
        self.bucket = bucket
        self.part_size = part_size

    def where(self, key: str | None = None) -> str:
        return f"s3://{self.bucket}/{key}" if key is not None else f"s3://{self.bucket}"

    def check_bucket(self) -> None:
        """Fails fast, naming the bucket, when it is missing or not ours to write."""
        with self.errors("check bucket"):
            self.client.head_bucket(Bucket=self.bucket)

    def open_upload(self, key: str, metadata: Mapping[str, str] | None = None) -> MultipartUpload:
        with self.errors("start upload", key):
            reply = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, Metadata=dict(metadata or {}), ContentType="application/pgp-encrypted"
            )
        return MultipartUpload(self, key, reply["UploadId"])

    def head(self, key: str) -> ObjectInfo | None:
        try:
            reply = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise _storage_error(exc, "head", self.where(key)) from exc
        except BotoCoreError as exc:
            raise _storage_error(exc, "head", self.where(key)) from exc
        return ObjectInfo(key, reply["ContentLength"], reply["ETag"].strip('"'), reply.get("Metadata", {}))

    def put_json(self, key: str, document: Mapping[str, Any]) -> None:
        body = json.dumps(document, indent=2, sort_keys=True).encode()
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        with self.errors("put", key):
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentMD5=md5, ContentType="application/json"
            )

    def get_json(self, key: str) -> dict[str, Any]:
        with self.errors("get", key):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        try:
            return json.loads(body)
        except ValueError as exc:
            raise StorageError(f"{self.where(key)}: not valid JSON: {exc}") from exc

    def open_read(self, key: str) -> Any:
        """A streaming body (file-like `.read(n)`) of the object."""
        with self.errors("get", key):
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]

    def delete(self, key: str) -> None:
        with self.errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def list_keys(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        with self.errors("list", prefix + "*"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield ObjectInfo(item["Key"], item["Size"], item["ETag"].strip('"'), {})

    def open_uploads(self, prefix: str = "") -> list[tuple[str, str]]:
        """(key, upload id) of multipart uploads still open under a prefix: a failed run must leave none."""
        with self.errors("list uploads", prefix + "*"):
            reply = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix)
        return [(u["Key"], u["UploadId"]) for u in reply.get("Uploads", [])]

    def errors(self, action: str, key: str | None = None) -> _ErrorContext:
        """A context turning botocore failures into StorageError naming the action and the object."""
        return _ErrorContext(action, self.where(key))


class MultipartUpload:
    """A write-only stream into one multipart upload; memory is one part buffer.

    Use as a context manager: leaving the block with an exception (or without `complete()`) aborts.
    """

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
        with self.storage.errors("complete upload", self.key):
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
        # If even the abort fails, the bucket's abort-incomplete-multipart lifecycle rule is the backstop.
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
        with self.storage.errors(f"upload part {number}", self.key):
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


class _ErrorContext:
    """Turns botocore failures into StorageError naming the action and the object."""

    def __init__(self, action: str, where: str):
        self.action = action
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, ClientError | BotoCoreError):
            raise _storage_error(exc, self.action, self.where) from exc


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _storage_error(exc: Exception, action: str, where: str) -> StorageError:
    if isinstance(exc, ClientError):
        code = _code(exc)
        message = exc.response.get("Error", {}).get("Message") or code
        if code in ("NoSuchBucket",) or (code == "404" and action == "check bucket"):
            message = "bucket does not exist"
        transient = code not in _PERMANENT_CODES
        return StorageError(f"{action} {where}: {message} ({code})", transient=transient)
    return StorageError(f"{action} {where}: {exc}", transient=True)
