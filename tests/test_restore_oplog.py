"""Oplog replay as plain CRUD: real entries written by a real server, replayed onto a copy, must give the same
database; replaying them twice must too (the slice starts with an entry the data already holds).

SecantusDB writes `$v: 2` updates in its own shape ({updatedFields, removedFields, truncatedArrays}); MongoDB's
diff format ({u, i, d, s<field>}, arrays with a/l/u<n>/s<n>) is checked here against the server's own
update operators on hand-written diffs, since no server here writes it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bson import SON, Int64
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import ASCENDING, MongoClient

from mongobackup.oplog_replay import OplogReplayer, OplogReplayError, diff_to_updates, update_operations
from tests.dataset import snapshot
from tests.helpers import unique

RAW = CodecOptions(document_class=RawBSONDocument)


@pytest.fixture
def databases(services) -> Iterator[tuple[MongoClient, MongoClient, str, str]]:
    source_db, copy_db = unique("oplog_src"), unique("oplog_copy")
    with MongoClient(services.mongo_uri("mongo-a")) as source, MongoClient(services.mongo_uri("mongo-scratch")) as copy:
        try:
            yield source, copy, source_db, copy_db
        finally:
            source.drop_database(source_db)
            copy.drop_database(copy_db)


def copy_database(source: MongoClient, copy: MongoClient, source_db: str, copy_db: str) -> None:
    """The state of `source_db` now, as a dump would hold it: collections, options, indexes, raw documents."""
    for info in source[source_db].list_collections():
        name = info["name"]
        copy[copy_db].command(SON([("create", name), *info.get("options", {}).items()]))
        documents = [doc for doc in source.get_database(source_db, codec_options=RAW)[name].find({})]
        if documents:
            copy[copy_db][name].insert_many(documents)
        specs = [
            {k: v for k, v in ix.items() if k != "ns"}
            for ix in source[source_db][name].list_indexes()
            if ix["name"] != "_id_"
        ]
        if specs:
            copy[copy_db].command(SON([("createIndexes", name), ("indexes", specs)]))


def last_ts(client: MongoClient):
    return client.local["oplog.rs"].find_one({}, sort=[("$natural", -1)])["ts"]


def entries_since(client: MongoClient, database: str, start) -> list[bytes]:
    oplog = client.get_database("local", codec_options=RAW)["oplog.rs"]
    return [
        doc.raw
        for doc in oplog.find({"ts": {"$gte": start}}).sort("$natural", 1)
        if doc["ns"].startswith(f"{database}.")
    ]


def write_a_busy_window(db) -> None:
    """Every kind of change a dump window can see."""
    db.people.insert_many(
        [{"_id": n, "name": f"p{n}", "tags": ["a", "b", "c", "d"], "address": {"city": "Oslo"}} for n in range(10, 15)]
    )
    db.people.update_one(
        {"_id": 1}, {"$set": {"name": "renamed", "address.city": "Lima", "new": Int64(7)}, "$unset": {"age": ""}}
    )
    db.people.update_one({"_id": 2}, {"$inc": {"age": 1}, "$push": {"tags": "z"}})
    db.people.update_one({"_id": 3}, {"$pop": {"tags": 1}})  # an array made shorter
    db.people.update_many({"_id": {"$gte": 10}}, {"$set": {"batch": True}})
    db.people.replace_one({"_id": 4}, {"whole": "new document"})
    db.people.delete_one({"_id": 5})
    db.create_collection("events", capped=True, size=1 << 16)
    db.events.insert_many([{"n": n} for n in range(5)])
    db.people.create_index([("name", ASCENDING)], name="by_name", unique=True)
    db.people.drop_index("by_age")
    db.temp.insert_one({"x": 1})
    db.temp.rename("kept")
    db.doomed.drop()


def test_a_real_window_replays_to_the_same_database_and_twice_is_harmless(databases):
    source, copy, source_db, copy_db = databases
    db = source[source_db]
    db.people.insert_many(
        [
            {
                "_id": n,
                "name": f"p{n}",
                "age": 20 + n,
                "tags": ["a", "b", "c"],
                "address": {"city": "Oslo", "zip": "0150"},
            }
            for n in range(10)
        ]
    )
    db.people.create_index([("age", ASCENDING)], name="by_age")
    db.doomed.insert_one({"x": 1})
    copy_database(source, copy, source_db, copy_db)
    start = last_ts(source)  # the dump's `$gte` start: this entry is already in the copy
    write_a_busy_window(db)
    entries = entries_since(source, source_db, start)
    assert len(entries) > 15

    created: list[tuple[str, str]] = []
    for attempt in range(2):
        replayer = OplogReplayer(
            copy, {source_db: copy_db}, wants=lambda ns: True, on_create=lambda d, n: created.append((d, n))
        )
        for entry in entries:
            replayer.apply(entry)
        assert replayer.applied == len(entries), f"attempt {attempt + 1}"
        assert snapshot(copy, copy_db) == snapshot(source, source_db), f"attempt {attempt + 1}"
    assert {(copy_db, "events"), (copy_db, "kept")} <= set(created)  # a failed restore would drop these too


def test_left_out_namespaces_and_other_databases_are_skipped(databases):
    source, copy, source_db, copy_db = databases
    start = last_ts(source)
    source[source_db].wanted.insert_one({"_id": 1})
    source[source_db].unwanted.insert_one({"_id": 1})
    source[unique("elsewhere")].x.insert_one({"_id": 1})
    oplog = source.get_database("local", codec_options=RAW)["oplog.rs"]
    entries = [doc.raw for doc in oplog.find({"ts": {"$gte": start}}).sort("$natural", 1)]
    replayer = OplogReplayer(
        copy, {source_db: copy_db}, wants=lambda ns: not ns.endswith(".unwanted"), on_create=lambda d, n: None
    )
    for entry in entries:
        replayer.apply(entry)
    assert copy[copy_db].list_collection_names() == ["wanted"]
    assert replayer.applied == 1 and replayer.skipped == len(entries) - 1


def test_an_entry_that_cannot_be_replayed_names_itself(databases):
    _, copy, source_db, copy_db = databases
    replayer = OplogReplayer(copy, {source_db: copy_db}, wants=lambda ns: True, on_create=lambda d, n: None)
    from bson import Timestamp, encode

    entry = encode({"ts": Timestamp(1_700_000_000, 3), "op": "c", "ns": f"{source_db}.$cmd", "o": {"dropDatabase": 1}})
    with pytest.raises(
        OplogReplayError,
        match=rf"oplog entry ts \(1700000000, 3\), op 'c' on '{source_db}.\$cmd': "
        r"command 'dropDatabase' cannot be replayed",
    ):
        replayer.apply(entry)


# --- update formats, without a server writing them ------------------------------------------------------------


def test_update_formats_are_told_apart():
    assert update_operations({"$v": 1, "$set": {"a": 1}}) == ("update", [{"$set": {"a": 1}}])
    assert update_operations({"$set": {"a": 1}, "$unset": {"b": True}}) == (
        "update",
        [{"$set": {"a": 1}, "$unset": {"b": True}}],
    )
    assert update_operations({"_id": 1, "a": 2}) == ("replace", {"_id": 1, "a": 2})
    assert update_operations({"$v": 2, "diff": {"u": {"a": 1}}}) == ("update", [{"$set": {"a": 1}}])


MONGODB_DIFFS = [
    # (document before, diff as MongoDB 5+ writes it, the same change with update operators)
    (
        {"_id": 1, "a": 1, "b": 2},
        {"u": {"a": 5}, "i": {"c": 3}, "d": {"b": False}},
        {"$set": {"a": 5, "c": 3}, "$unset": {"b": ""}},
    ),
    (
        {"_id": 1, "o": {"x": 1, "y": {"z": 1, "w": 2}}},
        {"so": {"u": {"x": 9}, "sy": {"d": {"w": False}}}},
        {"$set": {"o.x": 9}, "$unset": {"o.y.w": ""}},
    ),
    ({"_id": 1, "arr": [1, 2, 3, 4, 5]}, {"sarr": {"a": True, "l": 2}}, {"$push": {"arr": {"$each": [], "$slice": 2}}}),
    (
        {"_id": 1, "arr": [1, {"k": 1}, 3]},
        {"sarr": {"a": True, "u0": 10, "s1": {"u": {"k": 2}}, "u3": 4}},
        {"$set": {"arr.0": 10, "arr.1.k": 2, "arr.3": 4}},
    ),
    ({"_id": 1, "arr": [1, 2, 3, 4]}, {"sarr": {"a": True, "l": 3, "u2": 30}}, None),  # truncate and set
]


@pytest.mark.parametrize(
    ("before", "diff", "reference"), MONGODB_DIFFS, ids=["fields", "nested", "truncate", "elements", "truncate+set"]
)
def test_mongodb_v2_diffs_do_what_the_server_does(services, before, diff, reference):
    with MongoClient(services.mongo_uri("mongo-scratch")) as client:
        collection = client[unique("diffs")].c
        try:
            collection.insert_one(dict(before))
            for update in diff_to_updates(diff):
                collection.update_one({"_id": 1}, update)
            replayed = collection.find_one({"_id": 1})
            if reference is None:
                assert replayed == {"_id": 1, "arr": [1, 2, 30]}
                return
            collection.replace_one({"_id": 1}, dict(before))
            collection.update_one({"_id": 1}, reference)
            assert replayed == collection.find_one({"_id": 1})
        finally:
            client.drop_database(collection.database.name)


def test_secantus_change_description_diffs():
    diff = {
        "updatedFields": {"a": 1, "b.c": 2},
        "removedFields": ["d"],
        "truncatedArrays": [{"field": "arr", "newSize": 2}],
    }
    assert diff_to_updates(diff) == [
        {"$push": {"arr": {"$each": [], "$slice": 2}}},
        {"$set": {"a": 1, "b.c": 2}, "$unset": {"d": ""}},
    ]
    with pytest.raises(ValueError, match="unknown field 'x' in an update diff"):
        diff_to_updates({"x": 1})


def test_a_transaction_logged_as_applyops_under_admin_is_unwrapped_into_its_operations(databases):
    """MongoDB logs a transaction as one `applyOps` command on admin.$cmd whose entries name their own
    namespaces (SecantusDB writes one entry per write instead, so this entry is built by hand)."""
    _, copy, source_db, copy_db = databases
    from bson import Timestamp, encode

    entry = encode(
        {
            "ts": Timestamp(1_700_000_000, 4),
            "op": "c",
            "ns": "admin.$cmd",
            "o": {
                "applyOps": [
                    {"op": "i", "ns": f"{source_db}.ledger", "o": {"_id": "debit", "amount": -5}},
                    {"op": "i", "ns": f"{source_db}.ledger", "o": {"_id": "credit", "amount": 5}},
                    {"op": "i", "ns": "someone_else.ledger", "o": {"_id": "not ours"}},
                ]
            },
        }
    )
    replayer = OplogReplayer(copy, {source_db: copy_db}, wants=lambda ns: True, on_create=lambda d, n: None)
    replayer.apply(entry)
    assert sorted(d["_id"] for d in copy[copy_db].ledger.find()) == ["credit", "debit"]
    assert (replayer.applied, replayer.skipped) == (2, 1)
    assert "someone_else" not in copy.list_database_names()


def test_the_dump_slice_takes_a_transactions_applyops_entry_and_the_replay_only_its_databases_operations(
    databases,
):
    """The dump's oplog query, run by the real server over entries shaped as MongoDB logs them (SecantusDB logs
    a transaction as one entry per write, so they are built by hand and stored in a plain collection): the
    database's own entries and a transaction touching it are taken, other databases' entries are not; the
    replay, under another target name, applies only the database's operations of that transaction."""
    source, copy, source_db, copy_db = databases
    from bson import Timestamp

    from mongobackup.dump import oplog_slice_query

    other = source_db + "_other"  # shares the prefix: the match must stop at the dot

    def entry(inc: int, ns: str, o: dict, op: str = "i") -> dict:
        return {"ts": Timestamp(1_700_000_000, inc), "op": op, "ns": ns, "o": o}

    def transaction(inc: int, *namespaces: str) -> dict:
        inner = [{"op": "i", "ns": ns, "o": {"_id": f"{ns}-{inc}"}} for ns in namespaces]
        return entry(inc, "admin.$cmd", {"applyOps": inner}, op="c")

    log = source.get_database(source_db, codec_options=RAW)["constructed_oplog"]
    log.insert_many(
        [
            entry(1, f"{source_db}.plain", {"_id": "before the window"}),
            entry(2, f"{source_db}.plain", {"_id": "ours"}),
            entry(3, f"{other}.plain", {"_id": "theirs"}),
            transaction(4, f"{source_db}.ledger", f"{other}.ledger"),
            transaction(5, f"{other}.ledger"),
            entry(6, f"{source_db}.$cmd", {"create": "made"}, op="c"),
            entry(7, "admin.$cmd", {"create": "not_a_transaction"}, op="c"),
            transaction(8, f"{source_db}.ledger"),
        ]
    )
    query = oplog_slice_query(source_db, Timestamp(1_700_000_000, 2), Timestamp(1_700_000_000, 7))
    taken = list(log.find(query).sort("ts", 1))
    assert [e["ts"].inc for e in taken] == [2, 4, 6]

    replayer = OplogReplayer(copy, {source_db: copy_db}, wants=lambda ns: True, on_create=lambda d, n: None)
    for raw in taken:
        replayer.apply(raw.raw)
    assert [d["_id"] for d in copy[copy_db].plain.find()] == ["ours"]
    assert [d["_id"] for d in copy[copy_db].ledger.find()] == [f"{source_db}.ledger-4"]
    assert "made" in copy[copy_db].list_collection_names()
    assert other not in copy.list_database_names()
