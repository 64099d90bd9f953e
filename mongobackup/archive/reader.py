"""`ArchiveReader`: parses a mongodump archive from any readable binary stream, in bounded memory.

It reads a 4-byte length, then exactly that document, never the whole stream; documents are handed out
in batches of at most `batch_bytes` (or one segment, whichever ends first). Each namespace's CRC is
checked at its EOF header and only then is a `NamespaceEndEvent` emitted, so a consumer that commits on
that event never commits damaged data.

The checks follow mongorestore (mongo-tools `parser.go`, `demultiplexer.go`) and are a little stricter
where a backup tool should be: every segment must name a namespace from the prelude, a namespace cannot
get data after its EOF, and the stream must end exactly at a block boundary with every prelude namespace
ended. Anything else raises `ArchiveCorruption` naming the namespace and the byte offset.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from mongobackup.archive.crc import Crc64
from mongobackup.archive.format import (
    MAGIC,
    MAX_INTERNAL_BSON_SIZE,
    MIN_BSON_SIZE,
    TERMINATOR,
    ArchiveCorruption,
    ArchiveHeader,
    NamespaceHeader,
    NamespaceMetadata,
)

#: Upper bound of one DocumentsEvent's documents (a single larger document still comes alone).
BATCH_BYTES = 4 * 1024 * 1024
_READ_SIZE = 64 * 1024  # small reads from the stream are served from a buffer of this size
_TERMINATOR_VALUE = struct.unpack("<I", TERMINATOR)[0]
_UINT32 = struct.Struct("<I")


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes | None: ...


@dataclass(frozen=True)
class DocumentsEvent:
    """Documents of one namespace, in stream order; its CRC is not checked until the NamespaceEndEvent."""

    db: str
    collection: str
    documents: list[bytes]

    @property
    def ns(self) -> str:
        return f"{self.db}.{self.collection}"


@dataclass(frozen=True)
class NamespaceEndEvent:
    """A namespace ended and its CRC matched; `count` documents, `bytes` document bytes in total."""

    db: str
    collection: str
    crc: int  # signed, as stored
    count: int
    bytes: int

    @property
    def ns(self) -> str:
        return f"{self.db}.{self.collection}"


ArchiveEvent = DocumentsEvent | NamespaceEndEvent


@dataclass
class _Progress:
    crc: Crc64 = field(default_factory=Crc64)
    count: int = 0
    bytes: int = 0
    ended: bool = False


class _Source:
    """Exact-length reads over a stream that may return short reads (pipes, sockets, gzip)."""

    def __init__(self, stream: Readable | BinaryIO):
        self._stream = stream
        self._buf = b""
        self._pos = 0
        self.offset = 0  # bytes consumed by the parser so far

    def read(self, n: int) -> bytes:
        """Up to `n` bytes; fewer only at the end of the stream."""
        available = len(self._buf) - self._pos
        if available >= n:
            out = self._buf[self._pos : self._pos + n]
            self._pos += n
        else:
            parts = [self._buf[self._pos :]] if available else []
            missing = n - available
            self._buf, self._pos = b"", 0
            while missing > 0:
                data = self._stream.read(max(missing, _READ_SIZE)) or b""
                if not data:
                    break
                if len(data) > missing:  # keep the excess for the next reads
                    self._buf, self._pos = data, missing
                    data = data[:missing]
                parts.append(data)
                missing -= len(data)
            out = b"".join(parts)
        self.offset += len(out)
        return out


class ArchiveReader:
    """Reads the prelude on construction (`header`, `namespaces`); iterate it for the data events."""

    def __init__(
        self,
        stream: Readable | BinaryIO,
        *,
        batch_bytes: int = BATCH_BYTES,
        max_document_size: int = MAX_INTERNAL_BSON_SIZE,
    ):
        self._src = _Source(stream)
        self.batch_bytes = batch_bytes
        self.max_document_size = max_document_size
        self._iterated = False
        magic = self._src.read(len(MAGIC))
        if magic != MAGIC:
            detail = "the stream is empty" if not magic else f"starts with {magic.hex()}"
            raise ArchiveCorruption(f"not a mongodump archive: {detail}, expected magic {MAGIC.hex()}", offset=0)
        header = self._frame(None, "archive header")
        if header is None:
            raise ArchiveCorruption("the archive header is missing (terminator found)", offset=4)
        self.header = ArchiveHeader.from_bson(header)
        self.namespaces: list[NamespaceMetadata] = []
        while (raw := self._frame(None, "collection metadata")) is not None:
            self.namespaces.append(NamespaceMetadata.from_bson(raw))
        self._progress: dict[str, _Progress] = {}
        for meta in self.namespaces:
            if meta.ns in self._progress:
                raise ArchiveCorruption("listed twice in the archive prelude", namespace=meta.ns)
            self._progress[meta.ns] = _Progress()

    def __iter__(self) -> Iterator[ArchiveEvent]:
        if self._iterated:
            raise RuntimeError("an ArchiveReader can be iterated only once: it consumes its stream")
        self._iterated = True
        return self._events()

    def _events(self) -> Iterator[ArchiveEvent]:
        while True:
            start = self._src.offset
            length = self._src.read(4)
            if not length:
                break  # a clean end between blocks; whether it is complete is checked below
            raw = self._frame(None, "namespace header", length)
            if raw is None:
                raise ArchiveCorruption("a terminator where a namespace header belongs", offset=start)
            header = NamespaceHeader.from_bson(raw)
            progress = self._progress.get(header.ns)
            if progress is None:
                raise ArchiveCorruption("not listed in the archive prelude", namespace=header.ns, offset=start)
            if progress.ended:
                raise ArchiveCorruption("more data after its EOF", namespace=header.ns, offset=start)
            if header.eof:
                yield self._end(header, progress, start)
            else:
                yield from self._segment(header, progress)
        unfinished = [ns for ns, p in self._progress.items() if not p.ended]
        if unfinished:
            raise ArchiveCorruption(
                f"stream ended with namespaces never finished: {', '.join(unfinished)}", offset=self._src.offset
            )

    def _end(self, header: NamespaceHeader, progress: _Progress, start: int) -> NamespaceEndEvent:
        if self._frame(header.ns, "end of namespace") is not None:
            raise ArchiveCorruption("a document after its EOF header", namespace=header.ns, offset=start)
        if header.crc != progress.crc.signed:
            raise ArchiveCorruption(
                f"CRC mismatch (stored {header.crc}, computed {progress.crc.signed})", namespace=header.ns, offset=start
            )
        progress.ended = True
        return NamespaceEndEvent(header.db, header.collection, header.crc, progress.count, progress.bytes)

    def _segment(self, header: NamespaceHeader, progress: _Progress) -> Iterator[DocumentsEvent]:
        batch: list[bytes] = []
        batch_bytes = 0
        while (doc := self._frame(header.ns, "document")) is not None:
            progress.crc.update(doc)
            progress.count += 1
            progress.bytes += len(doc)
            if batch and batch_bytes + len(doc) > self.batch_bytes:
                yield DocumentsEvent(header.db, header.collection, batch)
                batch, batch_bytes = [], 0
            batch.append(doc)
            batch_bytes += len(doc)
        if batch:
            yield DocumentsEvent(header.db, header.collection, batch)

    def _frame(self, ns: str | None, what: str, length: bytes | None = None) -> bytes | None:
        """The next BSON document, or None for a terminator. Truncation and bad lengths are corruption."""
        start = self._src.offset - (len(length) if length is not None else 0)
        if length is None:
            length = self._src.read(4)
        if len(length) < 4:
            got = f"{len(length)} of 4 length bytes" if length else "nothing"
            raise ArchiveCorruption(
                f"truncated: stream ended where a {what} or terminator belongs ({got})", namespace=ns, offset=start
            )
        (size,) = _UINT32.unpack(length)
        if size == _TERMINATOR_VALUE:
            return None
        if size < MIN_BSON_SIZE or size > self.max_document_size:
            raise ArchiveCorruption(
                f"{size} is neither a valid BSON length for a {what} nor a terminator", namespace=ns, offset=start
            )
        body = self._src.read(size - 4)
        if len(body) < size - 4:
            raise ArchiveCorruption(
                f"truncated {what}: stream ended after {len(body) + 4} of its {size} bytes", namespace=ns, offset=start
            )
        if body[-1] != 0:
            raise ArchiveCorruption(f"{what} of {size} bytes does not end with a NUL byte", namespace=ns, offset=start)
        return length + body


def read_archive(stream: Readable | BinaryIO) -> tuple[ArchiveReader, dict[str, list[bytes]]]:
    """Every document of a (small) archive by namespace, CRCs checked. For tests and tools, not backups."""
    reader = ArchiveReader(stream)
    documents: dict[str, list[bytes]] = {meta.ns: [] for meta in reader.namespaces}
    for event in reader:
        if isinstance(event, DocumentsEvent):
            documents[event.ns].extend(event.documents)
    return reader, documents
