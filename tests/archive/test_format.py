"""Frame documents with the field order and BSON types mongo-tools' Go structs use, and metadata.json."""

from __future__ import annotations

import json

import bson
import pytest
from bson import SON, Int64, Regex

from mongobackup.archive import (
    ArchiveCorruption,
    ArchiveHeader,
    NamespaceHeader,
    NamespaceMetadata,
    collection_metadata_json,
    parse_collection_metadata,
)


def element_types(raw: bytes) -> list[tuple[str, int]]:
    """(field name, BSON type byte) in stored order: what byte-level compatibility depends on."""
    out, pos = [], 4
    doc = bson.decode(raw, codec_options=bson.CodecOptions(document_class=SON))
    for key in doc:
        kind = raw[pos]
        assert raw[pos + 1 : pos + 1 + len(key.encode())] == key.encode()
        out.append((key, kind))
        # advance past this element by re-encoding it alone (keeps the helper short and exact)
        pos += len(bson.encode({key: doc[key]})) - 5
    return out


def test_header_fields() -> None:
    header = ArchiveHeader(4, "0.1", "8.2.11", "100.3.1")
    raw = header.to_bson()
    assert element_types(raw) == [
        ("concurrent_collections", 0x10),
        ("version", 2),
        ("server_version", 2),
        ("tool_version", 2),
    ]
    assert ArchiveHeader.from_bson(raw) == header


def test_namespace_metadata_fields_and_size_width() -> None:
    small = NamespaceMetadata("shop", "orders", "{}", 1234, "collection")
    assert element_types(small.to_bson()) == [
        ("db", 2),
        ("collection", 2),
        ("metadata", 2),
        ("size", 0x10),
        ("type", 2),
    ]
    big = NamespaceMetadata("shop", "orders", "{}", 5 * 2**30, "collection")
    assert dict(element_types(big.to_bson()))["size"] == 0x12  # Go `int`: int64 once it does not fit
    assert NamespaceMetadata.from_bson(big.to_bson()) == big
    assert small.ns == "shop.orders"


def test_metadata_from_mongodump_100_3_1_has_no_type() -> None:
    raw = bson.encode(SON([("db", ""), ("collection", "oplog"), ("metadata", ""), ("size", 0)]))
    assert NamespaceMetadata.from_bson(raw) == NamespaceMetadata("", "oplog", "", 0, "")


def test_namespace_header_crc_is_always_int64() -> None:
    for crc in (0, -519332632789129715, 2**63 - 1):
        header = NamespaceHeader("shop", "orders", eof=crc != 0, crc=crc)
        raw = header.to_bson()
        assert element_types(raw) == [("db", 2), ("collection", 2), ("EOF", 8), ("CRC", 0x12)]
        assert NamespaceHeader.from_bson(raw) == header


@pytest.mark.parametrize(
    "fields, message",
    [
        ([("db", "a"), ("collection", "b"), ("EOF", 1), ("CRC", Int64(0))], "'EOF' has type int"),
        ([("db", "a"), ("collection", "b"), ("EOF", False), ("CRC", "0")], "'CRC' has type str"),
        ([("db", "a"), ("EOF", False), ("CRC", Int64(0))], "missing a collection"),
        ([("db", "a"), ("collection", "b"), ("extra", 1)], "unknown fields ['extra']"),
    ],
)
def test_namespace_header_rejects_other_documents(fields: list, message: str) -> None:
    with pytest.raises(ArchiveCorruption, match="corruption found in archive") as err:
        NamespaceHeader.from_bson(bson.encode(SON(fields)))
    assert message in str(err.value)


def test_corruption_message_names_namespace_and_offset() -> None:
    err = ArchiveCorruption("CRC mismatch (stored 123, computed 456)", namespace="shop.orders", offset=99)
    assert str(err) == (
        "corruption found in archive: namespace shop.orders: CRC mismatch (stored 123, computed 456) (at byte 99)"
    )
    assert (err.namespace, err.offset) == ("shop.orders", 99)


def test_collection_metadata_json_matches_mongodump_shape() -> None:
    indexes = [
        SON([("v", 2), ("key", SON([("_id", 1)])), ("name", "_id_"), ("ns", "shop.orders")]),
        SON(
            [
                ("v", 2),
                ("key", SON([("qty", -1)])),
                ("name", "qty_partial"),
                ("partialFilterExpression", SON([("qty", SON([("$gt", 10)]))])),
            ]
        ),
    ]
    uuid = bytes.fromhex("a98df7bfaea14a31b0056fa9172a497d")
    text = collection_metadata_json({}, indexes, uuid, "orders", "")
    # Byte for byte what mongodump 100.3.1 wrote for this collection (tests/archive/test_real_tools.py
    # checks the same against a live dump).
    assert text == (
        '{"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"},'
        '{"v":{"$numberInt":"2"},"key":{"qty":{"$numberInt":"-1"}},"name":"qty_partial",'
        '"partialFilterExpression":{"qty":{"$gt":{"$numberInt":"10"}}}}],'
        '"uuid":"a98df7bfaea14a31b0056fa9172a497d","collectionName":"orders"}'
    )


def test_collection_metadata_json_options_view_and_types() -> None:
    options = SON([("viewOn", "orders"), ("pipeline", [{"$match": {"n": Int64(5), "s": Regex("^a", "i")}}])])
    text = collection_metadata_json(options, [], None, "v-ü", "view")
    as_json = json.loads(text)
    assert list(as_json) == ["options", "indexes", "collectionName", "type"]  # no uuid when unknown
    assert as_json["options"]["pipeline"][0]["$match"]["n"] == {"$numberLong": "5"}
    assert "v-ü" in text  # raw UTF-8, as Go writes it
    parsed = parse_collection_metadata(text)
    assert parsed["options"]["pipeline"][0]["$match"]["n"] == Int64(5)
    assert isinstance(parsed["options"]["pipeline"][0]["$match"]["n"], Int64)
    assert parsed["type"] == "view" and parsed["indexes"] == []


def test_parse_collection_metadata_edges() -> None:
    assert parse_collection_metadata("") == {}  # the oplog's prelude entry
    with pytest.raises(ArchiveCorruption, match="not Extended JSON"):
        parse_collection_metadata("{nope")
    with pytest.raises(ArchiveCorruption, match="not an object"):
        parse_collection_metadata("[1]")
