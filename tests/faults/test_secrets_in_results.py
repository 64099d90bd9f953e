"""The symmetric passphrase stays with the run's resources: it is not inside what a transfer hands to verify
and commit (Prefect may persist or log task results), nor in the manifest built from it."""

from __future__ import annotations

import json
import pickle
import uuid
from datetime import UTC, datetime

from pymongo import MongoClient

from mongobackup.backup import build_manifest, transfer_database, verify_upload
from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.dump import DatabaseDump
from mongobackup.keys import BackupLocation
from mongobackup.plan import Compression
from mongobackup.tiers import Tier
from tests.helpers import storage_on, unique


def test_the_passphrase_is_not_in_the_transfer_outcome_or_the_manifest(services, bucket, tmp_path):
    passphrase = f"pass-{uuid.uuid4().hex}"
    database = unique("passphrase")
    uri = services.mongo_uri("mongo-b")
    with MongoClient(uri) as client:
        client[database].c.insert_many([{"n": n} for n in range(50)])
        location = BackupLocation("", Tier.DAILY, "rs-b", database, datetime.now(UTC), "run00001")
        storage = storage_on(services.url("moto"), bucket)
        outcome = transfer_database(
            dump=DatabaseDump(client, "rs-b", database, tool_version="test"),
            location=location,
            storage=storage,
            gpg=Gpg(tmp_path / "home"),
            keys=EncryptionKeys((), passphrase),
            compression=Compression(),
        )
    verify_upload(storage, outcome)
    assert passphrase.encode() not in pickle.dumps(outcome)
    assert passphrase not in repr(outcome)
    manifest = build_manifest(outcome, run_id=location.run_id, scheduled_at=location.taken_at)
    assert manifest.encryption.method == "symmetric"
    assert passphrase not in json.dumps(manifest.to_json_dict())
