"""The storage contract (`mongobackup.storage.Storage`), checked against every S3 server the project runs on:
moto (an S3 model) and SeaweedFS (a real store on disk). A behaviour the backup relies on is asserted here
once, for both, rather than assumed in the tests of the code above the seam.
"""

from __future__ import annotations

import os
import uuid

import pytest

from mongobackup.errors import StorageError
from mongobackup.s3 import S3Storage
from mongobackup.units import MIB
from tests.helpers import storage_on

SERVERS = ("moto", "seaweedfs")


def storage_on_server(services, server: str, bucket: str | None = None, **options) -> S3Storage:
    """`storage_on` the named server, started on first use; a fresh bucket unless one is named."""
    services.start([server])  # SeaweedFS starts on first use; moto is already up for the session
    storage = storage_on(services.url(server), bucket or f"conf-{uuid.uuid4().hex[:12]}", **options)
    if bucket is None:
        storage.client.create_bucket(Bucket=storage.bucket)
    return storage


@pytest.fixture(params=SERVERS)
def server(request) -> str:
    return request.param


@pytest.fixture
def storage(services, server) -> S3Storage:
    return storage_on_server(services, server)


def test_upload_is_visible_only_after_complete(storage):
    data = os.urandom(6 * MIB)
    with storage.open_upload("up/café/日本.bin") as upload:
        upload.write(data)  # one 5 MiB part is on the server now
        assert storage.head("up/café/日本.bin") is None
        assert [u.key for u in storage.open_uploads("up/")] == ["up/café/日本.bin"]
        receipt = upload.complete()
    info = storage.head("up/café/日本.bin")
    assert info is not None and info.size == len(data) == receipt.size
    assert info.etag == receipt.etag
    assert storage.open_read("up/café/日本.bin").read() == data
    assert storage.open_uploads("up/") == []


def test_metadata_of_any_text_round_trips(storage):
    metadata = {"database": "café-ünï 数据库 100%", "tier": "daily"}
    with storage.open_upload("meta/x.bin", metadata) as upload:
        upload.write(b"x")
        upload.complete()
    assert storage.head("meta/x.bin").metadata == metadata
    raw = storage.client.head_object(Bucket=storage.bucket, Key="meta/x.bin")["Metadata"]
    assert raw["database"].isascii() and raw["tier"] == "daily"  # stored percent-encoded, ASCII as it is


def test_abort_leaves_no_object_and_no_open_upload(storage):
    with pytest.raises(RuntimeError), storage.open_upload("ab/x.bin") as upload:
        upload.write(os.urandom(5 * MIB + 1))
        raise RuntimeError("an upstream stage failed")
    assert storage.head("ab/x.bin") is None
    assert storage.open_uploads() == []
    assert list(storage.list_keys("ab/")) == []


def test_open_uploads_report_bytes_and_start_and_can_be_aborted(storage):
    upload = storage.open_upload("left/open.bin")
    upload.write(os.urandom(5 * MIB))  # sent as one part; never completed (a killed process)
    upload.drain()  # parts go up in the background: wait until this one is stored
    [found] = storage.open_uploads("left/")
    assert (found.key, found.size) == ("left/open.bin", 5 * MIB)
    assert found.initiated.tzinfo is not None
    storage.abort_upload(found)
    storage.abort_upload(found)  # already gone: not an error
    assert storage.open_uploads("left/") == []


def test_head_of_a_missing_key_is_none(storage):
    assert storage.head("no/such/key") is None


def test_listing_pages_through_every_key_in_order(services, server):
    storage = storage_on_server(services, server, list_page_size=2)
    keys = [f"ls/{n:02d}-ü.json" for n in range(5)]
    for key in reversed(keys):
        storage.put_json(key, {"k": key})
    storage.put_json("other/x.json", {})
    listed = list(storage.list_keys("ls/"))
    assert [o.key for o in listed] == keys
    assert all(o.size > 0 for o in listed)


def test_json_round_trip_and_delete(storage):
    document = {"name": "café-ünï", "n": 3, "nested": {"list": [1, 2]}}
    storage.put_json("j/数据.json", document)
    assert storage.get_json("j/数据.json") == document
    storage.delete("j/数据.json")
    assert storage.head("j/数据.json") is None
    storage.delete("j/数据.json")  # deleting a missing key is not an error


def test_errors_name_bucket_and_key_and_a_missing_key_is_permanent(storage):
    with pytest.raises(StorageError) as missing:
        storage.get_json("no/such.json")
    assert storage.where("no/such.json") in str(missing.value)
    assert not missing.value.transient
    with pytest.raises(StorageError) as unreadable:
        storage.open_read("no/such.bin")
    assert storage.where("no/such.bin") in str(unreadable.value) and not unreadable.value.transient


def test_a_missing_bucket_is_permanent_and_named(services, server):
    # Only reads: SeaweedFS creates a missing bucket on the first write by an admin identity.
    storage = storage_on_server(services, server, bucket=f"absent-{uuid.uuid4().hex[:10]}")
    with pytest.raises(StorageError) as checked:
        storage.check_bucket()
    assert f"{storage.where()}: bucket does not exist" in str(checked.value)
    assert not checked.value.transient
    with pytest.raises(StorageError) as listed:
        list(storage.list_keys("daily/"))
    assert storage.where("daily/*") in str(listed.value) and not listed.value.transient


def test_a_new_object_is_in_standard_and_needs_no_thaw(storage):
    """What the thaw before a restore relies on: HEAD and the listing name the storage class, and an object in
    an instant class has no thaw state (moto's Glacier model is exercised in test_thaw.py)."""
    storage.put_json("cls/a.json", {"a": 1})
    info = storage.head("cls/a.json")
    assert info is not None and info.storage_class == "STANDARD" and info.restore is None
    assert [(i.key, i.storage_class) for i in storage.list_keys("cls/")] == [("cls/a.json", "STANDARD")]
