"""The S3 storage layer against a real S3 server (moto over a socket)."""

from __future__ import annotations

import hashlib
import os
import socket

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from mongobackup.errors import StorageError
from mongobackup.s3 import S3Storage, s3_client
from mongobackup.s3_errors import is_transient, storage_error
from mongobackup.s3_upload import MAX_PART_SIZE, MAX_PARTS, part_size_for
from mongobackup.units import MIB
from tests.faults.proxy import FaultyS3Proxy
from tests.helpers import fewer_wire_attempts, storage_on


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


def test_a_part_failing_in_the_background_names_the_first_failed_part_and_leaves_nothing(services, bucket):
    """Parts go up in worker threads while the next fills: a refused part still surfaces (from a later
    write or from complete), as the lowest-numbered failure, and the upload is aborted whole."""
    with FaultyS3Proxy(services.url("moto")) as proxy:
        proxy.fail_from_part = 2  # parts 2 and on: 503 on every attempt botocore makes
        # Two attempts on the wire, not the code's four: the refusal never heals, so more only wait longer.
        storage = storage_on(proxy.url, bucket, upload_concurrency=2, wire_attempts=2)
        key = "t/refused-in-background.bin"
        with pytest.raises(StorageError) as failed, storage.open_upload(key) as upload:
            for _ in range(4):
                upload.write(os.urandom(5 * MIB))
            upload.complete()
        assert "upload part 2" in str(failed.value) and storage.where(key) in str(failed.value)
        with pytest.raises(StorageError, match="upload part 2|write after the upload finished"):
            upload.write(b"more")  # the upload is over: nothing more is accepted
    direct = storage_on(services.url("moto"), bucket)
    assert direct.head(key) is None
    assert direct.open_uploads(key) == []


def test_parts_failing_together_are_all_named_the_lowest_first():
    from mongobackup.s3_upload import _first_of

    part = lambda n: StorageError(f"upload part {n} s3://b/k: refused (SlowDown)", transient=True, code="SlowDown")  # noqa: E731
    combined = _first_of([(3, part(3)), (2, part(2)), (4, None)])
    assert str(combined) == "upload part 2 s3://b/k: refused (SlowDown); upload part 3 failed as well"
    assert combined.transient and combined.code == "SlowDown"
    alone = part(5)
    assert _first_of([(5, alone)]) is alone


def test_parts_land_in_order_whatever_finishes_first(storage):
    """Several parts in flight, chunks that straddle part boundaries: the object is the bytes written."""
    storage.upload_concurrency = 3
    data = os.urandom(3 * 5 * MIB + 4321)
    with storage.open_upload("t/ordered.bin") as upload:
        for offset in range(0, len(data), 777_777):
            upload.write(bytearray(data[offset : offset + 777_777]))  # a buffer the caller may reuse
        receipt = upload.complete()
    assert receipt.parts == 4 and receipt.size == len(data)
    assert storage.head("t/ordered.bin").etag == receipt.etag
    assert storage.open_read("t/ordered.bin").read() == data


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


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (client_error("SlowDown", 503), True),
        (client_error("InternalError", 500), True),
        (client_error("RequestTimeout", 400), True),
        (client_error("Throttling", 400), True),
        (client_error("SomethingNew", 502), True),  # any 502/503/504 is the store's trouble
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), True),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:9"), True),
        (client_error("NotImplemented", 501), False),
        (client_error("AccessDenied", 403), False),
        (client_error("SomethingNew", 400), False),  # not recognised: permanent, never retried
        (NoCredentialsError(), False),
        (ParamValidationError(report="Non ascii characters found in S3 metadata"), False),
    ],
)
def test_only_recognised_transient_causes_are_transient(error, transient):
    assert is_transient(error) is transient
    assert storage_error(error, "put", "b", "s3://b/k").transient is transient


def test_an_unreachable_store_is_transient_and_named(aws_env):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    session = boto3.Session()  # the default credential chain, as the flows build theirs
    client = s3_client(session=session, endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1")
    # Two attempts on the wire, not the code's four: nobody will start listening, so more only wait longer.
    storage = S3Storage(fewer_wire_attempts(client, session, 2), "bkt")
    with pytest.raises(StorageError) as info:
        storage.head("k")
    assert "s3://bkt/k" in str(info.value) and info.value.transient
