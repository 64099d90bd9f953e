"""Fault: a backup taken while a restore stages into the same database, or after a killed restore left its
staging collections there (`__restore_<run>_...` and the lease `__restore_<run>`), must not carry them: they
are not data until moved into place, and a restore of that backup would bring them back under their reserved
names. Both engines leave them out: our dump, and the stock mongodump (`--excludeCollectionsWithPrefix`).
"""

from __future__ import annotations

import io
import uuid

import pytest
from pymongo import MongoClient

from mongobackup.archive import ArchiveReader
from mongobackup.backup import tool_version
from mongobackup.dump import DatabaseDump
from mongobackup.mongodump import MongodumpDump
from mongobackup.staging import is_reserved, lease_name, staging_name
from tests.helpers import stock_mongodump_script


@pytest.fixture
def database_with_staging(services):
    uri, database = services.mongo_uri("mongo-b"), f"staged-{uuid.uuid4().hex[:6]}"
    with MongoClient(uri) as client:
        db = client[database]
        db.orders.insert_many([{"_id": n} for n in range(5)])
        db[staging_name(database, "deadbeef", "orders")].insert_many([{"_id": n, "half": True} for n in range(3)])
        db[lease_name("deadbeef")].insert_one({"_id": "lease", "run": "deadbeef", "pid": 1})
    yield uri, database
    with MongoClient(uri) as client:
        client.drop_database(database)


def archive_namespaces(data: bytes, database: str) -> set[str]:
    """The collections in the archive's prelude (what a restore of it would create)."""
    return {meta.collection for meta in ArchiveReader(io.BytesIO(data)).namespaces if meta.db == database}


def test_our_dump_leaves_staging_collections_out(database_with_staging):
    uri, database = database_with_staging
    with MongoClient(uri) as client:
        dump = DatabaseDump(client, "rs-b", database, tool_version=tool_version())
        data = b"".join(dump.chunks())
    assert [ns.collection for ns in dump.summary.namespaces if ns.type != "oplog"] == ["orders"]
    assert archive_namespaces(data, database) == {"orders"}


def test_the_stock_mongodump_leaves_staging_collections_out(database_with_staging, mongo_tools, tmp_path):
    uri, database = database_with_staging
    dump = MongodumpDump(uri, "rs-b", database, command=(str(stock_mongodump_script(mongo_tools, tmp_path)),))
    data = b"".join(dump.chunks())
    assert not [ns.collection for ns in dump.summary.namespaces if is_reserved(ns.collection)]
    assert [ns.collection for ns in dump.summary.namespaces if ns.type != "oplog"] == ["orders"]
    assert archive_namespaces(data, database) == {"orders"}
