"""The mongodump archive format in pure Python: what the stock `mongorestore --archive` reads.

`format` holds the wire constants, frame types and errors, `crc` the CRC-64 the archive stores,
`writer` turns raw BSON documents into archive bytes, `reader` parses and verifies an archive stream.
The authority is mongo-tools' `common/archive/` (spec.md, prelude.go, multiplexer.go, demultiplexer.go);
the real mongodump/mongorestore 100.3.1 are the judge in tests/archive.
"""

from mongobackup.archive.crc import Crc64, to_signed, to_unsigned
from mongobackup.archive.format import (
    ARCHIVE_VERSION,
    MAGIC,
    MAX_BSON_SIZE,
    MAX_INTERNAL_BSON_SIZE,
    OPLOG_COLLECTION,
    OPLOG_DB,
    TERMINATOR,
    ArchiveCorruption,
    ArchiveError,
    ArchiveHeader,
    NamespaceHeader,
    NamespaceMetadata,
    collection_metadata_json,
    parse_collection_metadata,
)
from mongobackup.archive.reader import (
    ArchiveEvent,
    ArchiveReader,
    DocumentsEvent,
    NamespaceEndEvent,
    read_archive,
)
from mongobackup.archive.writer import ArchiveWriter

__all__ = [
    "ARCHIVE_VERSION",
    "MAGIC",
    "MAX_BSON_SIZE",
    "MAX_INTERNAL_BSON_SIZE",
    "OPLOG_COLLECTION",
    "OPLOG_DB",
    "TERMINATOR",
    "ArchiveCorruption",
    "ArchiveError",
    "ArchiveEvent",
    "ArchiveHeader",
    "ArchiveReader",
    "ArchiveWriter",
    "Crc64",
    "DocumentsEvent",
    "NamespaceEndEvent",
    "NamespaceHeader",
    "NamespaceMetadata",
    "collection_metadata_json",
    "parse_collection_metadata",
    "read_archive",
    "to_signed",
    "to_unsigned",
]
