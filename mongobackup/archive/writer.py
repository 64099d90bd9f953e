"""`ArchiveWriter`: raw BSON documents in, mongodump archive bytes out, as a stream.

The writer never holds more than one output chunk (CHUNK_SIZE, about 1 MiB): small documents are joined
into chunks so each consumer call (zstd, gpg, an S3 part) gets a useful amount of work, and a document at
least as large as a chunk is passed through as the caller's own object, without a copy.

Namespaces may be interleaved as the format allows. Every namespace named in the prelude must be ended
with `end_namespace` (or `finish`), views and empty collections included: the stock mongorestore
refuses an archive that ends before all of its prelude namespaces were seen (mongodump 100.3.1 writes an
empty data segment and an EOF header even for a view).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from mongobackup.archive.crc import Crc64
from mongobackup.archive.format import (
    MAGIC,
    MAX_BSON_SIZE,
    MIN_BSON_SIZE,
    TERMINATOR,
    ArchiveError,
    ArchiveHeader,
    NamespaceHeader,
    NamespaceMetadata,
)

#: Output granularity for small documents.
CHUNK_SIZE = 1024 * 1024
#: A data segment is closed once it holds this many document bytes, so a reader (ours, or mongorestore
#: interleaving collections) sees bounded segments and other namespaces could be interleaved between them.
SEGMENT_SIZE = 16 * 1024 * 1024

_LENGTH = struct.Struct("<i")

#: A raw BSON document or output chunk: pymongo's `RawBSONDocument.raw` is either.
RawBytes = bytes | memoryview


@dataclass
class _Namespace:
    db: str
    collection: str
    crc: Crc64 = field(default_factory=Crc64)
    count: int = 0
    bytes: int = 0
    ended: bool = False
    #: A `documents` iterator stopped early (abandoned or failed): the CRC covers documents that may never
    #: have reached the output, so an EOF for it would be a lie that mongorestore rejects.
    broken: bool = False

    @property
    def ns(self) -> str:
        return f"{self.db}.{self.collection}"


class ArchiveWriter:
    """Produces one archive: call `prelude` once, then `documents`/`end_namespace` per namespace."""

    def __init__(self, header: ArchiveHeader, *, chunk_size: int = CHUNK_SIZE, segment_size: int = SEGMENT_SIZE):
        if chunk_size < 1 or segment_size < 1:
            raise ValueError("chunk_size and segment_size must be positive")
        self.header = header
        self.chunk_size = chunk_size
        self.segment_size = segment_size
        self._namespaces: dict[tuple[str, str], _Namespace] | None = None

    def prelude(self, namespaces: Sequence[NamespaceMetadata]) -> bytes:
        """MAGIC, the header, one metadata document per namespace, TERMINATOR.

        Only the namespaces listed here may carry data: mongorestore has no intent (and fails) for others.
        List the oplog namespace (OPLOG_DB, OPLOG_COLLECTION) here too when the archive will carry one.
        """
        if self._namespaces is not None:
            raise ArchiveError("the archive prelude was already written")
        known: dict[tuple[str, str], _Namespace] = {}
        for meta in namespaces:
            key = (meta.db, meta.collection)
            if not meta.collection:
                raise ArchiveError(f"namespace {meta.ns} has no collection name")
            if key in known:
                raise ArchiveError(f"namespace {meta.ns} is listed twice in the prelude")
            known[key] = _Namespace(meta.db, meta.collection)
        self._namespaces = known
        parts = [MAGIC, self.header.to_bson(), *(meta.to_bson() for meta in namespaces), TERMINATOR]
        return b"".join(parts)

    def documents(self, db: str, collection: str, docs: Iterable[RawBytes]) -> Iterator[RawBytes]:
        """Data segments holding `docs` (each one whole raw BSON document), as output chunks.

        Documents may be memoryviews: pymongo >= 4.18 hands out `RawBSONDocument.raw` of 4 KiB and more
        as a view into its batch buffer. Chunks are bytes, except that a document of `chunk_size` or more
        is yielded as the very object it came as (a memoryview stays a memoryview, uncopied).

        The namespace's CRC, count and byte total advance as the returned iterator is consumed. An empty
        `docs` yields nothing; `end_namespace` alone marks an empty collection. If the iterator is not
        consumed to its end (closed early, or `docs` raised), the namespace can no longer be ended.
        """
        state = self._open(db, collection)
        try:
            yield from self._segments(state, docs)
        except BaseException:
            state.broken = True
            raise

    def _segments(self, state: _Namespace, docs: Iterable[RawBytes]) -> Iterator[RawBytes]:
        header = NamespaceHeader(state.db, state.collection, eof=False, crc=0).to_bson()
        chunk: list[RawBytes] = []  # pieces of the next output chunk
        chunk_bytes = 0
        segment_bytes = 0  # document bytes in the open segment
        segment_open = False
        crc = state.crc
        for doc in docs:
            size = _check_document(doc, state.ns, state.count)
            if segment_open and segment_bytes + size > self.segment_size:
                chunk.append(TERMINATOR)
                chunk_bytes += len(TERMINATOR)
                segment_open = False
            if not segment_open:
                chunk.append(header)
                chunk_bytes += len(header)
                segment_open, segment_bytes = True, 0
            crc.update(doc)
            state.count += 1
            state.bytes += size
            segment_bytes += size
            if size >= self.chunk_size:
                # Zero copy: flush what is pending, then hand the caller's own document on.
                if chunk:
                    yield b"".join(chunk)
                    chunk, chunk_bytes = [], 0
                yield doc
                continue
            if chunk_bytes + size > self.chunk_size:
                yield b"".join(chunk)
                chunk, chunk_bytes = [], 0
            chunk.append(doc)
            chunk_bytes += size
        if segment_open:
            chunk.append(TERMINATOR)
        if chunk:
            yield b"".join(chunk)

    def end_namespace(self, db: str, collection: str) -> bytes:
        """The EOF header carrying the namespace's signed CRC, then TERMINATOR. Once per namespace."""
        state = self._open(db, collection)
        state.ended = True
        return NamespaceHeader(db, collection, eof=True, crc=state.crc.signed).to_bson() + TERMINATOR

    def finish(self) -> bytes:
        """EOF headers for every prelude namespace not ended yet (views, say), in prelude order.

        Call it last: after it the archive is complete and mongorestore will accept it.
        """
        return b"".join(
            self.end_namespace(ns.db, ns.collection) for ns in self._require_prelude().values() if not ns.ended
        )

    def crc(self, db: str, collection: str) -> int:
        """The signed CRC of an ended namespace, as its EOF header stores it."""
        state = self._state(db, collection)
        if not state.ended:
            raise ArchiveError(f"namespace {state.ns} is not ended yet; its CRC is not final")
        return state.crc.signed

    @property
    def unfinished(self) -> list[str]:
        """Prelude namespaces without an EOF yet: the archive is incomplete while this is not empty."""
        return [ns.ns for ns in self._require_prelude().values() if not ns.ended]

    def _require_prelude(self) -> dict[tuple[str, str], _Namespace]:
        if self._namespaces is None:
            raise ArchiveError("write the archive prelude first")
        return self._namespaces

    def _state(self, db: str, collection: str) -> _Namespace:
        state = self._require_prelude().get((db, collection))
        if state is None:
            raise ArchiveError(f"namespace {db}.{collection} is not in the archive prelude")
        return state

    def _open(self, db: str, collection: str) -> _Namespace:
        state = self._state(db, collection)
        if state.ended:
            raise ArchiveError(f"namespace {state.ns} was already ended")
        if state.broken:
            raise ArchiveError(f"namespace {state.ns}: an earlier documents() iterator stopped before its end")
        return state


def _check_document(doc: RawBytes, ns: str, index: int) -> int:
    """The size of `doc`, after the checks mongorestore's parser would make (cheap: no decoding)."""
    size = len(doc)
    declared = _LENGTH.unpack_from(doc)[0] if size >= 4 else -1
    if declared != size or size < MIN_BSON_SIZE or doc[-1] != 0:
        raise ArchiveError(
            f"namespace {ns}: document #{index} is not one whole BSON document ({size} bytes, length prefix {declared})"
        )
    if size > MAX_BSON_SIZE:
        raise ArchiveError(
            f"namespace {ns}: document #{index} has {size} bytes, more than mongorestore accepts ({MAX_BSON_SIZE})"
        )
    return size
