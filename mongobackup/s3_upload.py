"""`MultipartUpload`: a write-only stream into one S3 multipart upload, whose parts go up in the background.

The writer (gpg's output callback in a backup) only fills the next part: up to UPLOAD_CONCURRENCY finished
parts are uploaded at once by worker threads meanwhile, so gpg and zstd do not stop for each part's round
trip to S3. Memory is bounded by (UPLOAD_CONCURRENCY + 1) parts (the ones in flight and the one filling):
24 MiB with 8 MiB parts, whatever the object's size. A writer that gets ahead of S3 waits for a free slot.

Failure semantics are those of a synchronous upload: the first failed part (lowest number, once every part
in flight has ended) is raised, as StorageError naming the key and the part, from the next `write`, from
`drain` or from `complete`, and every later call raises it again; the object becomes visible only when
`complete()` has seen every part stored; `abort()` waits for the parts in flight before it drops the upload,
so no part lands after it. Retries on the wire stay botocore's (`s3.WIRE_RETRIES`), one per part request.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from mongobackup.errors import StorageError
from mongobackup.storage import UploadReceipt
from mongobackup.units import MIB

if TYPE_CHECKING:
    from mongobackup.s3 import S3Storage

MIN_PART_SIZE = 5 * MIB  # S3's floor for every part but the last
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_PARTS = 10_000
#: Parts per doubling of the part size. With 8 MiB parts, 10 doublings of 1,000 parts each reach ~8 TB in
#: 10,000 parts, beyond S3's 5 TB object limit, while a small database never buffers more than 8 MiB.
PARTS_PER_DOUBLING = 1_000
#: Parts uploaded at once while the next one fills. Two keep gpg busy while one part's request waits on S3;
#: memory is (UPLOAD_CONCURRENCY + 1) x the part size per upload (24 MiB with 8 MiB parts).
UPLOAD_CONCURRENCY = 2


def part_size_for(part_number: int, base: int) -> int:
    """Size of part `part_number` (1-based): grows so that MAX_PARTS parts cover any object S3 accepts."""
    return min(base << ((part_number - 1) // PARTS_PER_DOUBLING), MAX_PART_SIZE)


def part_md5(part: bytes) -> bytes:
    """The MD5 of one part: sent as Content-MD5 (every S3 implementation verifies it) and folded into the
    multipart ETag the receipt predicts."""
    return hashlib.md5(part).digest()


class MultipartUpload:
    """A write-only stream into one multipart upload (`storage.Upload`); memory is a few part buffers."""

    def __init__(self, storage: S3Storage, key: str, upload_id: str, *, concurrency: int = UPLOAD_CONCURRENCY):
        self.storage = storage
        self.key = key
        self.upload_id = upload_id
        self.concurrency = max(1, concurrency)
        #: Bytes written and not yet in a part: a list of chunks, joined once into the part (no re-slicing).
        self._chunks: deque[bytes | memoryview] = deque()
        self._buffered = 0
        self._next_number = 1
        self._in_flight: deque[tuple[int, Future[tuple[str, bytes]]]] = deque()
        self._stored: dict[int, tuple[str, bytes]] = {}  # part number -> (ETag, MD5)
        self._pool: ThreadPoolExecutor | None = None
        self._failure: BaseException | None = None
        self._sha256 = hashlib.sha256()
        self.size = 0
        self.finished = False

    def write(self, data: bytes) -> None:
        if self.finished:
            raise StorageError(f"{self.storage.where(self.key)}: write after the upload finished")
        self._check_parts()
        if not data:
            return
        data = bytes(data)  # no copy for bytes; a caller's bytearray may change after we return
        self._digest(data)
        self.size += len(data)
        self._chunks.append(data)
        self._buffered += len(data)
        while self._buffered >= self._next_part_size():
            self._submit(self._take(self._next_part_size()))

    def drain(self) -> None:
        """Waits until every part handed over so far is stored; raises the first failure."""
        while self._in_flight:
            self._settle_oldest()
        if self._failure is not None:
            raise self._failure

    def complete(self) -> UploadReceipt:
        """Sends the last part, waits for every part, and makes the object visible under its key."""
        if self.finished:
            raise StorageError(f"{self.storage.where(self.key)}: complete after the upload finished")
        self._check_parts()
        if self._buffered or self._next_number == 1:
            self._submit(self._take(self._buffered))  # the last part may be small (or empty for an empty stream)
        self.drain()
        parts = [{"PartNumber": n, "ETag": self._stored[n][0]} for n in sorted(self._stored)]
        with self.storage._errors("complete upload", self.key):
            self.storage.client.complete_multipart_upload(
                Bucket=self.storage.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},
            )
        self.finished = True
        self._stop_workers()
        etag = hashlib.md5(b"".join(self._stored[n][1] for n in sorted(self._stored))).hexdigest()
        return UploadReceipt(self.key, self.size, self._sha256.hexdigest(), f"{etag}-{len(parts)}", len(parts))

    def abort(self) -> None:
        """Drops every uploaded part. Safe to call twice; never raises over the error that caused it."""
        if self.finished:
            return
        self.finished = True
        self._stop_workers()  # a part still in flight could otherwise land after the abort and stay
        # If even the abort fails, the next run's stale-upload sweep (and the lifecycle rule) is the backstop.
        with contextlib.suppress(ClientError, BotoCoreError):
            self.storage.client.abort_multipart_upload(
                Bucket=self.storage.bucket, Key=self.key, UploadId=self.upload_id
            )

    # -- parts --------------------------------------------------------------------------------------------

    def _digest(self, data: bytes) -> None:
        self._sha256.update(data)

    def _next_part_size(self) -> int:
        return part_size_for(self._next_number, self.storage.part_size)

    def _take(self, size: int) -> bytes:
        """The next `size` buffered bytes as one part: each byte is copied once, into the part."""
        pieces: list[bytes | memoryview] = []
        need = size
        while need:
            chunk = self._chunks[0]
            if len(chunk) <= need:
                pieces.append(self._chunks.popleft())
                need -= len(chunk)
            else:
                view = memoryview(chunk)
                pieces.append(view[:need])
                self._chunks[0] = view[need:]
                need = 0
        self._buffered -= size
        return b"".join(pieces)

    def _submit(self, part: bytes) -> None:
        number = self._next_number
        if number > MAX_PARTS:
            raise StorageError(f"{self.storage.where(self.key)}: more than {MAX_PARTS} parts")
        while len(self._in_flight) >= self.concurrency:  # the bound on memory: wait for a free slot
            self._settle_oldest()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="s3-part")
        self._next_number += 1
        self._in_flight.append((number, self._pool.submit(self._upload_part, number, part)))

    def _upload_part(self, number: int, part: bytes) -> tuple[str, bytes]:
        """One part, in a worker thread: returns its ETag and MD5; raises StorageError naming key and part."""
        md5 = part_md5(part)
        with self.storage._errors(f"upload part {number}", self.key):
            reply = self.storage.client.upload_part(
                Bucket=self.storage.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=part,
                ContentMD5=base64.b64encode(md5).decode(),
            )
        return reply["ETag"], md5

    def _check_parts(self) -> None:
        """Raises the upload's failure if a part has failed; books the parts that finished meanwhile."""
        if self._failure is None and any(future.done() for _, future in self._in_flight):
            while self._in_flight and self._in_flight[0][1].done():
                self._settle_oldest()
            if any(future.done() and future.exception() is not None for _, future in self._in_flight):
                self._fail()
        if self._failure is not None:
            raise self._failure

    def _settle_oldest(self) -> None:
        number, future = self._in_flight[0]
        if future.exception() is not None:  # waits for it
            self._fail()
        self._in_flight.popleft()
        self._stored[number] = future.result()

    def _fail(self) -> None:
        """Waits for every part in flight, then raises the failure of the lowest-numbered failed part."""
        wait([future for _, future in self._in_flight])
        failed = [(n, f.exception()) for n, f in self._in_flight if f.exception() is not None]
        for number, future in self._in_flight:
            if future.exception() is None:
                self._stored[number] = future.result()
        self._in_flight.clear()
        if failed:
            self._failure = _first_of(failed)
        if self._failure is not None:
            raise self._failure

    def _stop_workers(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._chunks.clear()

    def __enter__(self) -> MultipartUpload:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: Any) -> None:
        if not self.finished:
            self.abort()


def _first_of(failed: list[tuple[int, BaseException | None]]) -> BaseException:
    """The failure of the lowest-numbered part, naming the others that failed beside it (a store that went
    down refuses every part in flight; which one gave up first is chance, so the message names them all)."""
    failed = sorted(((number, exc) for number, exc in failed if exc is not None), key=lambda item: item[0])
    first = failed[0][1]
    if len(failed) == 1 or not isinstance(first, StorageError):
        return first
    others = ", ".join(f"upload part {n}" for n, _ in failed[1:])
    combined = type(first)(f"{first}; {others} failed as well", transient=first.transient, code=first.code)
    combined.__cause__ = first
    return combined
