"""The stream adapters: errors travel downstream, abort travels upstream, buffers stay bounded."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
import zstandard

from mongobackup.streams import (
    CountingReader,
    IteratorReader,
    StageClock,
    zstd_compressing_reader,
    zstd_decompressing_reader,
)


def test_iterator_reader_serves_any_read_size():
    chunks = [os.urandom(n) for n in (0, 1, 70_000, 3, 1 << 20)]
    reader = IteratorReader(chunks)
    out = bytearray()
    for size in (1, 7, 65536, 10):
        out += reader.read(size)
    while piece := reader.read(4096):
        out += piece
    assert bytes(out) == b"".join(chunks)
    assert reader.exhausted and reader.bytes_read == len(out)


def test_producer_error_surfaces_from_read():
    def chunks():
        yield b"abc"
        raise ConnectionError("server went away")

    reader = IteratorReader(chunks())
    assert reader.read(3) == b"abc"
    with pytest.raises(ConnectionError, match="server went away"):
        reader.read(3)


def test_abort_stops_the_producer():
    pulled = []

    def chunks():
        for n in range(1000):
            pulled.append(n)
            yield b"x" * 10

    reader = IteratorReader(chunks())
    reader.read(10)
    reader.abort(OSError("upload failed"))
    with pytest.raises(OSError, match="upload failed"):
        reader.read(10)
    assert len(pulled) == 1


def test_zstd_round_trip_through_readers_and_stage_clock():
    data = os.urandom(1 << 18) * 8
    clock = StageClock()
    source = IteratorReader([data[i : i + 100_000] for i in range(0, len(data), 100_000)], clock=clock, stage="dump")
    compressed = CountingReader(zstd_compressing_reader(source, level=3, threads=2), clock=clock, stage="compress")
    frame = compressed.read(1 << 30) + compressed.read(1 << 30)
    assert compressed.bytes_read == len(frame) < len(data)
    assert zstd_decompressing_reader(io.BytesIO(frame)).read(len(data) + 1) == data
    assert set(clock.seconds) == {"dump", "compress"}
    assert all(seconds >= 0 for seconds in clock.seconds.values())


def test_damaged_zstd_frame_is_an_error():
    frame = zstandard.ZstdCompressor(write_checksum=True).compress(os.urandom(100_000))
    damaged = frame[:50] + bytes([frame[50] ^ 0xFF]) + frame[51:]
    with pytest.raises(zstandard.ZstdError):
        zstd_decompressing_reader(io.BytesIO(damaged)).read(1 << 20)


def test_counting_reader_hashes_what_passes_and_keeps_the_read_error():
    data = os.urandom(300_000)
    reader = CountingReader(io.BytesIO(data), digest=hashlib.sha256())
    while reader.read(65536):
        pass
    assert reader.bytes_read == len(data) and reader.digest.hexdigest() == hashlib.sha256(data).hexdigest()

    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer):  # type: ignore[override]
            raise ConnectionError("connection reset by the store")

    broken = CountingReader(Broken())  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        broken.read(10)
    assert isinstance(broken.error, ConnectionError)  # kept for a consumer thread that swallows it
