"""Fault: S3 stops answering mid-upload: a read timeout, a connection dropped without an answer, and S3 gone
for good (even the abort cannot get through). Through the fault-injecting proxy in front of moto.

Driven through the core the flow's transfer task calls: the flow's own part (its failure event, retries, the
Failed run) is shown once for S3 failing, by the 503 case in test_backup_faults.py; here the PipelineError is
what that hook would write. botocore retries each fault on the wire (standard mode) before it surfaces: here
once, not the code's four times, since each retry only adds a random backoff to wait out (the fault stays).
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import boto3
import pytest
from botocore.config import Config
from bson import Binary
from pymongo import MongoClient

from devservices import S3_TEST_CREDENTIALS, S3_TEST_REGION
from mongobackup.backup import Compression, tool_version, transfer_database
from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.dump import DatabaseDump
from mongobackup.errors import PipelineError
from mongobackup.keys import BackupLocation
from mongobackup.s3 import S3Storage, s3_client
from mongobackup.tiers import Tier
from mongobackup.units import MIB
from tests.faults.contract import BackupFault, check_backup_fault
from tests.faults.proxy import FaultyS3Proxy
from tests.helpers import make_backup, storage_on


def impatient_storage(endpoint: str, bucket: str) -> S3Storage:
    """The code's own S3 client, with 1 s timeouts instead of 120 s (a held request times out quickly) and one
    retry on the wire instead of four (a fault that never heals is not waited out five times over)."""
    session = boto3.Session(region_name=S3_TEST_REGION, **S3_TEST_CREDENTIALS)
    config = s3_client(session=session, endpoint_url=endpoint).meta.config.merge(
        Config(connect_timeout=1, read_timeout=1, retries={"mode": "standard", "max_attempts": 1})
    )
    client = session.client("s3", endpoint_url=endpoint, region_name=S3_TEST_REGION, config=config)
    return S3Storage(client, bucket, part_size=5 * MIB)


@pytest.fixture(scope="module")
def source(services):
    uri, database = services.mongo_uri("mongo-b"), f"outage-{uuid.uuid4().hex[:6]}"
    with MongoClient(uri) as client:
        client[database].blobs.insert_many([{"_id": n, "payload": Binary(os.urandom(256 * 1024))} for n in range(28)])
    yield uri, database
    with MongoClient(uri) as client:
        client.drop_database(database)


@pytest.mark.parametrize(
    ("fault", "dead", "words"),
    [
        ("timeout", False, "Read timeout"),
        ("drop", False, "Connection was closed"),
        ("503", True, "SlowDown"),  # S3 gone: the abort is refused too, the upload stays open until the sweep
    ],
)
def test_s3_failing_mid_upload_leaves_nothing_the_next_run_does_not_sweep(
    fault, dead, words, services, bucket, gpg_key, source
):
    uri, database = source
    instance = f"rs-s3-{uuid.uuid4().hex[:4]}"
    location = BackupLocation("", Tier.DAILY, instance, database, datetime.now(UTC), uuid.uuid4().hex[:8])
    with FaultyS3Proxy(services.url("moto")) as proxy, MongoClient(uri) as client:
        proxy.fault, proxy.hold_s, proxy.fail_from_part, proxy.dead_after_failure = fault, 3.0, 2, dead
        with pytest.raises(PipelineError) as failed:
            transfer_database(
                dump=DatabaseDump(client, instance, database, tool_version=tool_version()),
                location=location,
                storage=impatient_storage(proxy.url, bucket),
                gpg=Gpg(gpg_key.home),
                keys=EncryptionKeys((gpg_key.fingerprint,)),
                compression=Compression(),
            )
        assert proxy.failed_requests >= 2  # botocore's retry on the wire came first
    storage = storage_on(services.url("moto"), bucket)
    assert [u.key for u in storage.open_uploads()] == ([location.object_key] if dead else [])
    assert failed.value.transient  # a later attempt of the task may get through

    def next_backup() -> None:
        with MongoClient(uri) as client:
            make_backup(client, storage, Gpg(gpg_key.home), instance, database, EncryptionKeys((gpg_key.fingerprint,)))

    check_backup_fault(
        BackupFault(
            storage,
            instance,
            database,
            message=str(failed.value),
            names=[storage.where(location.object_key), "upload part 2", words],
            stage="upload",
            error=failed.value,
            next_backup=next_backup,
        )
    )
