"""Wire constants and types of the mongodump archive format (mongo-tools `common/archive/spec.md`).

An archive is: MAGIC, a header document, one metadata document per namespace, TERMINATOR, then
segments interleaved across namespaces. A data segment is a namespace header (EOF false, CRC 0), zero or
more documents of that namespace and TERMINATOR; the end of a namespace is a header with EOF true and the
CRC of all its documents, then TERMINATOR. docs/FORMAT.md ("The mongodump archive") lists the facts
we rely on.

Field names, order and BSON types here are the ones mongo-tools' Go structs marshal to, so that the stock
mongorestore reads what we write and we read what the stock mongodump writes:

- Header {concurrent_collections int32, version, server_version, tool_version}
- CollectionMetadata {db, collection, metadata, size (Go `int`: int32 when it fits, else int64), type}
  (mongodump 100.3.1 writes no `type`; newer tools write "collection", "view" or "timeseries")
- NamespaceHeader {db, collection, EOF bool, CRC int64}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import bson
from bson import SON, Int64, json_util
from bson.errors import BSONError
from bson.json_util import CANONICAL_JSON_OPTIONS

from mongobackup.errors import BackupError

#: 0x8199e26d, little-endian: tells an archive apart from a plain stream of BSON documents.
MAGIC = b"\x6d\xe2\x99\x81"
#: Ends the prelude and every segment; it can never start a BSON document (lengths are positive).
TERMINATOR = b"\xff\xff\xff\xff"
ARCHIVE_VERSION = "0.1"
#: mongodump --oplog stores the oplog slice as namespace "" . "oplog", listed in the prelude like the rest.
OPLOG_DB = ""
OPLOG_COLLECTION = "oplog"

#: The largest document a MongoDB server stores, and the largest mongorestore's parser accepts.
MAX_BSON_SIZE = 16 * 1024 * 1024
#: Servers allow internal documents (oplog entries) slightly over MAX_BSON_SIZE; a reader tolerates that.
MAX_INTERNAL_BSON_SIZE = MAX_BSON_SIZE + 16 * 1024
MIN_BSON_SIZE = 5  # the empty document: int32 length + trailing NUL

_INT32_MAX = 2**31 - 1
_INT32_MIN = -(2**31)


class ArchiveError(BackupError):
    """The archive cannot be written or read as asked (misuse, or a stream we cannot make sense of)."""


class ArchiveCorruption(ArchiveError):
    """The bytes are not a whole, intact archive: bad magic, truncation, bad framing or a CRC mismatch.

    The message names the namespace whenever it is known, and the byte offset in the (uncompressed)
    archive, so that an operator can tell which collection of which backup is damaged.
    """

    def __init__(self, reason: str, *, namespace: str | None = None, offset: int | None = None):
        where = f"namespace {namespace}: " if namespace is not None else ""
        at = f" (at byte {offset})" if offset is not None else ""
        super().__init__(f"corruption found in archive: {where}{reason}{at}")
        self.reason = reason
        self.namespace = namespace
        self.offset = offset


def _encode(fields: Sequence[tuple[str, Any]]) -> bytes:
    # SON keeps the field order; mongo-tools writes struct fields in declaration order.
    return bson.encode(SON(fields))


def _decode(raw: bytes, what: str) -> dict[str, Any]:
    try:
        return bson.decode(raw)
    except (BSONError, ValueError) as exc:
        raise ArchiveCorruption(f"{what} is not valid BSON: {exc}") from exc


def _get(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any, what: str) -> Any:
    """A field of a frame document: a wrong type is corruption, a missing one takes Go's zero value."""
    if key not in doc:
        return default
    value = doc[key]
    # bool is an int in Python; never accept one for the other.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ArchiveCorruption(f"{what} field {key!r} has type {type(value).__name__}")
    return value


def _int32_or_64(value: int) -> int | Int64:
    # Go marshals an `int` field as int32 when it fits and as int64 otherwise.
    return value if _INT32_MIN <= value <= _INT32_MAX else Int64(value)


@dataclass(frozen=True)
class ArchiveHeader:
    """The archive-level document right after MAGIC."""

    concurrent_collections: int
    version: str
    server_version: str
    tool_version: str

    def to_bson(self) -> bytes:
        if not _INT32_MIN <= self.concurrent_collections <= _INT32_MAX:
            raise ArchiveError(f"concurrent_collections {self.concurrent_collections} does not fit an int32")
        return _encode(
            [
                ("concurrent_collections", self.concurrent_collections),
                ("version", self.version),
                ("server_version", self.server_version),
                ("tool_version", self.tool_version),
            ]
        )

    @classmethod
    def from_bson(cls, raw: bytes) -> ArchiveHeader:
        doc = _decode(raw, "archive header")
        what = "archive header"
        return cls(
            concurrent_collections=int(_get(doc, "concurrent_collections", int, 0, what)),
            version=_get(doc, "version", str, "", what),
            server_version=_get(doc, "server_version", str, "", what),
            tool_version=_get(doc, "tool_version", str, "", what),
        )


@dataclass(frozen=True)
class NamespaceMetadata:
    """One prelude entry: a namespace the archive holds, with its metadata.json text.

    `metadata` is canonical Extended JSON (see `collection_metadata_json`), "" for the oplog. `size` is the
    uncompressed data size in bytes, only used for progress display (mongodump 100.3.1 always writes 0).
    `type` is "collection", "view", "timeseries" or "" (the oplog, and archives from older tools).
    """

    db: str
    collection: str
    metadata: str
    size: int
    type: str

    @property
    def ns(self) -> str:
        return f"{self.db}.{self.collection}"

    def to_bson(self) -> bytes:
        return _encode(
            [
                ("db", self.db),
                ("collection", self.collection),
                ("metadata", self.metadata),
                ("size", _int32_or_64(self.size)),
                ("type", self.type),
            ]
        )

    @classmethod
    def from_bson(cls, raw: bytes) -> NamespaceMetadata:
        doc = _decode(raw, "collection metadata")
        what = "collection metadata"
        return cls(
            db=_get(doc, "db", str, "", what),
            collection=_get(doc, "collection", str, "", what),
            metadata=_get(doc, "metadata", str, "", what),
            size=int(_get(doc, "size", (int, float), 0, what)),
            type=_get(doc, "type", str, "", what),
        )


@dataclass(frozen=True)
class NamespaceHeader:
    """Starts a data segment (eof False, crc 0) or ends a namespace (eof True, crc = its signed CRC)."""

    db: str
    collection: str
    eof: bool
    crc: int  # signed int64, as stored

    @property
    def ns(self) -> str:
        return f"{self.db}.{self.collection}"

    def to_bson(self) -> bytes:
        return _encode(
            [
                ("db", self.db),
                ("collection", self.collection),
                ("EOF", self.eof),
                ("CRC", Int64(self.crc)),  # always int64, even for 0: mongorestore 100.3.1 decodes an int64
            ]
        )

    @classmethod
    def from_bson(cls, raw: bytes) -> NamespaceHeader:
        doc = _decode(raw, "namespace header")
        what = "namespace header"
        unknown = set(doc) - {"db", "collection", "EOF", "CRC"}
        if unknown:
            # Newer mongo-tools refuse unknown fields here: it is not a namespace header at all.
            raise ArchiveCorruption(f"namespace header has unknown fields {sorted(unknown)}")
        header = cls(
            db=_get(doc, "db", str, "", what),
            collection=_get(doc, "collection", str, "", what),
            eof=_get(doc, "EOF", bool, False, what),
            crc=int(_get(doc, "CRC", int, 0, what)),
        )
        if not header.collection:
            raise ArchiveCorruption("namespace header is missing a collection")
        return header


def collection_metadata_json(
    options: Mapping[str, Any],
    indexes: Sequence[Mapping[str, Any]],
    uuid: bytes | None,
    name: str,
    type: str,
) -> str:
    """The `metadata` of a prelude entry: mongodump's `<coll>.metadata.json`, canonical Extended JSON v2.

    Same shape and order as mongodump's Go struct: `options` (left out when empty), `indexes` (always
    present, `ns` removed because it names the source database), `uuid` as 32 hex digits (left out when
    unknown), `collectionName`, and `type` (left out when empty; 100.3.1 ignores it, newer tools use it).
    mongorestore parses it with canonical Extended JSON, so numbers keep their BSON types ($numberInt etc.).
    """
    meta: SON = SON()
    if options:
        meta["options"] = SON(options)
    meta["indexes"] = [SON((k, v) for k, v in index.items() if k != "ns") for index in indexes]
    if uuid is not None:
        meta["uuid"] = bytes(uuid).hex()
    meta["collectionName"] = name
    if type:
        meta["type"] = type
    # Compact separators and raw UTF-8, like Go's MarshalExtJSON(meta, canonical=true, escapeHTML=false).
    return json_util.dumps(meta, json_options=CANONICAL_JSON_OPTIONS, separators=(",", ":"), ensure_ascii=False)


def parse_collection_metadata(text: str) -> dict[str, Any]:
    """The `metadata` string of a prelude entry as Python values (BSON types kept: Int64, Regex ...).

    The oplog's entry has empty metadata; that reads as {}.
    """
    if not text:
        return {}
    try:
        parsed = json_util.loads(text, json_options=CANONICAL_JSON_OPTIONS)
    except (ValueError, TypeError, BSONError) as exc:
        raise ArchiveCorruption(f"collection metadata is not Extended JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ArchiveCorruption(f"collection metadata is a JSON {type(parsed).__name__}, not an object")
    return parsed


__all__ = [
    "ARCHIVE_VERSION",
    "MAGIC",
    "MAX_BSON_SIZE",
    "MAX_INTERNAL_BSON_SIZE",
    "MIN_BSON_SIZE",
    "OPLOG_COLLECTION",
    "OPLOG_DB",
    "TERMINATOR",
    "ArchiveCorruption",
    "ArchiveError",
    "ArchiveHeader",
    "NamespaceHeader",
    "NamespaceMetadata",
    "collection_metadata_json",
    "parse_collection_metadata",
]
