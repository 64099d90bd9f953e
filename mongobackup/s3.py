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
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mongobackup.errors import StorageError
from mongobackup.s3_errors import NOT_FOUND_CODES, error_code, storage_error
from mongobackup.s3_upload import MIN_PART_SIZE, UPLOAD_CONCURRENCY, MultipartUpload
from mongobackup.storage import ObjectInfo, OpenUpload, decode_metadata, encode_metadata
from mongobackup.units import MIB

#: botocore's retry policy on the wire: the only retry inside a step (see tasks/retries.py for the other).
WIRE_RETRIES = {"mode": "standard", "max_attempts": 4}


def s3_client(
    *, session: boto3.Session | None = None, endpoint_url: str | None = None, region: str | None = None
) -> Any:
    """A boto3 S3 client for AWS or an S3-compatible store (path-style when an endpoint is given)."""
    config = Config(
        retries=dict(WIRE_RETRIES),  # type: ignore[arg-type]
        s3={
            **({"addressing_style": "path"} if endpoint_url else {}),
            # No second sha256 of every body for the signature (botocore hashes bodies over plain http, a
            # self-hosted store's usual endpoint): parts carry Content-MD5, a signed header the store checks,
            # and the data is an OpenPGP message with its own integrity check. Over https botocore skips it
            # for uploads anyway.
            "payload_signing_enabled": False,
        },
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

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        part_size: int = 8 * MIB,
        list_page_size: int = 1000,
        upload_concurrency: int = UPLOAD_CONCURRENCY,
    ):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"storage.part_size_mib: at least {MIN_PART_SIZE // MIB} MiB, got {part_size / MIB:g}")
        self.client = client
        self.bucket = bucket
        self.part_size = part_size
        #: Parts of one upload in flight at once (memory: this + 1 parts per upload; see s3_upload).
        self.upload_concurrency = upload_concurrency
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
        return MultipartUpload(self, key, reply["UploadId"], concurrency=self.upload_concurrency)

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
