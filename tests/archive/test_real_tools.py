"""The real mongodump/mongorestore 100.3.1 (under wine) judge our archive code, against SecantusDB.

- an archive written by mongodump (plain, --gzip, --oplog) is read by ArchiveReader: same namespaces,
  same document bytes and counts as pymongo reads raw, same metadata as collection_metadata_json builds;
- an archive written by ArchiveWriter is restored by mongorestore (which checks every CRC): the same
  documents byte for byte, indexes, view, capped and validated collections;
- mongorestore rejects our archive with one CRC altered, or with a prelude namespace never ended.

Wine runs cost seconds, so each dump or archive is built once per module and shared. SecantusDB refuses
text and hashed indexes, so those (which the code handles like any other index) are not seeded here.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bson
import pytest
from bson import Binary, Decimal128, Int64, Regex
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import ASCENDING, DESCENDING, MongoClient

from devservices import LocalServices, MongoTools
from mongobackup.archive import (
    ARCHIVE_VERSION,
    OPLOG_COLLECTION,
    OPLOG_DB,
    ArchiveCorruption,
    ArchiveHeader,
    ArchiveReader,
    ArchiveWriter,
    NamespaceEndEvent,
    NamespaceHeader,
    NamespaceMetadata,
    collection_metadata_json,
    parse_collection_metadata,
    read_archive,
)

RAW = CodecOptions(document_class=RawBSONDocument)
COLLECTIONS = ("orders", "empty", "capped", "validated", "odd-name_ü")
VIEW = "bigorders"
RUN = uuid.uuid4().hex[:8]  # database names unique to this run: servers are shared across tests
INDEX_FIELDS = ("name", "key", "unique", "sparse", "partialFilterExpression", "expireAfterSeconds")


def seed(client: MongoClient, name: str) -> None:
    """A database with the shapes a backup must carry: types, indexes, empty, capped, view, validator."""
    db = client[name]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    orders = [
        {
            "_id": i,
            "sku": f"sku-{i:04d}",
            "qty": i % 40,
            "status": ["new", "paid", "sent"][i % 3],
            "price": Decimal128(f"{i}.25"),
            "big": Int64(1 << 40) + i,
            "ratio": i / 7,
            "ok": i % 2 == 0,
            "created": now,
            "name": f"naïve ✓ {i}",
            "tags": ["a", {"k": i}, [1, 2]],
            "none": None,
            "blob": Binary(bytes(range(i % 256))),
            "id": Binary.from_uuid(uuid.UUID(int=i + 1)),
            "pattern": Regex("^x", "i"),
            **({"coupon": f"c{i}"} if i % 10 == 0 else {}),
        }
        for i in range(400)
    ]
    orders.append({"_id": 10_000, "sku": "huge", "qty": 1, "blob": Binary(b"z" * (2 * 1024 * 1024))})
    db.orders.insert_many(orders)
    db.orders.create_index([("sku", ASCENDING)], unique=True, name="sku_unique")
    db.orders.create_index([("qty", DESCENDING)], partialFilterExpression={"qty": {"$gt": 10}}, name="qty_partial")
    # Dated now with a ten-year TTL: the TTL monitor must not delete documents during the test.
    db.orders.create_index([("created", ASCENDING)], expireAfterSeconds=10 * 365 * 86400, name="created_ttl")
    db.orders.create_index([("status", ASCENDING), ("qty", DESCENDING)], name="status_qty")
    db.orders.create_index([("coupon", ASCENDING)], sparse=True, name="coupon_sparse")
    db.create_collection("empty")
    db.create_collection("capped", capped=True, size=64 * 1024, max=50)
    # SecantusDB 0.7.0b3 keeps all 80 (it does not enforce `max`); the options must round-trip regardless.
    db.capped.insert_many([{"_id": i, "v": "c" * i} for i in range(80)])
    db.create_collection("validated", validator={"qty": {"$gte": 0}}, validationLevel="strict")
    db.validated.insert_many([{"_id": i, "qty": i} for i in range(5)])
    db["odd-name_ü"].insert_one({"_id": "only", "x": 1})
    db.create_collection(VIEW, viewOn="orders", pipeline=[{"$match": {"qty": {"$gt": 30}}}, {"$project": {"sku": 1}}])


def raw_documents(client: MongoClient, db: str, collection: str, sort: Any = "_id") -> list[bytes]:
    coll = client.get_database(db, codec_options=RAW)[collection]
    cursor = coll.find().sort(sort, 1) if sort else coll.find()
    return [bytes(d.raw) for d in cursor]  # pymongo >= 4.18 gives memoryviews for documents >= 4 KiB


def describe(client: MongoClient, db: str) -> list[dict[str, Any]]:
    """listCollections + listIndexes as collection_metadata_json wants them (what a backup records)."""
    out = []
    for info in sorted(client[db].list_collections(), key=lambda i: i["name"]):
        kind = info.get("type", "collection")
        indexes = [] if kind == "view" else list(client[db][info["name"]].list_indexes())
        uuid_bytes = bytes(info["info"]["uuid"]) if "uuid" in info.get("info", {}) else None
        out.append(
            {
                "name": info["name"],
                "type": kind,
                "options": info.get("options", {}),
                "indexes": indexes,
                "uuid": uuid_bytes,
            }
        )
    return out


def index_summary(client: MongoClient, db: str, collection: str) -> list[dict[str, Any]]:
    indexes = client[db][collection].list_indexes()
    return sorted(({k: ix[k] for k in INDEX_FIELDS if k in ix} for ix in indexes), key=lambda ix: ix["name"])


def write_our_archive(client: MongoClient, db: str, *, with_oplog: bool) -> bytes:
    """An archive of `db` made only by our code, from pymongo raw documents (chunks joined in memory:
    the test archive is small; the writer itself streams)."""
    described = describe(client, db)
    metas = [
        NamespaceMetadata(
            db,
            c["name"],
            collection_metadata_json(c["options"], c["indexes"], c["uuid"], c["name"], c["type"]),
            0,
            c["type"],
        )
        for c in described
    ]
    if with_oplog:
        metas.append(NamespaceMetadata(OPLOG_DB, OPLOG_COLLECTION, "", 0, ""))
    writer = ArchiveWriter(ArchiveHeader(1, ARCHIVE_VERSION, client.server_info()["version"], "tests"))
    out = io.BytesIO()
    out.write(writer.prelude(metas))
    for c in described:
        if c["type"] != "view":
            # .raw as pymongo gives it: memoryviews for documents of 4 KiB and more
            cursor = client.get_database(db, codec_options=RAW)[c["name"]].find()
            for chunk in writer.documents(db, c["name"], (d.raw for d in cursor)):
                out.write(chunk)
            out.write(writer.end_namespace(db, c["name"]))
    if with_oplog:
        oplog = client.get_database("local", codec_options=RAW)["oplog.rs"]
        latest = oplog.find().sort("$natural", -1).limit(50)
        entries = [bytes(e.raw) for e in latest if e["ns"].startswith(db + ".")]
        for chunk in writer.documents(OPLOG_DB, OPLOG_COLLECTION, reversed(entries)):
            out.write(chunk)
    out.write(writer.finish())  # the view and the oplog: mongorestore wants every prelude namespace ended
    return out.getvalue()


@pytest.fixture(scope="module")
def source(services: LocalServices) -> Iterator[tuple[MongoClient, str]]:
    client: MongoClient = MongoClient(services.mongo_uri("mongo-a"))
    name = f"arch_src_{RUN}"
    seed(client, name)
    try:
        yield client, name
    finally:
        client.drop_database(name)
        client.close()


@pytest.fixture(scope="module")
def target(services: LocalServices) -> Iterator[MongoClient]:
    client: MongoClient = MongoClient(services.mongo_uri("mongo-b"))
    yield client
    for name in client.list_database_names():
        if name.startswith("arch_") and name.endswith(RUN):
            client.drop_database(name)
    client.close()


@pytest.fixture(scope="module")
def dumps(
    source: tuple[MongoClient, str],
    services: LocalServices,
    mongo_tools: MongoTools,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    """The real mongodump's archive of the source database, plain and --gzip."""
    _, db = source
    folder = tmp_path_factory.mktemp("mongodump")
    uri = services.mongo_uri("mongo-a")
    out = {"plain": folder / "plain.archive", "gzip": folder / "gzip.archive"}
    mongo_tools.run("mongodump", f"--uri={uri}", f"--db={db}", f"--archive={out['plain']}")
    mongo_tools.run("mongodump", f"--uri={uri}", f"--db={db}", "--gzip", f"--archive={out['gzip']}")
    return out


@pytest.fixture(scope="module")
def our_archive(source: tuple[MongoClient, str]) -> bytes:
    client, db = source
    return write_our_archive(client, db, with_oplog=True)


@pytest.mark.parametrize("kind", ["plain", "gzip"])
def test_reader_reads_real_mongodump_archive(
    kind: str, dumps: dict[str, Path], source: tuple[MongoClient, str]
) -> None:
    client, db = source
    path = dumps[kind]
    # --gzip compresses the whole stream: undo it outside the archive code.
    with gzip.open(path, "rb") if kind == "gzip" else path.open("rb") as stream:
        reader, documents = read_archive(stream)
    assert reader.header.version == ARCHIVE_VERSION and reader.header.tool_version == "100.3.1"
    assert sorted(m.collection for m in reader.namespaces) == sorted([*COLLECTIONS, VIEW])
    assert {m.db for m in reader.namespaces} == {db}
    for name in COLLECTIONS:
        expected = raw_documents(client, db, name, sort=None)
        assert sorted(documents[f"{db}.{name}"]) == sorted(expected), name
        assert len(documents[f"{db}.{name}"]) == len(expected)
    assert documents[f"{db}.{VIEW}"] == []
    assert len(documents[f"{db}.empty"]) == 0


def test_our_metadata_json_equals_mongodumps(dumps: dict[str, Path], source: tuple[MongoClient, str]) -> None:
    client, db = source
    with dumps["plain"].open("rb") as stream:
        theirs = {m.collection: m for m in ArchiveReader(stream).namespaces}
    for c in describe(client, db):
        meta = theirs[c["name"]]
        assert (meta.size, meta.type) == (0, "")  # 100.3.1 never fills size and writes no type
        ours = collection_metadata_json(c["options"], c["indexes"], c["uuid"], c["name"], "")
        # Go marshals `options` from a map, in random key order: compare parsed; strings where no options.
        assert parse_collection_metadata(ours) == parse_collection_metadata(meta.metadata), c["name"]
        if not c["options"]:
            assert ours == meta.metadata


def test_reader_reads_real_mongodump_oplog_archive(
    mongo_tools: MongoTools, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # --oplog needs a full dump (no --db); a private server keeps other tests' databases out of it.
    private = LocalServices(tmp_path_factory.mktemp("arch-oplog"))
    try:
        private.start(["mongo-scratch"])
        uri = private.mongo_uri("mongo-scratch")
        with MongoClient(uri) as client:
            client.arch_oplog.items.insert_many([{"_id": i} for i in range(20)])
        path = tmp_path_factory.mktemp("oplog-dump") / "oplog.archive"
        mongo_tools.run("mongodump", f"--uri={uri}", "--oplog", f"--archive={path}")
    finally:
        private.stop()
    with path.open("rb") as stream:
        reader, documents = read_archive(stream)
    # mongodump lists the oplog in the prelude, last, with empty metadata, and ends it with a checked CRC.
    assert reader.namespaces[-1] == NamespaceMetadata(OPLOG_DB, OPLOG_COLLECTION, "", 0, "")
    assert len(documents["arch_oplog.items"]) == 20
    assert all({"ts", "op"} <= set(bson.decode(entry)) for entry in documents[".oplog"])


def test_mongorestore_restores_our_archive(
    our_archive: bytes,
    source: tuple[MongoClient, str],
    target: MongoClient,
    services: LocalServices,
    mongo_tools: MongoTools,
    tmp_path: Path,
) -> None:
    client, db = source
    path = tmp_path / "ours.archive"
    path.write_bytes(our_archive)
    # The oplog namespace is there too: without --oplogReplay mongorestore must skip it quietly.
    mongo_tools.run("mongorestore", f"--uri={services.mongo_uri('mongo-b')}", f"--archive={path}")
    for name in COLLECTIONS:
        assert raw_documents(target, db, name) == raw_documents(client, db, name), name
        assert index_summary(target, db, name) == index_summary(client, db, name), name
    assert raw_documents(target, db, "capped", sort=None) == raw_documents(client, db, "capped", sort=None)
    restored = {i["name"]: i for i in target[db].list_collections()}
    original = {i["name"]: i for i in client[db].list_collections()}
    assert restored[VIEW]["type"] == "view"
    assert restored[VIEW]["options"] == original[VIEW]["options"]  # viewOn and pipeline
    assert restored["capped"]["options"] == {"capped": True, "size": 64 * 1024, "max": 50}
    assert restored["validated"]["options"]["validator"] == {"qty": {"$gte": 0}}


def altered_crc(archive: bytes, db: str, collection: str) -> bytes:
    crc = next(
        e.crc
        for e in ArchiveReader(io.BytesIO(archive))
        if isinstance(e, NamespaceEndEvent) and e.ns == f"{db}.{collection}"
    )
    good = NamespaceHeader(db, collection, True, crc).to_bson()
    bad = NamespaceHeader(db, collection, True, crc ^ 1).to_bson()
    assert archive.count(good) == 1
    return archive.replace(good, bad)


def test_mongorestore_rejects_our_archive_with_a_bad_crc(
    our_archive: bytes,
    source: tuple[MongoClient, str],
    services: LocalServices,
    mongo_tools: MongoTools,
    tmp_path: Path,
) -> None:
    _, db = source
    bad = altered_crc(our_archive, db, "orders")
    with pytest.raises(ArchiveCorruption, match=rf"namespace {db}\.orders: CRC mismatch"):
        read_archive(io.BytesIO(bad))
    path = tmp_path / "bad-crc.archive"
    path.write_bytes(bad)
    done = mongo_tools.run(
        "mongorestore",
        f"--uri={services.mongo_uri('mongo-b')}",
        f"--archive={path}",
        f"--nsFrom={db}.*",
        f"--nsTo=arch_badcrc_{RUN}.*",
        check=False,
    )
    assert done.returncode != 0
    assert "CRC mismatch" in done.stderr.decode(errors="replace")


def test_mongorestore_needs_every_prelude_namespace_ended(
    our_archive: bytes,
    source: tuple[MongoClient, str],
    services: LocalServices,
    mongo_tools: MongoTools,
    tmp_path: Path,
) -> None:
    """Why ArchiveWriter.finish exists: an archive without the view's EOF is refused."""
    _, db = source
    view_eof = NamespaceHeader(db, VIEW, True, 0).to_bson() + b"\xff\xff\xff\xff"
    assert our_archive.count(view_eof) == 1
    path = tmp_path / "no-view-eof.archive"
    path.write_bytes(our_archive.replace(view_eof, b""))
    with pytest.raises(ArchiveCorruption, match=rf"never finished: {db}\.{VIEW}"):
        read_archive(io.BytesIO(path.read_bytes()))
    done = mongo_tools.run(
        "mongorestore",
        f"--uri={services.mongo_uri('mongo-b')}",
        f"--archive={path}",
        f"--nsFrom={db}.*",
        f"--nsTo=arch_noeof_{RUN}.*",
        check=False,
    )
    assert done.returncode != 0
    assert "archive finished before all collections were seen" in done.stderr.decode(errors="replace")
