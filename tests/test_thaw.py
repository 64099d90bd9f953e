"""Restoring a backup that lifecycle moved to Glacier: thawed once, then restored and verified, and judged by
the stock mongorestore; a thaw that outlasts its deadline fails naming key and retrieval tier, writing nothing.

moto models Glacier (GetObject answers InvalidObjectState until RestoreObject; then HEAD shows
`x-amz-restore: ongoing-request="false"`) but finishes every thaw at once. The restore CLI talks to moto
through the test proxy, which counts RestoreObject requests and, for the deadline case, shows the thaw as
still under way, as S3 does for hours.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from pymongo import MongoClient

from flows.restore import main
from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.manifest import BackupManifest
from tests.faults.proxy import FaultyS3Proxy
from tests.helpers import assert_same, database_names, decrypt_object, drop, make_backup, storage_on, unique
from tests.planfiles import write_plan


@dataclass(frozen=True)
class ColdBackup:
    instance: str
    database: str
    source_uri: str
    bucket: str
    manifest: BackupManifest

    @property
    def key(self) -> str:
        return self.manifest.object_key


@pytest.fixture(scope="module")
def cold_backup(services, s3_client, gpg_key) -> Iterator[ColdBackup]:
    """One committed backup of a small database with two collections and an index, made by the core."""
    instance, database = unique("rs-cold"), unique("ledger")
    source_uri = services.mongo_uri("mongo-a")
    bucket = f"cold-{unique('b').replace('_', '-')}"
    s3_client.create_bucket(Bucket=bucket)
    with MongoClient(source_uri) as client:
        client[database].entries.insert_many([{"n": i, "memo": f"entry {i}" * 20} for i in range(300)])
        client[database].entries.create_index("n", unique=True)
        client[database].accounts.insert_many([{"_id": f"acct-{i}", "open": i % 2 == 0} for i in range(40)])
        manifest = make_backup(
            client,
            storage_on(services.url("moto"), bucket),
            Gpg(gpg_key.home),
            instance,
            database,
            EncryptionKeys((gpg_key.fingerprint,)),
        )
    try:
        yield ColdBackup(instance, database, source_uri, bucket, manifest)
    finally:
        drop(source_uri, database)


def to_storage_class(s3_client, bucket: str, key: str, storage_class: str) -> None:
    """What a lifecycle transition does, the way moto can: the object copied onto itself in another class
    (which also ends any earlier thaw of it)."""
    s3_client.copy_object(
        Bucket=bucket,
        Key=key,
        CopySource={"Bucket": bucket, "Key": key},
        StorageClass=storage_class,
        MetadataDirective="COPY",
    )


def plan_through(proxy: FaultyS3Proxy, cold: ColdBackup, folder: Path, gpg_key, **restore: object) -> Path:
    return write_plan(
        folder / "plan.yaml",
        instances=[{"name": cold.instance, "uri": cold.source_uri, "databases": [cold.database]}],
        bucket=cold.bucket,
        s3_endpoint=proxy.url,
        public_key_file=gpg_key.public_key_file,
        gnupghome=folder / "encrypt-home",
        drill={"scratch_uri": "mongodb://127.0.0.1:1", "gnupghome": str(gpg_key.home)},
        restore={"retrieval": "standard", "thaw_days": 2, "thaw_poll_s": 0.2, **restore},
    )


def cli(plan: Path, cold: ColdBackup, *args: str) -> list[str]:
    return ["--plan", str(plan), "--instance", cold.instance, "--database", cold.database, "--quiet", *args]


def test_a_glacier_backup_is_thawed_once_then_restored_verified_and_equal_to_mongorestore(
    cold_backup, services, s3_client, gpg_key, aws_env, mongo_tools, tmp_path, capsys
):
    to_storage_class(s3_client, cold_backup.bucket, cold_backup.key, "GLACIER")
    with pytest.raises(ClientError) as frozen:  # what a restore met before: nothing asked S3 to thaw
        s3_client.get_object(Bucket=cold_backup.bucket, Key=cold_backup.key)
    assert frozen.value.response["Error"]["Code"] == "InvalidObjectState"
    scratch, theirs = services.mongo_uri("mongo-scratch"), services.mongo_uri("mongo-b")
    ours, twin = unique("thawed"), unique("twin")
    with FaultyS3Proxy(services.url("moto")) as proxy:
        plan = plan_through(proxy, cold_backup, tmp_path, gpg_key)
        assert main(cli(plan, cold_backup, "--list")) == 0
        assert "GLACIER not thawed" in capsys.readouterr().out
        try:
            assert main(cli(plan, cold_backup, "--to", scratch, "--as", ours, "--retrieval", "bulk")) == 0
            captured = capsys.readouterr()
            assert proxy.restore_requests == [f"/{cold_backup.bucket}/{cold_backup.key}"]
            assert "GLACIER, asked for a bulk thaw for 2 days (usually 5-12 hours" in captured.err
            assert f"restore: OK s3://{cold_backup.bucket}/{cold_backup.key}" in captured.out
            assert "thaw:     GLACIER, asked for a bulk thaw" in captured.out
            assert "verdict:  clean: 2 namespaces match the manifest" in captured.out
            assert_same(cold_backup.source_uri, cold_backup.database, scratch, ours)

            # Thawed now: neither --thaw-only nor --list nor another read asks again.
            assert main(cli(plan, cold_backup, "--thaw-only")) == 0
            assert "GLACIER thawed until" in capsys.readouterr().out
            assert main(cli(plan, cold_backup, "--list")) == 0
            assert "GLACIER thawed until" in capsys.readouterr().out
            assert main(cli(plan, cold_backup, "--verify-only")) == 0
            assert len(proxy.restore_requests) == 1

            # The stock tools read the same thawed object: mongorestore's copy equals ours.
            archive = tmp_path / "thawed.archive"
            archive.write_bytes(decrypt_object(s3_client, cold_backup.bucket, cold_backup.key, gpg_key.home))
            mongo_tools.run(
                "mongorestore",
                f"--uri={theirs}",
                f"--archive={archive}",
                f"--nsFrom={cold_backup.database}.*",
                f"--nsTo={twin}.*",
                timeout=300,
            )
            assert_same(theirs, twin, scratch, ours)
        finally:
            drop(scratch, ours)
            drop(theirs, twin)


def test_a_thaw_past_its_deadline_fails_naming_key_and_retrieval_and_writes_nothing(
    cold_backup, services, s3_client, gpg_key, aws_env, tmp_path, capsys
):
    to_storage_class(s3_client, cold_backup.bucket, cold_backup.key, "GLACIER")
    scratch, target = services.mongo_uri("mongo-scratch"), unique("never")
    with FaultyS3Proxy(services.url("moto")) as proxy:
        proxy.thaw_in_progress = True  # S3 takes hours; the deadline is one second
        plan = plan_through(proxy, cold_backup, tmp_path, gpg_key, thaw_wait_h=1 / 3600)
        assert main(cli(plan, cold_backup, "--to", scratch, "--as", target)) == 1
        err = capsys.readouterr().err
        assert f"FAILED: s3://{cold_backup.bucket}/{cold_backup.key}: still GLACIER thawing after" in err
        assert "(retrieval standard, asked now; usually 3-5 hours)" in err
        assert "nothing was read or written" in err
        assert target not in database_names(scratch)
        assert len(proxy.restore_requests) == 1  # asked once, then only looked at
        # A second try while the thaw is under way asks nothing more.
        assert main(cli(plan, cold_backup, "--verify-only")) == 1
        assert "asked before" in capsys.readouterr().err
        assert len(proxy.restore_requests) == 1


def test_instant_classes_need_no_thaw_and_deep_archive_has_no_expedited(
    cold_backup, services, s3_client, gpg_key, aws_env, tmp_path, capsys
):
    with FaultyS3Proxy(services.url("moto")) as proxy:
        plan = plan_through(proxy, cold_backup, tmp_path, gpg_key)
        to_storage_class(s3_client, cold_backup.bucket, cold_backup.key, "GLACIER_IR")
        assert main(cli(plan, cold_backup, "--verify-only")) == 0
        assert "GLACIER_IR" not in capsys.readouterr().out  # no thaw line: nothing to say
        assert main(cli(plan, cold_backup, "--thaw-only")) == 0
        assert "GLACIER_IR, readable without a thaw" in capsys.readouterr().out

        to_storage_class(s3_client, cold_backup.bucket, cold_backup.key, "DEEP_ARCHIVE")
        assert main(cli(plan, cold_backup, "--thaw-only", "--retrieval", "expedited")) == 1
        assert "DEEP_ARCHIVE has no expedited retrieval (it offers: standard, bulk)" in capsys.readouterr().err
        assert proxy.restore_requests == []
