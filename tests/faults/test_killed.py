"""Fault: the backup process is killed with SIGKILL at a stage: at dump, at upload, between verify and commit.
(At encrypt the gpg child is what dies: test_backup_faults.py kills it mid-stream.)

The backup runs in a child process (`tests/faults/killable.py`, the core functions the flow calls) that holds
at the stage; the test sees the stage in the bucket (an open upload without parts, one with a part, a verified
object without manifest) and kills the child by its PID. Nothing may count as a backup, status must not read
GREEN, and the next run must sweep what the dead one left and commit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from bson import Binary
from pymongo import MongoClient

from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.inventory import UncommittedBackup, select_backup
from mongobackup.plan import BackupPlan
from mongobackup.status import Health, read_status
from tests.faults.contract import BackupFault, check_backup_fault
from tests.helpers import make_backup, storage_on

REPOSITORY = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def source(services) -> Iterator[tuple[str, str]]:
    """(uri, database): about 7 MB of incompressible documents, more than one 5 MiB part once encrypted."""
    uri, database = services.mongo_uri("mongo-b"), f"killed-{uuid.uuid4().hex[:6]}"
    with MongoClient(uri) as client:
        client[database].blobs.insert_many([{"_id": n, "payload": Binary(os.urandom(256 * 1024))} for n in range(28)])
    yield uri, database
    with MongoClient(uri) as client:
        client.drop_database(database)


def killed_at(stage: str, services, bucket: str, instance: str, source: tuple[str, str], gpg_key) -> str:
    """Runs the child until it holds at `stage`, checks the stage in the bucket, kills it; the object key."""
    uri, database = source
    command = [
        sys.executable, "-m", "tests.faults.killable", stage, uri, instance, database,
        services.url("moto"), bucket, str(gpg_key.home), gpg_key.fingerprint,
    ]  # fmt: skip
    child = subprocess.Popen(command, cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        assert line[:2] == ["at", stage], f"the child did not reach {stage}: {line} {child.stderr.read()}"
        key = line[2]
        storage = storage_on(services.url("moto"), bucket)
        uploads = {u.key: u for u in storage.open_uploads()}
        if stage == "commit":
            assert uploads == {} and storage.head(key) is not None
        else:
            assert list(uploads) == [key]
            assert (uploads[key].size > 0) == (stage == "upload"), uploads[key]
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    return key


@pytest.mark.parametrize("stage", ["dump", "upload", "commit"])
def test_a_backup_killed_at_a_stage_counts_for_nothing_and_the_next_run_cleans_up(
    stage, services, bucket, gpg_key, source
):
    instance = f"rs-k9-{uuid.uuid4().hex[:4]}"
    uri, database = source
    key = killed_at(stage, services, bucket, instance, source, gpg_key)
    storage = storage_on(services.url("moto"), bucket)

    plan = BackupPlan.model_validate(
        {
            "instances": [{"name": instance, "uri": uri, "databases": [database]}],
            "storage": {"bucket": bucket},
            "encryption": {"passphrase_env": "UNUSED"},
            "tiers": {"timezone": "UTC"},
        }
    )
    report = read_status(storage, plan, datetime.now(UTC))
    [row] = report.rows
    assert row.health is Health.RED and row.database == database, row  # no backup, and none is claimed
    if stage == "commit":
        assert report.warnings == []
        with pytest.raises(UncommittedBackup, match=f"{key} has no manifest"):
            select_backup(storage, "", instance, database, key=key)
        message = f"uncommitted object {storage.where(key)}"
    else:
        [warning] = report.warnings
        assert storage.where(key) in warning  # status shows what the dead run left open
        message = warning

    def next_backup() -> None:
        with MongoClient(uri) as client:
            make_backup(client, storage, Gpg(gpg_key.home), instance, database, EncryptionKeys((gpg_key.fingerprint,)))

    check_backup_fault(
        BackupFault(
            storage,
            instance,
            database,
            message=message,
            names=[key],
            stage=stage,
            services=services,
            killed=True,
            uncommitted_object=stage == "commit",
            next_backup=next_backup,
        )
    )
