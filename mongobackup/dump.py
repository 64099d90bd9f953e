"""One database of a MongoDB instance as a stream of mongodump-archive bytes.

Documents are read as raw BSON (pymongo's RawBSONDocument) and passed on untouched, so the archive holds the
exact bytes the server returned. When the instance has an oplog, the entries for this database written
during the dump window are appended as the archive's oplog namespace: replaying them over the restored
collections brings the backup to the single point in time at which the dump ended.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bson import SON, decode
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from bson.timestamp import Timestamp
from pymongo import MongoClient
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from mongobackup.archive import (
    ARCHIVE_VERSION,
    OPLOG_COLLECTION,
    OPLOG_DB,
    ArchiveHeader,
    ArchiveWriter,
    NamespaceMetadata,
    collection_metadata_json,
)
from mongobackup.errors import SourceError, one_line
from mongobackup.manifest import DocumentDigest, IndexRecord, NamespaceRecord, OplogWindow
from mongobackup.staging import is_reserved

#: Documents as the raw BSON bytes the server sent: passed on untouched, hashed without re-encoding.
RAW = CodecOptions(document_class=RawBSONDocument)
#: Target bytes per cursor reply (see scan_collection), and the bounds of the batch size.
BATCH_BYTES = 2 << 20
#: The first reply's documents: the server's own default first batch. Later replies are sized from it.
FIRST_BATCH_DOCUMENTS = 101
DEFAULT_BATCH_DOCUMENTS = 1000
MIN_BATCH_DOCUMENTS, MAX_BATCH_DOCUMENTS = 16, 10_000
AUTH_FAILED_CODES = {18, 13, 8000}  # AuthenticationFailed, Unauthorized, Atlas' AtlasError for bad credentials


@dataclass
class DumpSummary:
    """What a finished dump saw: filled in as the stream is consumed, complete once it is exhausted."""

    server_version: str = ""
    replica_set: str | None = None
    namespaces: list[NamespaceRecord] = field(default_factory=list)
    oplog: OplogWindow | None = None
    complete: bool = False

    @property
    def documents(self) -> int:
        return sum(ns.documents for ns in self.namespaces if ns.type != "oplog")


def open_client(uri: str, *, read_preference: str = "primaryPreferred", timeout_s: float = 10.0) -> MongoClient:
    """A client that fails within `timeout_s` when the instance is unreachable, instead of pymongo's 30 s."""
    ms = int(timeout_s * 1000)
    return MongoClient(
        uri,
        readPreference=read_preference,
        serverSelectionTimeoutMS=ms,
        connectTimeoutMS=ms,
        appname="mongo-backup-flows",
    )


def list_databases(client: MongoClient, instance: str) -> list[str]:
    """Names of the instance's databases (raises SourceError naming the instance on failure)."""
    with source_errors(instance, None):
        return sorted(client.list_database_names())


@contextlib.contextmanager
def source_errors(instance: str, database: str | None) -> Iterator[None]:
    """Maps pymongo failures to SourceError: transient for network faults, permanent for auth and the rest."""
    try:
        yield
    except ServerSelectionTimeoutError as exc:
        raise SourceError(instance, database, f"unreachable: {one_line(exc)}", transient=True) from exc
    except (AutoReconnect, ConnectionFailure) as exc:
        raise SourceError(instance, database, f"connection lost: {one_line(exc)}", transient=True) from exc
    except OperationFailure as exc:
        if exc.code in AUTH_FAILED_CODES:
            raise SourceError(instance, database, f"bad credentials or missing privileges: {one_line(exc)}") from exc
        raise SourceError(instance, database, f"server refused: {one_line(exc)}") from exc
    except PyMongoError as exc:
        raise SourceError(instance, database, one_line(exc)) from exc


class DatabaseDump:
    """Streams one database as archive bytes; `summary` is complete when the stream is exhausted."""

    def __init__(
        self,
        client: MongoClient,
        instance: str,
        database: str,
        *,
        tool_version: str,
        on_namespace: Callable[[str], None] | None = None,
    ):
        self.client = client
        self.instance = instance
        self.database = database
        self.tool_version = tool_version
        self.summary = DumpSummary()
        self._on_namespace = on_namespace or (lambda ns: None)

    def chunks(self) -> Iterator[bytes]:
        with source_errors(self.instance, self.database):
            yield from self._chunks()

    def _chunks(self) -> Iterator[bytes]:
        db = self.client.get_database(self.database, codec_options=RAW)
        self.summary.server_version = self.client.admin.command("buildInfo").get("version", "")
        hello = self.client.admin.command("hello")
        self.summary.replica_set = hello.get("setName")
        oplog_start = self._oplog_start(hello)
        collections = self._describe_collections(db)

        namespaces = [
            NamespaceMetadata(self.database, c["name"], c["metadata"], c["size"], c["type"]) for c in collections
        ]
        if oplog_start is not None:
            namespaces.append(NamespaceMetadata(OPLOG_DB, OPLOG_COLLECTION, "", 0, ""))
        writer = ArchiveWriter(
            ArchiveHeader(
                concurrent_collections=1,
                version=ARCHIVE_VERSION,
                server_version=self.summary.server_version,
                tool_version=self.tool_version,
            )
        )
        yield writer.prelude(namespaces)

        for info in collections:
            if info["type"] == "view":
                self.summary.namespaces.append(
                    NamespaceRecord(collection=info["name"], type="view", view_on=info["options"].get("viewOn"))
                )
                continue
            self._on_namespace(f"{self.database}.{info['name']}")
            digest = DocumentDigest()
            docs = _raw_documents(scan_collection(db, info["name"]), digest)
            yield from writer.documents(self.database, info["name"], docs)
            yield writer.end_namespace(self.database, info["name"])
            self.summary.namespaces.append(
                NamespaceRecord(
                    collection=info["name"],
                    type=info["type"],
                    documents=digest.count,
                    bytes=digest.bytes,
                    crc=writer.crc(self.database, info["name"]),
                    digest=digest.hexdigest,
                    indexes=[IndexRecord.from_spec(ix) for ix in info["indexes"]],
                )
            )

        if oplog_start is not None:
            yield from self._oplog_chunks(writer, oplog_start)
        # Every prelude namespace needs its end marker, views included: mongorestore refuses the archive
        # ("archive finished before all collections were seen") otherwise.
        yield writer.finish()
        self.summary.complete = True

    def _describe_collections(self, db: Any) -> list[dict[str, Any]]:
        described = []
        for info in sorted(db.list_collections(), key=lambda i: i["name"]):
            info = _decoded(info)
            name, kind = info["name"], info.get("type", "collection")
            if name.startswith("system."):
                continue  # views are listed as views; system.profile/js etc. are not user data
            if is_reserved(name):
                continue  # a restore's staging collections and lease: not data until moved into place
            options = info.get("options", {})
            indexes = [] if kind == "view" else [_without_ns(ix) for ix in db.get_collection(name).list_indexes()]
            uuid = info.get("info", {}).get("uuid")
            described.append(
                {
                    "name": name,
                    "type": kind,
                    "options": options,
                    "indexes": indexes,
                    "metadata": collection_metadata_json(options, indexes, _uuid_bytes(uuid), name, kind),
                    # The prelude's size only feeds mongorestore's progress bar; mongodump writes 0 too. Asking
                    # for it (collStats) costs some servers a scan of the collection.
                    "size": 0,
                }
            )
        return described

    def _window(self, start: Timestamp, end: Timestamp) -> Any:
        """This database's oplog entries from `start` to `end`, oldest first: bounded on both sides, so a server
        that seeks the oplog by time (MongoDB) reads only the window.

        $gte, not $gt: some servers answer an exclusive bound on ts very slowly. The entry at `start` was
        applied before the dump began; replaying it again is harmless.
        """
        query = oplog_slice_query(self.database, start, end)
        return self._oplog().find(query, batch_size=DEFAULT_BATCH_DOCUMENTS).sort("$natural", 1)

    def _oplog(self) -> Any:
        return self.client.get_database("local", codec_options=RAW).get_collection("oplog.rs")

    def _oplog_start(self, hello: dict[str, Any]) -> Timestamp | None:
        """The newest oplog time as the dump begins, or None when there is no oplog we may read (then the dump is
        whole, just not point-in-time).

        One oplog query at most, here; the end of the window costs none (see _last_oplog_ts) and the window one,
        so a dump sends two oplog queries. Some servers answer every oplog query, however small, by reading all
        of the oplog (SecantusDB: about 0.1 s each even when capped at a few hundred entries).
        """
        try:
            # A probe in natural order: it fails when the oplog is missing or not ours to read.
            if self._oplog().find_one({}, projection={"ts": 1}) is None:
                return None
        except OperationFailure:
            return None
        return self._last_oplog_ts(hello)

    def _last_oplog_ts(self, hello: dict[str, Any] | None = None) -> Timestamp | None:
        """The newest oplog time of an oplog known to be readable. A replica set member reports its last write in
        `hello`: no query on the oplog at all, where a reverse scan costs some servers a read of all of it."""
        hello = self.client.admin.command("hello") if hello is None else hello
        last_write = hello.get("lastWrite", {}).get("opTime", {}).get("ts")
        if last_write is not None:
            return last_write
        last = self._oplog().find_one({}, projection={"ts": 1}, sort=[("$natural", -1)])
        return None if last is None else last["ts"]

    def _oplog_chunks(self, writer: ArchiveWriter, start: Timestamp) -> Iterator[bytes]:
        end = self._last_oplog_ts() or start
        self._on_namespace("oplog")
        digest = DocumentDigest()
        if end != start:
            yield from writer.documents(OPLOG_DB, OPLOG_COLLECTION, _raw_documents(self._window(start, end), digest))
        # else nothing was written anywhere during the dump: the window is empty, and no query is sent (some
        # servers answer any oplog query by scanning the whole oplog).
        yield writer.end_namespace(OPLOG_DB, OPLOG_COLLECTION)
        self.summary.namespaces.append(
            NamespaceRecord(
                collection=OPLOG_COLLECTION,
                type="oplog",
                documents=digest.count,
                bytes=digest.bytes,
                crc=writer.crc(OPLOG_DB, OPLOG_COLLECTION),
                digest=digest.hexdigest,
            )
        )
        self.summary.oplog = OplogWindow(start=(start.time, start.inc), end=(end.time, end.inc), entries=digest.count)


def oplog_slice_query(database: str, start: Timestamp, end: Timestamp) -> dict[str, Any]:
    """The oplog entries from `start` to `end` that touch `database`: its collections and its `$cmd`, and the
    transactions MongoDB logs as one `applyOps` command under `admin.$cmd` whose operations (each naming its
    own namespace) touch it. Other databases' writes stay on the server; a transaction's operations on other
    databases come along inside its entry, and the replay skips them."""
    ours = {"$regex": "^" + re.escape(database) + r"\."}
    return {
        "ts": {"$gte": start, "$lte": end},
        "$or": [{"ns": ours}, {"ns": "admin.$cmd", "o.applyOps.ns": ours}],
    }


def scan_collection(db: Any, name: str) -> Iterator[RawBSONDocument]:
    """Every document of the collection `name`, as raw BSON, in replies of about BATCH_BYTES each.

    Left alone, the server fills each reply up to 16 MiB and pymongo holds several replies at once, so memory
    would climb with the collection's size. The first reply holds FIRST_BATCH_DOCUMENTS; every later one is
    sized from the average document of the first (no collStats: some servers answer it with a scan). A find
    cursor fixes its batch size at the first request, a command cursor does not, hence `cursor_command`.
    """
    cursor = db.cursor_command(
        SON([("find", name), ("filter", {}), ("batchSize", FIRST_BATCH_DOCUMENTS)]),
        read_preference=db.read_preference,
        codec_options=RAW,
    )
    with cursor:
        size = 0
        for count, document in enumerate(cursor, start=1):
            size += len(document.raw)
            if count == FIRST_BATCH_DOCUMENTS:
                # The first reply is consumed and the next getMore not sent yet: size it now.
                cursor.batch_size(batch_documents(size // count))
            yield document


def batch_documents(average_size: int) -> int:
    """Documents per reply for documents of `average_size` bytes: about BATCH_BYTES, within the bounds."""
    batch = BATCH_BYTES // average_size if average_size > 0 else DEFAULT_BATCH_DOCUMENTS
    return max(MIN_BATCH_DOCUMENTS, min(batch, MAX_BATCH_DOCUMENTS))


def _raw_documents(cursor: Any, digest: DocumentDigest) -> Iterator[bytes]:
    for document in cursor:
        raw = document.raw
        digest.add(raw)
        yield raw


def _decoded(document: Any) -> dict[str, Any]:
    """A RawBSONDocument (or nested one) as plain Python values, for metadata we inspect."""
    if isinstance(document, RawBSONDocument):
        return decode(document.raw)
    return dict(document)


def _without_ns(index: Any) -> SON:
    spec = _decoded(index)
    spec.pop("ns", None)  # dropped by mongodump: it names the source database
    return SON(spec)


def _uuid_bytes(uuid: Any) -> bytes | None:
    if uuid is None:
        return None
    if hasattr(uuid, "bytes"):
        return uuid.bytes
    return bytes(uuid)
