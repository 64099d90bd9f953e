"""Our dump against the real server: what it asks the server for (no collStats, replies sized from the first one)
and what it writes (the prelude's size 0, as mongodump does; every document, in order)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import bson
import pytest
from pymongo import MongoClient, monitoring

from mongobackup.archive import OPLOG_COLLECTION, OPLOG_DB, ArchiveReader, read_archive
from mongobackup.backup import tool_version
from mongobackup.dump import FIRST_BATCH_DOCUMENTS, DatabaseDump, batch_documents
from tests.helpers import unique

DOCUMENTS = 3 * FIRST_BATCH_DOCUMENTS + 7


class Commands(monitoring.CommandListener):
    """The commands a client sent: (name, command document), in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def named(self, name: str) -> list[dict]:
        return [command for sent, command in self.sent if sent == name]


@pytest.fixture
def database(services) -> Iterator[tuple[str, str, list[bytes]]]:
    """A database of DOCUMENTS documents of 600-1,000 bytes: (uri, name, the documents as stored)."""
    uri, name = services.mongo_uri("mongo-a"), unique("dump")
    documents = [bson.encode({"_id": n, "pad": "x" * (600 + n % 400)}) for n in range(DOCUMENTS)]
    with MongoClient(uri) as client:
        client[name]["items"].insert_many([bson.decode(d) for d in documents])
        try:
            yield uri, name, documents
        finally:
            client.drop_database(name)


def dump(uri: str, name: str) -> tuple[bytes, Commands, DatabaseDump]:
    commands = Commands()
    with MongoClient(uri, event_listeners=[commands]) as client:
        source = DatabaseDump(client, "a", name, tool_version=tool_version())
        archive = b"".join(bytes(chunk) for chunk in source.chunks())
    return archive, commands, source


def test_no_collstats_and_later_replies_are_sized_from_the_first(database):
    uri, name, documents = database
    archive, commands, source = dump(uri, name)

    assert commands.named("collStats") == []
    finds = [c for c in commands.named("find") if c["find"] == "items"]
    assert [f["batchSize"] for f in finds] == [FIRST_BATCH_DOCUMENTS]
    first = documents[:FIRST_BATCH_DOCUMENTS]
    expected = batch_documents(sum(map(len, first)) // len(first))
    more = [c for c in commands.named("getMore") if c["collection"] == "items"]
    assert more and {c["batchSize"] for c in more} == {expected}
    assert expected > FIRST_BATCH_DOCUMENTS  # replies of about 2 MiB, not of the first reply's 101 documents

    _, data = read_archive(io.BytesIO(archive))
    assert data[f"{name}.items"] == documents
    assert source.summary.complete and source.summary.namespaces[0].documents == DOCUMENTS


def test_the_prelude_says_size_0_as_mongodump_does(database):
    uri, name, _ = database
    archive, _, _ = dump(uri, name)
    reader = ArchiveReader(io.BytesIO(archive))
    sizes = {meta.ns: meta.size for meta in reader.namespaces}
    assert sizes[f"{name}.items"] == 0


def test_two_oplog_queries_and_writes_during_the_dump_are_in_the_slice(database):
    """The start probe and the window: the end of the window comes from `hello`, not from another oplog query
    (each costs SecantusDB a read of its whole oplog). A write made while the dump runs is still in the slice."""
    uri, name, _ = database
    commands = Commands()
    with MongoClient(uri, event_listeners=[commands]) as client:
        source = DatabaseDump(client, "a", name, tool_version=tool_version())
        chunks = source.chunks()
        prelude = bytes(next(chunks))  # the window has started
        client[name]["items"].insert_one({"_id": "during"})
        archive = prelude + b"".join(bytes(chunk) for chunk in chunks)

    assert len([c for c in commands.named("find") if c["find"] == "oplog.rs"]) == 2
    _, data = read_archive(io.BytesIO(archive))
    slice_ = [bson.decode(entry) for entry in data[f"{OPLOG_DB}.{OPLOG_COLLECTION}"]]
    assert any(entry["ns"] == f"{name}.items" and entry["o"].get("_id") == "during" for entry in slice_)
    assert source.summary.oplog is not None and source.summary.oplog.entries == len(slice_)


def test_batch_documents_stay_within_bounds():
    assert batch_documents(1_000) == 2097
    assert batch_documents(1) == 10_000
    assert batch_documents(16 << 20) == 16
    assert batch_documents(0) == 1000
