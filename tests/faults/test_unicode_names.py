"""Fault: databases whose names are not ASCII (issue 10, defect 3).

MongoDB allows `café-ünï` or `数据库` as database names and dots in collection names; S3 keys are UTF-8 and
take them as they are, but S3 object metadata travels as HTTP headers and must be ASCII. Such a database was
never backed up: the name went into the metadata, botocore refused the request, and the refusal was retried
three times as if it were transient. Now metadata values are percent-encoded (docs/FORMAT.md) and a refused
request is permanent. Each name is backed up and restored, by our restorer and by the stock mongorestore.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pymongo import MongoClient

from flows.backup import backup
from mongobackup.backup import Compression, back_up_database, tool_version
from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.dump import DatabaseDump
from mongobackup.inventory import list_backups
from mongobackup.keys import BackupLocation
from mongobackup.plan import load_plan
from mongobackup.restore import RestoreOptions, restore_backup
from mongobackup.status import Health, read_status
from mongobackup.tiers import Tier
from tests.helpers import decrypt_object, storage_on, unique
from tests.planfiles import write_plan

#: Accents, CJK and dashes in database names; dots (and accents) in collection names.
NAMES = ("café-ünï", "数据库-テスト", "a-b_c")
COLLECTIONS = ("orders.2024", "ünï.cödé", "plain")


def seed(client: MongoClient, database: str) -> dict[str, list[dict]]:
    documents = {}
    for n, collection in enumerate(COLLECTIONS):
        rows = [{"_id": i, "name": f"{database}/{collection}", "n": i * (n + 1)} for i in range(20)]
        client[database][collection].insert_many(rows)
        documents[collection] = rows
    return documents


def contents(client: MongoClient, database: str) -> dict[str, list[dict]]:
    return {name: list(client[database][name].find().sort("_id")) for name in client[database].list_collection_names()}


@pytest.mark.parametrize("name", NAMES)
def test_unicode_names_back_up_and_restore(services, bucket, gpg_key, mongo_tools, tmp_path, name):
    instance, database = unique("rs-u"), unique(name)
    source, scratch = services.mongo_uri("mongo-a"), services.mongo_uri("mongo-scratch")
    storage = storage_on(services.url("moto"), bucket)
    location = BackupLocation("", Tier.DAILY, instance, database, datetime.now(UTC), uuid.uuid4().hex[:8])
    with MongoClient(source) as client:
        expected = seed(client, database)
        manifest = back_up_database(
            dump=DatabaseDump(client, instance, database, tool_version=tool_version()),
            location=location,
            storage=storage,
            gpg=Gpg(gpg_key.home),
            keys=EncryptionKeys((gpg_key.fingerprint,)),
            compression=Compression(),
        )
    try:
        [stored] = list_backups(storage, "", instance, database)
        assert stored.committed and stored.object_key == location.object_key  # the UTF-8 key, as it is
        assert storage.head(location.object_key).metadata["database"] == database  # decoded back

        restored = unique("r")
        with MongoClient(scratch) as target:
            result = restore_backup(
                storage,
                location.object_key,
                Gpg(gpg_key.home),
                target,
                RestoreOptions(target_database=restored),
                manifest=manifest,
            )
            assert result.verdict.ok, result.verdict.summary()
            assert contents(target, restored) == expected
            target.drop_database(restored)

        # The stock mongorestore restores the same object under the database's own name.
        archive = tmp_path / "backup.archive"
        archive.write_bytes(decrypt_object(storage.client, bucket, location.object_key, gpg_key.home))
        mongo_tools.run("mongorestore", f"--uri={scratch}", f"--archive={archive}", timeout=300)
        with MongoClient(scratch) as target:
            assert contents(target, database) == expected
    finally:
        for uri in (source, scratch):
            with MongoClient(uri) as client:
                client.drop_database(database)


def test_the_flow_backs_up_a_unicode_database_and_status_sees_it(services, bucket, gpg_key, prefect, aws_env, tmp_path):
    """One flow run: stored, committed and GREEN in status, at the first attempt."""
    instance, database = unique("rs-uf"), unique("café-ünï")
    uri = services.mongo_uri("mongo-b")
    with MongoClient(uri) as client:
        seed(client, database)
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": instance, "uri": uri, "databases": [database]}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "home",
    )
    try:
        state = backup(plan_path=str(plan), return_state=True)
        assert state.is_completed(), state.message
        report = read_status(storage_on(services.url("moto"), bucket), load_plan(plan), datetime.now(UTC))
        rows = {row.database: row for row in report.rows}
        assert rows[database].health is Health.GREEN, rows[database].reason
    finally:
        with MongoClient(uri) as client:
            client.drop_database(database)
