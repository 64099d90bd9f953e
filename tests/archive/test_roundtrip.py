"""ArchiveWriter -> ArchiveReader: in memory, over a real OS pipe, and the streaming bounds of both."""

from __future__ import annotations

import io
import os
import random
import threading
from collections.abc import Iterator

import bson
import pytest

from mongobackup.archive import (
    ARCHIVE_VERSION,
    MAGIC,
    OPLOG_COLLECTION,
    OPLOG_DB,
    TERMINATOR,
    ArchiveHeader,
    ArchiveReader,
    ArchiveWriter,
    DocumentsEvent,
    NamespaceEndEvent,
    NamespaceMetadata,
    read_archive,
)

HEADER = ArchiveHeader(1, ARCHIVE_VERSION, "8.2.11", "test")
MiB = 1024 * 1024


def doc(i: int, size: int = 0) -> bytes:
    return bson.encode({"_id": i, "pad": "x" * size})


def namespaces(*names: str, view: str | None = None, oplog: bool = False) -> list[NamespaceMetadata]:
    out = [NamespaceMetadata("db1", n, "{}", 0, "collection") for n in names]
    if view:
        out.append(NamespaceMetadata("db1", view, "{}", 0, "view"))
    if oplog:
        out.append(NamespaceMetadata(OPLOG_DB, OPLOG_COLLECTION, "", 0, ""))
    return out


def sample_archive(writer: ArchiveWriter) -> tuple[list[bytes], dict[str, list[bytes]]]:
    """Chunks of an archive with interleaved, empty, big, view and oplog namespaces, and what it holds."""
    rng = random.Random(3)
    data = {
        "db1.small": [doc(i, rng.randint(0, 300)) for i in range(3000)],
        "db1.big": [doc(i, rng.choice([10, 3 * MiB, 200_000])) for i in range(12)],
        "db1.empty": [],
        "db1.view": [],
        ".oplog": [bson.encode({"ts": i, "op": "i", "ns": "db1.small"}) for i in range(5)],
    }
    chunks = [writer.prelude(namespaces("small", "big", "empty", view="view", oplog=True))]
    # interleave: half of small, all of big, the rest of small
    chunks += writer.documents("db1", "small", data["db1.small"][:1500])
    chunks += writer.documents("db1", "big", data["db1.big"])
    chunks.append(writer.end_namespace("db1", "big"))
    chunks += writer.documents("db1", "small", iter(data["db1.small"][1500:]))
    chunks.append(writer.end_namespace("db1", "small"))
    chunks += writer.documents("db1", "empty", [])
    chunks += writer.documents(OPLOG_DB, OPLOG_COLLECTION, data[".oplog"])
    chunks.append(writer.finish())  # ends empty, view and oplog
    return chunks, data


def check_events(reader: ArchiveReader, data: dict[str, list[bytes]], writer: ArchiveWriter) -> None:
    got: dict[str, list[bytes]] = {ns: [] for ns in data}
    ended: dict[str, NamespaceEndEvent] = {}
    for event in reader:
        if isinstance(event, DocumentsEvent):
            assert event.ns not in ended
            assert sum(map(len, event.documents)) <= max(reader.batch_bytes, *map(len, event.documents))
            got[event.ns].extend(event.documents)
        else:
            ended[event.ns] = event
    assert got == data
    assert set(ended) == set(data)
    for ns, event in ended.items():
        assert (event.count, event.bytes) == (len(data[ns]), sum(map(len, data[ns])))
        assert event.crc == writer.crc(event.db, event.collection)
    assert writer.unfinished == []


def test_round_trip_in_memory() -> None:
    writer = ArchiveWriter(HEADER)
    chunks, data = sample_archive(writer)
    reader = ArchiveReader(io.BytesIO(b"".join(chunks)))
    assert reader.header == HEADER
    assert [m.ns for m in reader.namespaces] == ["db1.small", "db1.big", "db1.empty", "db1.view", ".oplog"]
    check_events(reader, data, writer)


def test_round_trip_over_os_pipe_with_writer_thread() -> None:
    writer = ArchiveWriter(HEADER)
    chunks, data = sample_archive(writer)
    read_fd, write_fd = os.pipe()
    failures: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_fd, "wb", buffering=0) as out:
                for chunk in chunks:
                    out.write(chunk)  # blocks while the reader is behind: a real stream
        except BaseException as exc:  # reported by the test thread below
            failures.append(exc)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    with os.fdopen(read_fd, "rb", buffering=0) as raw:  # unbuffered: short reads happen
        check_events(ArchiveReader(raw), data, writer)
    thread.join(timeout=30)
    assert not thread.is_alive() and not failures


def test_writer_chunks_are_bounded_and_big_documents_pass_through() -> None:
    big = doc(1, 3 * MiB)
    small = [doc(i, 100) for i in range(20_000)]
    writer = ArchiveWriter(HEADER)
    writer.prelude(namespaces("c"))
    chunks = list(writer.documents("db1", "c", [*small[:10_000], big, *small[10_000:]]))
    assert any(chunk is big for chunk in chunks)  # the caller's object itself: no copy
    header_overhead = 200
    assert all(len(chunk) <= writer.chunk_size + header_overhead for chunk in chunks if chunk is not big)
    assert len(chunks) > 3


def test_writer_takes_memoryviews_as_pymongo_gives_them() -> None:
    buffer = b"".join(doc(i, size) for i, size in enumerate([10, 5000, 2 * MiB, 7]))
    views, pos = [], 0
    while pos < len(buffer):
        size = int.from_bytes(buffer[pos : pos + 4], "little")
        views.append(memoryview(buffer)[pos : pos + size])
        pos += size
    writer = ArchiveWriter(HEADER)
    prelude = writer.prelude(namespaces("c"))
    chunks = list(writer.documents("db1", "c", views))
    assert any(chunk is views[2] for chunk in chunks)
    archive = prelude + b"".join(chunks) + writer.end_namespace("db1", "c")
    _, documents = read_archive(io.BytesIO(archive))
    assert documents["db1.c"] == [bytes(v) for v in views]


def test_writer_starts_new_segments() -> None:
    writer = ArchiveWriter(HEADER, segment_size=50_000)
    prelude = writer.prelude(namespaces("c"))
    docs = [doc(i, 1000) for i in range(200)]
    body = b"".join(writer.documents("db1", "c", docs)) + writer.end_namespace("db1", "c")
    assert body.count(TERMINATOR) > 4  # one per segment + the EOF block
    reader = ArchiveReader(io.BytesIO(prelude + body), batch_bytes=10 * MiB)
    batches = [e.documents for e in reader if isinstance(e, DocumentsEvent)]
    assert all(sum(map(len, b)) <= 50_000 for b in batches)  # one segment at most per event
    assert [d for b in batches for d in b] == docs


class Recording(io.RawIOBase):
    """A stream that records how far it was read when each event came out."""

    def __init__(self, data: bytes):
        self.inner = io.BytesIO(data)
        self.largest_read = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        assert n > 0, "the reader must never ask for the whole stream"
        self.largest_read = max(self.largest_read, n)
        return self.inner.read(n)


def test_reader_streams_in_bounded_memory() -> None:
    writer = ArchiveWriter(HEADER)
    prelude = writer.prelude(namespaces("c"))
    body = b"".join(writer.documents("db1", "c", (doc(i, 1000) for i in range(30_000))))
    stream = Recording(prelude + body + writer.end_namespace("db1", "c"))
    events = iter(ArchiveReader(stream))
    first = next(events)
    assert isinstance(first, DocumentsEvent)
    assert stream.inner.tell() < 5 * MiB < len(stream.inner.getvalue())  # events before the end
    for _ in events:
        pass
    assert stream.largest_read <= 64 * 1024


def generator_chunks() -> Iterator[bytes]:
    writer = ArchiveWriter(HEADER)
    yield writer.prelude(namespaces("a"))
    yield from writer.documents("db1", "a", (doc(i) for i in range(3)))
    yield writer.end_namespace("db1", "a")


def test_read_archive_helper() -> None:
    reader, documents = read_archive(io.BytesIO(b"".join(generator_chunks())))
    assert documents == {"db1.a": [doc(0), doc(1), doc(2)]}
    assert reader.header == HEADER


def test_reader_iterates_once() -> None:
    reader = ArchiveReader(io.BytesIO(b"".join(generator_chunks())))
    list(reader)
    with pytest.raises(RuntimeError, match="only once"):
        iter(reader)


def test_magic_is_first() -> None:
    assert b"".join(generator_chunks()).startswith(MAGIC)
