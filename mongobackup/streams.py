"""Adapters that join the stages of a streamed transfer with fixed-size buffers.

Producers here are iterators of byte chunks (the archive writer), consumers are file-like readers (zstd,
python-gnupg's copy thread). Nothing in this module holds more than one chunk of a stage at a time, so memory
stays flat however large the database is.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import zstandard

from mongobackup.units import MIB

#: Read size between stages. Large enough that per-call Python overhead is noise, small enough to be flat.
CHUNK_SIZE = MIB
#: Input per zstd worker job when compressing with threads.
ZSTD_JOB_SIZE = 2 << 20


class StageClock:
    """Accumulates the busy time of each named stage of a pipeline whose stages overlap in time.

    Stages call each other (zstd pulls from the dump), so time spent in a nested stage is subtracted from
    the stage that called it: the totals say where the CPU went, not how long each stage was open.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._local = threading.local()
        self._lock = threading.Lock()

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        stack: list[list[float]] = self._local.__dict__.setdefault("stack", [])
        frame = [time.perf_counter(), 0.0]  # start, time spent in nested stages
        stack.append(frame)
        try:
            yield
        finally:
            stack.pop()
            elapsed = time.perf_counter() - frame[0]
            if stack:
                stack[-1][1] += elapsed
            with self._lock:
                self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed - frame[1]

    def rounded(self) -> dict[str, float]:
        return {stage: round(seconds, 3) for stage, seconds in self.seconds.items()}


class IteratorReader(io.RawIOBase):
    """A readable binary stream over an iterator of byte chunks.

    Exceptions of the iterator surface from `read`, so a consumer thread sees the producer's failure.
    `abort(exc)` lets a downstream stage stop the producer early (e.g. the upload failed: stop dumping).
    """

    def __init__(self, chunks: Iterable[bytes], *, clock: StageClock | None = None, stage: str = "source"):
        super().__init__()
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")
        self._clock = clock
        self._stage = stage
        self._aborted: BaseException | None = None
        self.bytes_read = 0
        self.exhausted = False

    def readable(self) -> bool:
        return True

    def abort(self, exc: BaseException) -> None:
        self._aborted = exc

    def _next_chunk(self) -> bool:
        if self._clock is None:
            chunk = next(self._chunks, None)
        else:
            with self._clock.measure(self._stage):
                chunk = next(self._chunks, None)
        if chunk is None:
            self.exhausted = True
            return False
        self._pending = memoryview(chunk)
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._aborted is not None:
            raise self._aborted
        while not self._pending:
            if self.exhausted or not self._next_chunk():
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.bytes_read += n
        return n


class CountingReader(io.RawIOBase):
    """Counts the bytes that pass through a readable stream, optionally hashes them, and books the time under
    a stage name.

    `digest` (a hashlib object) sees every byte read. A read failure of the inner stream is kept in `error`
    before it is raised: a consumer thread that swallows it (python-gnupg's copy thread) would otherwise only
    show a short stream downstream, and the caller could not say that the source broke.
    """

    def __init__(self, inner: BinaryIO, *, clock: StageClock | None = None, stage: str = "read", digest: Any = None):
        super().__init__()
        self._inner = inner
        self._clock = clock
        self._stage = stage
        self.digest = digest
        self.bytes_read = 0
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            if self._clock is None:
                data = self._inner.read(len(buffer))
            else:
                with self._clock.measure(self._stage):
                    data = self._inner.read(len(buffer))
        except Exception as exc:
            self.error = exc
            raise
        n = len(data)
        buffer[:n] = data
        if self.digest is not None:
            self.digest.update(data)
        self.bytes_read += n
        return n


def zstd_compressing_reader(source: BinaryIO, *, level: int, threads: int) -> BinaryIO:
    """A readable that yields the zstd frame of `source` as it is read (threads=0: compress inline)."""
    # zstd's workers size their jobs from the level (tens of MiB); fixed small jobs keep memory flat.
    job_size = ZSTD_JOB_SIZE if threads > 0 else 0
    params = zstandard.ZstdCompressionParameters.from_level(
        level, threads=threads, job_size=job_size, write_checksum=True
    )
    return zstandard.ZstdCompressor(compression_params=params).stream_reader(
        source, read_size=CHUNK_SIZE, closefd=False
    )


def zstd_decompressing_reader(source: BinaryIO) -> BinaryIO:
    """A readable of the decompressed bytes of a zstd stream; fails on a truncated or damaged frame."""
    return zstandard.ZstdDecompressor().stream_reader(
        source, read_size=CHUNK_SIZE, closefd=False, read_across_frames=True
    )
