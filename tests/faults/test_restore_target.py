"""Fault: a restore must not touch its target until the backup is proven good (issue 10, defect 1).

A restore writes into staging collections (`__restore_<run>_...`) in the target database, verifies them
against the manifest, and only then moves each into place (renameCollection + dropTarget). Here, against the
real services (SecantusDB, moto, gpg) and through the command line a user runs:
- a damaged backup restored `--as <that db> --drop` over a collection of 7 documents: exit 1, the 7 documents
  still there and nothing else left in the database;
- a good backup over the same: the target is replaced, options (capped, collation, validator), TTL and
  unique indexes and views intact, no staging name left;
- a restore killed with kill -9 leaves the target's own collections as they were and only staging names
  beside them, which `restore --list` reports and the next restore sweeps; the next drill sweeps what a
  killed drill left on the scratch server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from bson import SON, Binary
from pymongo import ASCENDING, MongoClient

from devservices import S3_TEST_CREDENTIALS, S3_TEST_REGION
from flows.restore import main
from mongobackup.backup import Compression, back_up_database, tool_version
from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.drill import drill_restore
from mongobackup.dump import DatabaseDump
from mongobackup.keys import BackupLocation
from mongobackup.manifest import BackupManifest
from mongobackup.s3 import S3Storage, s3_client
from mongobackup.staging import is_reserved, lease_name, staging_name
from mongobackup.tiers import Tier
from tests.dataset import snapshot
from tests.faults.contract import RestoreFault, check_restore_fault, target_state
from tests.planfiles import write_plan

DOCS = 1200  # per big collection: about 5 MB stored, a few seconds of restore to be killed in
PAYLOAD_BYTES = 2000
SEED = [{"_id": n, "seed": f"the target's own document {n}"} for n in range(7)]
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": S3_TEST_CREDENTIALS["aws_access_key_id"],
    "AWS_SECRET_ACCESS_KEY": S3_TEST_CREDENTIALS["aws_secret_access_key"],
    "AWS_DEFAULT_REGION": S3_TEST_REGION,
}


@dataclass(frozen=True)
class Stored:
    storage: S3Storage
    plan: Path
    instance: str
    database: str  # the source database, kept for comparisons
    source_uri: str
    manifest: BackupManifest


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:6]}"


def fill(db) -> None:
    """Collections with every option a swap must keep, two of them big enough to be caught mid-restore."""
    for name in ("orders", "events"):
        db[name].insert_many(
            [
                {"_id": n, "at": datetime(2026, 1, 1, tzinfo=UTC), "blob": Binary(os.urandom(PAYLOAD_BYTES))}
                for n in range(DOCS)
            ]
        )
    db.orders.create_index([("at", ASCENDING)], expireAfterSeconds=10**9, name="at_ttl")
    db.events.create_index([("_id", ASCENDING), ("at", ASCENDING)], unique=True, name="id_at_unique")
    db.create_collection("log", capped=True, size=1 << 20)
    db.log.insert_many([{"n": n} for n in range(50)])
    db.command(
        SON(
            [
                ("create", "people"),
                ("collation", {"locale": "fr", "strength": 2}),
                ("validator", {"$jsonSchema": {"required": ["name"]}}),
                ("validationLevel", "moderate"),
            ]
        )
    )
    db.people.insert_many([{"name": f"Zoé {n}"} for n in range(20)])
    db.command(
        SON([("create", "recent_orders"), ("viewOn", "orders"), ("pipeline", [{"$match": {"_id": {"$gte": 5}}}])])
    )


@pytest.fixture(scope="module")
def stored(services, gpg_key, tmp_path_factory) -> Iterator[Stored]:
    source_uri = services.mongo_uri("mongo-b")
    instance, database = unique("rs-f"), unique("shop")
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    session = boto3.Session(region_name=S3_TEST_REGION, **S3_TEST_CREDENTIALS)
    client = s3_client(session=session, endpoint_url=services.url("moto"), region=S3_TEST_REGION)
    client.create_bucket(Bucket=bucket)
    storage = S3Storage(client, bucket)
    with MongoClient(source_uri) as client:
        fill(client[database])
        location = BackupLocation("", Tier.DAILY, instance, database, datetime.now(UTC), uuid.uuid4().hex[:8])
        manifest = back_up_database(
            dump=DatabaseDump(client, instance, database, tool_version=tool_version()),
            location=location,
            storage=storage,
            gpg=Gpg(gpg_key.home),
            keys=EncryptionKeys((gpg_key.fingerprint,)),
            compression=Compression(),
        )
    plan = write_plan(
        tmp_path_factory.mktemp("restore-target") / "plan.yaml",
        instances=[{"name": instance, "uri": source_uri}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=gpg_key.home,
    )
    try:
        yield Stored(storage, plan, instance, database, source_uri, manifest)
    finally:
        with MongoClient(source_uri) as client:
            client.drop_database(database)


@pytest.fixture
def target(services) -> Iterator[str]:
    """A database on the scratch server whose `orders` collection holds the 7 SEED documents."""
    name = unique("target")
    with MongoClient(services.mongo_uri("mongo-scratch")) as client:
        client[name].orders.insert_many(SEED)
        yield name
        client.drop_database(name)


@pytest.fixture(autouse=True)
def _aws(monkeypatch) -> None:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)


def cli(stored: Stored, scratch: str, target: str, *extra: str) -> list[str]:
    return [
        "--plan", str(stored.plan), "--instance", stored.instance, "--database", stored.database,
        "--to", scratch, "--as", target, "--quiet", *extra,
    ]  # fmt: skip


def collections(uri: str, database: str) -> dict[str, int]:
    with MongoClient(uri) as client:
        db = client[database]
        return {name: db[name].count_documents({}) for name in db.list_collection_names()}


def seed_is_intact(uri: str, database: str) -> bool:
    with MongoClient(uri) as client:
        return sorted(client[database].orders.find({}), key=lambda d: d["_id"]) == SEED


def damaged_copy(stored: Stored) -> str:
    """The stored object with one byte flipped near its end (after the first collections' data), committed
    with the original manifest under a new key of the same database."""
    storage, manifest = stored.storage, stored.manifest
    data = bytearray(storage.client.get_object(Bucket=storage.bucket, Key=manifest.object_key)["Body"].read())
    data[len(data) - 50_000] ^= 0x01
    location = BackupLocation(
        "", Tier.DAILY, stored.instance, stored.database, manifest.scheduled_at - timedelta(days=1), "damaged1"
    )
    storage.client.put_object(Bucket=storage.bucket, Key=location.object_key, Body=bytes(data))
    copy = manifest.to_json_dict() | {"object_key": location.object_key}
    storage.put_json(location.manifest_key, copy)
    return location.object_key


def test_a_damaged_backup_restored_with_drop_leaves_the_target_exactly_as_it_was(stored, services, target, capsys):
    scratch = services.mongo_uri("mongo-scratch")
    key = damaged_copy(stored)
    before = target_state(scratch, target)
    assert main(cli(stored, scratch, target, "--drop", "--key", key)) == 1
    assert seed_is_intact(scratch, target), "the 7 documents of the target must survive a failed restore"
    assert collections(scratch, target) == {"orders": 7}, "nothing of the failed restore may stay behind"
    out, err = capsys.readouterr()
    where = f"restore of {stored.storage.where(key)}"
    check_restore_fault(RestoreFault(err, [where, "the target is as it was"], scratch, target, before, outputs=[out]))


def test_a_good_backup_replaces_the_target_with_its_options_indexes_and_views(stored, services, target, capsys):
    scratch = services.mongo_uri("mongo-scratch")
    assert main(cli(stored, scratch, target, "--drop")) == 0, capsys.readouterr().err
    assert "verdict:  clean" in capsys.readouterr().out
    with MongoClient(stored.source_uri) as source, MongoClient(scratch) as restored:
        assert snapshot(restored, target) == snapshot(source, stored.database)
        assert not [name for name in restored[target].list_collection_names() if is_reserved(name)]


def test_a_killed_restore_leaves_only_staging_names_which_list_reports_and_the_next_restore_sweeps(
    stored, services, target, capsys
):
    scratch = services.mongo_uri("mongo-scratch")
    command = [sys.executable, "-m", "flows.restore", *cli(stored, scratch, target, "--drop")]
    child = subprocess.Popen(command, env=os.environ | AWS_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        written = 0
        deadline = time.monotonic() + 120
        while written < DOCS // 2 and child.poll() is None and time.monotonic() < deadline:
            written = sum(n for name, n in collections(scratch, target).items() if name != "orders")
            time.sleep(0.05)
        assert child.poll() is None, f"the restore ended before it could be killed: {child.stderr.read()}"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
        child.stderr.close()
    left = collections(scratch, target)
    assert seed_is_intact(scratch, target), "a killed restore must not have touched the target's collection"
    assert set(left) - {"orders"}, "the restore had written something"
    assert all(is_reserved(name) for name in set(left) - {"orders"}), f"non-staging names left: {sorted(left)}"

    assert main(["--plan", str(stored.plan), "--instance", stored.instance, "--database", stored.database, "--list",
                 "--to", scratch, "--as", target]) == 0  # fmt: skip
    listed = capsys.readouterr().out
    assert f"in database {target} (dead" in listed and "staging collections" in listed

    assert main(cli(stored, scratch, target, "--drop")) == 0
    capsys.readouterr()
    with MongoClient(stored.source_uri) as source, MongoClient(scratch) as restored:
        assert not [name for name in restored[target].list_collection_names() if is_reserved(name)]
        assert snapshot(restored, target) == snapshot(source, stored.database)


def test_the_next_drill_sweeps_what_a_killed_drill_left_and_spares_a_running_one(stored, services, gpg_key):
    scratch = services.mongo_uri("mongo-scratch")
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
    dead, running = unique("drill_dead"), unique("drill_running")
    with MongoClient(scratch) as client:
        for database, pid, run in ((dead, int(dead_pid), "deadbeef"), (running, os.getpid(), "0a0a0a0a")):
            client[database][lease_name(run)].insert_one(
                {"_id": "lease", "run": run, "host": socket.gethostname(), "pid": pid, "heartbeat": datetime.now(UTC)}
            )
            client[database][staging_name(database, run, "orders")].insert_one({"half": "written"})
        try:
            scratch_db = unique("drill_now")
            result = drill_restore(
                stored.storage,
                stored.manifest.object_key,
                Gpg(gpg_key.home),
                client,
                scratch_db,
                manifest=stored.manifest,
            )
            assert result.verdict.ok
            names = client.list_database_names()
            assert dead not in names, "a killed drill's scratch database must be swept"
            assert running in names, "a drill that is still running must be left alone"
            assert scratch_db not in names
        finally:
            client.drop_database(running)
            client.drop_database(dead)
