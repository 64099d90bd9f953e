"""A damaged archive must raise ArchiveCorruption naming the namespace, never hang, never pass as whole.

Mirrors mongo-tools' own tests: every 10% prefix of an archive fails and only the full one succeeds.
"""

from __future__ import annotations

import io
import os
import struct
import threading

import bson
import pytest

from mongobackup.archive import (
    ARCHIVE_VERSION,
    MAX_BSON_SIZE,
    TERMINATOR,
    ArchiveCorruption,
    ArchiveError,
    ArchiveHeader,
    ArchiveReader,
    ArchiveWriter,
    NamespaceEndEvent,
    NamespaceHeader,
    NamespaceMetadata,
)

HEADER = ArchiveHeader(1, ARCHIVE_VERSION, "8.2.11", "test")
NAMESPACES = [
    NamespaceMetadata("shop", "orders", "{}", 0, "collection"),
    NamespaceMetadata("shop", "empty", "{}", 0, "collection"),
    NamespaceMetadata("shop", "v", "{}", 0, "view"),
]
MARKER = "needle-in-the-haystack"


def build(order_count: int = 2000) -> bytes:
    writer = ArchiveWriter(HEADER, segment_size=40_000)
    out = [writer.prelude(NAMESPACES)]
    docs = [bson.encode({"_id": i, "s": MARKER if i == order_count // 2 else f"item {i}"}) for i in range(order_count)]
    out += writer.documents("shop", "orders", docs)
    out.append(writer.end_namespace("shop", "orders"))
    out.append(writer.finish())
    return b"".join(out)


def consume(data: bytes) -> int:
    """Reads the whole archive; the number of events."""
    return sum(1 for _ in ArchiveReader(io.BytesIO(data)))


def test_every_tenth_prefix_fails_and_only_the_whole_succeeds() -> None:
    data = build()
    for tenth in range(10):
        cut = len(data) * tenth // 10
        with pytest.raises(ArchiveCorruption, match="corruption found in archive"):
            consume(data[:cut])
    assert consume(data) > 0


def test_every_byte_prefix_of_a_small_archive_fails() -> None:
    data = build(order_count=3)
    for cut in range(len(data)):
        with pytest.raises(ArchiveCorruption):
            consume(data[:cut])
    consume(data)


def test_unfinished_namespaces_are_named() -> None:
    data = build()
    eof_orders = NamespaceHeader("shop", "orders", True, 0).to_bson()[:30]  # db + collection prefix
    cut = data.index(eof_orders[:25], len(data) // 2)
    with pytest.raises(ArchiveCorruption, match=r"never finished: shop\.orders, shop\.empty, shop\.v"):
        consume(data[:cut])


def test_truncated_pipe_errors_instead_of_hanging() -> None:
    data = build()
    read_fd, write_fd = os.pipe()

    def produce() -> None:
        with os.fdopen(write_fd, "wb") as out:
            out.write(data[: len(data) * 2 // 3])  # then the writer dies: the pipe closes

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    with os.fdopen(read_fd, "rb") as stream, pytest.raises(ArchiveCorruption, match="namespace shop.orders"):
        list(ArchiveReader(stream))
    thread.join(timeout=10)


def test_flipped_byte_in_a_document_is_a_crc_error_naming_the_namespace() -> None:
    data = bytearray(build())
    at = data.index(MARKER.encode())
    data[at + 3] ^= 0x01  # still well-formed BSON: only the CRC can tell
    with pytest.raises(
        ArchiveCorruption, match=r"namespace shop\.orders: CRC mismatch \(stored -?\d+, computed -?\d+\)"
    ):
        consume(bytes(data))


def test_no_documents_are_confirmed_before_the_crc_check() -> None:
    data = bytearray(build())
    data[data.index(MARKER.encode())] ^= 0x01
    ends = []
    with pytest.raises(ArchiveCorruption):
        for event in ArchiveReader(io.BytesIO(bytes(data))):
            if isinstance(event, NamespaceEndEvent):
                ends.append(event.ns)
    assert "shop.orders" not in ends


def segment(ns: tuple[str, str], *docs: bytes, eof: bool = False, crc: int = 0) -> bytes:
    return NamespaceHeader(*ns, eof, crc).to_bson() + b"".join(docs) + TERMINATOR


def prelude(*names: str) -> bytes:
    writer = ArchiveWriter(HEADER)
    return writer.prelude([NamespaceMetadata("shop", n, "", 0, "collection") for n in names])


ONE = bson.encode({"_id": 1})


@pytest.mark.parametrize(
    "body, message",
    [
        (segment(("shop", "other"), ONE), r"namespace shop\.other: not listed in the archive prelude"),
        (segment(("", "oplog"), ONE), r"namespace \.oplog: not listed in the archive prelude"),
        (segment(("shop", "a"), eof=True) + segment(("shop", "a"), ONE), r"shop\.a: more data after its EOF"),
        (NamespaceHeader("shop", "a", True, 0).to_bson() + ONE + TERMINATOR, r"shop\.a: a document after"),
        (TERMINATOR, "a terminator where a namespace header belongs"),
        (
            NamespaceHeader("shop", "a", False, 0).to_bson() + struct.pack("<i", 4) + TERMINATOR,
            r"shop\.a: 4 is neither a valid BSON length",
        ),
        (
            NamespaceHeader("shop", "a", False, 0).to_bson() + struct.pack("<i", MAX_BSON_SIZE + 17 * 1024),
            r"shop\.a: \d+ is neither a valid BSON length",
        ),
        (
            NamespaceHeader("shop", "a", False, 0).to_bson() + ONE[:-1] + b"\x01" + TERMINATOR,
            r"shop\.a: document of \d+ bytes does not end with a NUL",
        ),
        (NamespaceHeader("shop", "a", False, 0).to_bson() + ONE[:7], r"shop\.a: truncated document"),
        (
            segment(("shop", "a"), ONE) + segment(("shop", "a"), eof=True, crc=12345),
            r"shop\.a: CRC mismatch \(stored 12345, computed",
        ),
    ],
)
def test_framing_errors(body: bytes, message: str) -> None:
    with pytest.raises(ArchiveCorruption, match=message):
        consume(prelude("a") + body)


def test_bad_magic_and_empty_stream() -> None:
    with pytest.raises(ArchiveCorruption, match="not a mongodump archive: starts with 00000000"):
        ArchiveReader(io.BytesIO(b"\0" * 64))
    with pytest.raises(ArchiveCorruption, match="the stream is empty"):
        ArchiveReader(io.BytesIO(b""))
    plain_bson = ONE * 3  # a .bson file is not an archive
    with pytest.raises(ArchiveCorruption, match="not a mongodump archive"):
        ArchiveReader(io.BytesIO(plain_bson))


def writer_with(*names: str) -> ArchiveWriter:
    writer = ArchiveWriter(HEADER)
    writer.prelude([NamespaceMetadata("shop", n, "", 0, "collection") for n in names])
    return writer


def test_writer_refuses_what_mongorestore_would_refuse() -> None:
    with pytest.raises(ArchiveError, match="prelude first"):
        ArchiveWriter(HEADER).end_namespace("shop", "a")
    with pytest.raises(ArchiveError, match="already written"):
        writer_with("a").prelude([])
    with pytest.raises(ArchiveError, match="listed twice"):
        ArchiveWriter(HEADER).prelude([NamespaceMetadata("s", "a", "", 0, "")] * 2)
    with pytest.raises(ArchiveError, match=r"shop\.b is not in the archive prelude"):
        list(writer_with("a").documents("shop", "b", [ONE]))
    with pytest.raises(ArchiveError, match=r"shop\.a: document #1 is not one whole BSON document"):
        list(writer_with("a").documents("shop", "a", [ONE, ONE + b"junk"]))
    with pytest.raises(ArchiveError, match="more than mongorestore accepts"):
        list(writer_with("a").documents("shop", "a", [bson.encode({"s": "x" * MAX_BSON_SIZE})]))
    writer = writer_with("a")
    with pytest.raises(ArchiveError, match="not ended yet"):
        writer.crc("shop", "a")
    writer.end_namespace("shop", "a")
    with pytest.raises(ArchiveError, match="already ended"):
        writer.end_namespace("shop", "a")


def test_writer_refuses_to_end_a_namespace_whose_documents_stopped_early() -> None:
    writer = writer_with("a", "b")
    chunks = writer.documents("shop", "a", (ONE for _ in range(1_000_000)))
    next(chunks)
    chunks.close()  # the consumer went away: the CRC covers documents that were never written

    def failing_source():
        yield ONE
        raise OSError("cursor died")

    with pytest.raises(OSError, match="cursor died"):
        list(writer.documents("shop", "b", failing_source()))
    for name in ("a", "b"):
        with pytest.raises(ArchiveError, match=rf"shop\.{name}: an earlier documents\(\) iterator stopped"):
            writer.end_namespace("shop", name)
