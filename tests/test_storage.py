"""The S3 storage layer against a real S3 server (moto over a socket)."""

from __future__ import annotations

import hashlib
import os

import pytest

from mongobackup.errors import StorageError
from mongobackup.storage import MAX_PART_SIZE, MAX_PARTS, MIB, S3Storage, part_size_for, s3_client


def test_part_sizes_cover_the_largest_s3_object_in_10000_parts():
    base = 8 * MIB
    covered = sum(part_size_for(n, base) for n in range(1, MAX_PARTS + 1))
    assert covered >= 5 * 1024**4  # S3's 5 TiB object limit
    assert part_size_for(1, base) == base  # a small backup buffers one small part
    assert all(part_size_for(n, base) <= MAX_PART_SIZE for n in range(1, MAX_PARTS + 1))


def test_multipart_upload_round_trip_and_etag(storage):
    data = os.urandom(12 * MIB + 123)
    with storage.open_upload("t/obj.bin", {"tier": "daily"}) as upload:
        for offset in range(0, len(data), 1_000_003):
            upload.write(data[offset : offset + 1_000_003])
        receipt = upload.complete()
    assert receipt.parts == 3
    assert receipt.sha256 == hashlib.sha256(data).hexdigest()
    info = storage.head("t/obj.bin")
    assert info is not None and info.size == len(data)
    assert info.etag == receipt.etag  # the server's multipart ETag equals the one computed from part MD5s
    assert info.metadata == {"tier": "daily"}
    assert storage.open_read("t/obj.bin").read() == data
    assert storage.open_uploads() == []


def test_failure_inside_the_block_aborts_and_leaves_nothing(storage):
    with pytest.raises(RuntimeError), storage.open_upload("t/partial.bin") as upload:
        upload.write(os.urandom(6 * MIB))  # one part already sent
        raise RuntimeError("upstream stage failed")
    assert storage.head("t/partial.bin") is None
    assert storage.open_uploads() == []


def test_empty_stream_is_a_valid_empty_object(storage):
    with storage.open_upload("t/empty.bin") as upload:
        receipt = upload.complete()
    assert storage.head("t/empty.bin").size == 0 == receipt.size


def test_missing_bucket_is_named(services, aws_env):
    storage = S3Storage(s3_client(endpoint_url=services.url("moto"), region="us-east-1"), "no-such-bucket-x1")
    with pytest.raises(StorageError, match="s3://no-such-bucket-x1: bucket does not exist") as info:
        storage.check_bucket()
    assert not info.value.transient


def test_json_objects_and_listing(storage):
    storage.put_json("a/1.json", {"n": 1})
    storage.put_json("a/2.json", {"n": 2})
    assert storage.get_json("a/2.json") == {"n": 2}
    assert [o.key for o in storage.list_keys("a/")] == ["a/1.json", "a/2.json"]
    storage.delete("a/1.json")
    assert [o.key for o in storage.list_keys("a/")] == ["a/2.json"]
