"""A rich dataset for end-to-end tests, and a comparison of two databases down to the document bytes."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from bson import SON, Binary, Code, DBRef, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import ASCENDING, DESCENDING, TEXT, MongoClient
from pymongo.errors import OperationFailure

BIG_DOCUMENT_BYTES = 15 * 1024 * 1024 + 512 * 1024  # > 15 MiB, under the 16 MiB limit


def every_bson_type(i: int) -> dict[str, Any]:
    """One document holding every BSON type pymongo can write, nested in objects and arrays."""
    return {
        "_id": ObjectId(),
        "i": i,
        "double": 3.5 + i,
        "string": f"héllo wörld {i} ✓",
        "object": {"nested": {"deeper": {"n": i, "list": [1, "two", 3.0, None]}}},
        "array": [i, {"k": "v"}, [1, [2, [3]]], Int64(1 << 40)],
        "binary": Binary(b"\x00\x01\x02" * 10),
        "uuid": Binary.from_uuid(uuid.UUID(int=i + 1)),
        "md5": Binary(b"0123456789abcdef", 5),
        "user_binary": Binary(b"custom", 128),
        "bool": i % 2 == 0,
        "date": dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i),
        "null": None,
        "regex": Regex(r"^ab+c$", "im"),
        "code": Code("function() { return 1; }"),
        "code_w_scope": Code("function() { return x; }", {"x": i}),
        "int32": i,
        "timestamp": Timestamp(1_600_000_000 + i, 1),
        "int64": Int64(9_000_000_000 + i),
        "decimal": Decimal128("1234.5678901234567890"),
        "minkey": MinKey(),
        "maxkey": MaxKey(),
        "dbref": DBRef("other", ObjectId(), "otherdb"),
        "python_re": re.compile("x.y"),
    }


def load_rich_dataset(client: MongoClient, database: str, *, rows: int = 200) -> dict[str, bool]:
    """Fills `database` with the shapes a backup must keep. Returns which optional features the server took."""
    db = client[database]
    db.drop_collection("everything")
    db.everything.insert_many([every_bson_type(i) for i in range(rows)])
    db.everything.create_index([("i", ASCENDING)], unique=True, name="i_unique")
    db.everything.create_index([("string", ASCENDING), ("int64", DESCENDING)], name="compound")
    db.everything.create_index([("date", ASCENDING)], expireAfterSeconds=10**9, name="date_ttl")
    db.everything.create_index([("double", ASCENDING)], partialFilterExpression={"bool": True}, name="double_partial")
    features = {"text_index": True}
    try:
        db.everything.create_index([("string", TEXT)], name="string_text")
    except OperationFailure:
        # SecantusDB refuses text indexes (CannotCreateIndex): the backup keeps them on a real mongod,
        # but this server cannot hold one to test with.
        features["text_index"] = False
    db.drop_collection("big")
    db.big.insert_one({"_id": "big", "payload": Binary(b"\xab" * BIG_DOCUMENT_BYTES)})
    db.drop_collection("empty")
    db.create_collection("empty")
    db.drop_collection("capped_log")
    db.create_collection("capped_log", capped=True, size=1 << 20)
    db.capped_log.insert_many([{"n": n, "msg": f"line {n}"} for n in range(50)])
    db.drop_collection("even_view")
    db.command(
        SON(
            [
                ("create", "even_view"),
                ("viewOn", "everything"),
                ("pipeline", [{"$match": {"bool": True}}, {"$project": {"i": 1, "string": 1}}]),
            ]
        )
    )
    return features


def snapshot(client: MongoClient, database: str) -> dict[str, Any]:
    """Everything a restore must reproduce: collections with options, indexes, views, raw documents."""
    db = client.get_database(database, codec_options=CodecOptions(document_class=RawBSONDocument))
    shape: dict[str, Any] = {}
    for info in client[database].list_collections():
        name = info["name"]
        if name.startswith("system."):
            continue
        options = dict(info.get("options", {}))
        entry: dict[str, Any] = {"type": info.get("type", "collection"), "options": options}
        if entry["type"] != "view":
            entry["indexes"] = sorted(
                (
                    ix["name"],
                    tuple(ix["key"].items()),
                    ix.get("unique", False),
                    repr(ix.get("partialFilterExpression")),
                    ix.get("expireAfterSeconds"),
                )
                for ix in client[database][name].list_indexes()
            )
            entry["documents"] = sorted(doc.raw for doc in db[name].find({}))
        shape[name] = entry
    return shape
