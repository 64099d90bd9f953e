"""A backup by the core functions the flow calls, in a process of its own, that holds at a stage, says so on
stdout and waits there to be killed with SIGKILL (tests/faults/test_killed.py):

    python -m tests.faults.killable STAGE URI INSTANCE DATABASE ENDPOINT BUCKET GNUPGHOME FINGERPRINT

STAGE is where it holds:
- dump: the dump has handed over its first chunk and is asked for the next (the upload is open, no part yet);
- upload: the first part is stored (the upload is open and holds it);
- commit: the object is uploaded and verified, its manifest not written yet.
It prints `at STAGE <object key>` once there. The hold is a sleep in this process only: the pipeline itself is
the one the flow runs (transfer_database, verify_upload, commit_manifest).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
from pymongo import MongoClient

from devservices import S3_TEST_CREDENTIALS, S3_TEST_REGION
from mongobackup.backup import (
    Compression,
    build_manifest,
    commit_manifest,
    tool_version,
    transfer_database,
    verify_upload,
)
from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.dump import DatabaseDump
from mongobackup.keys import BackupLocation
from mongobackup.s3 import S3Storage, s3_client
from mongobackup.tiers import Tier
from mongobackup.units import MIB

STAGES = ("dump", "upload", "commit")


def hold(stage: str, key: str) -> None:
    print(f"at {stage} {key}", flush=True)
    time.sleep(3600)


class HeldDump:
    """The real dump, held when asked for its second chunk."""

    def __init__(self, dump: DatabaseDump, key: str):
        self._dump, self._key = dump, key
        self.summary = dump.summary

    def chunks(self) -> Iterator[bytes]:
        for n, chunk in enumerate(self._dump.chunks()):
            if n == 1:
                hold("dump", self._key)
            yield chunk


def main(argv: list[str]) -> None:
    stage, uri, instance, database, endpoint, bucket, gnupghome, fingerprint = argv
    assert stage in STAGES, stage
    session = boto3.Session(region_name=S3_TEST_REGION, **S3_TEST_CREDENTIALS)
    client = s3_client(session=session, endpoint_url=endpoint, region=S3_TEST_REGION)
    location = BackupLocation("", Tier.DAILY, instance, database, datetime.now(UTC), uuid.uuid4().hex[:8])
    if stage == "upload":

        def after_part(**_: Any) -> None:
            hold("upload", location.object_key)

        client.meta.events.register("after-call.s3.UploadPart", after_part)
    storage = S3Storage(client, bucket, part_size=5 * MIB)
    with MongoClient(uri) as mongo:
        dump: Any = DatabaseDump(mongo, instance, database, tool_version=tool_version())
        if stage == "dump":
            dump = HeldDump(dump, location.object_key)
        outcome = transfer_database(
            dump=dump,
            location=location,
            storage=storage,
            gpg=Gpg(gnupghome),
            keys=EncryptionKeys((fingerprint,)),
            compression=Compression(),
        )
        verify_upload(storage, outcome)
        if stage == "commit":
            hold("commit", location.object_key)
        commit_manifest(storage, build_manifest(outcome, run_id=location.run_id, scheduled_at=location.taken_at))
    print("committed", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
