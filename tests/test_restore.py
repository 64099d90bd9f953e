"""Restore end to end against the real services, judged by the source data and by the stock tools.

One backup made by the `backup` flow is shared by this module. Our restorer must give back the source exactly
(documents byte for byte, options, indexes, views), agree with the real mongorestore restoring the same
archive into another server, and read what the real mongodump writes (plain and --gzip).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bson import SON
from pymongo import MongoClient

from flows.backup import backup
from flows.restore import main
from mongobackup.crypto import Gpg
from mongobackup.inventory import load_manifest, select_backup
from mongobackup.manifest import BackupManifest
from mongobackup.restore import RestoreOptions, restore_backup
from tests.dataset import load_rich_dataset
from tests.helpers import (
    AWS_ENV,
    assert_same,
    database_names,
    decrypt_object,
    drop,
    new_bucket,
    storage_on,
    unique,
)
from tests.planfiles import write_plan


@pytest.fixture(scope="module")
def module_aws_env() -> Iterator[None]:
    """The moto credentials in the environment for a whole module (the flows build their own S3 clients)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            patch.delenv(name, raising=False)
        for name, value in AWS_ENV.items():
            patch.setenv(name, value)
        yield


# --- one backup by the flow, for the whole module -------------------------------------------------------------


@dataclass(frozen=True)
class FlowBackup:
    plan: Path
    instance: str
    database: str
    source_uri: str
    bucket: str
    object_key: str
    manifest: BackupManifest
    gnupghome: Path


@pytest.fixture(scope="module")
def flow_backup(services, s3_client, gpg_key, prefect, module_aws_env, tmp_path_factory) -> Iterator[FlowBackup]:
    """The rich dataset (every BSON type, a 15.5 MiB document, capped, view, TTL/partial/unique indexes) backed
    up by the real backup flow; the plan names the scratch server and the home with the private key."""
    folder = tmp_path_factory.mktemp("restore")
    instance, database = unique("rs-r"), unique("shop-eu")  # a dash: one of the odd names MongoDB allows
    source_uri = services.mongo_uri("mongo-a")
    with MongoClient(source_uri) as client:
        load_rich_dataset(client, database, rows=60)
        add_strict_collection(client[database])
    bucket = new_bucket(s3_client)
    plan = write_plan(
        folder / "plan.yaml",
        instances=[{"name": instance, "uri": source_uri, "databases": [database]}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=folder / "encrypt-home",  # the backup side holds the public key only
        drill={"scratch_uri": services.mongo_uri("mongo-scratch"), "gnupghome": str(gpg_key.home)},
    )
    try:
        state = backup(plan_path=str(plan), return_state=True)
        assert state.is_completed(), state.message
        storage = storage_on(services.url("moto"), bucket)
        found = select_backup(storage, "", instance, database)
        yield FlowBackup(
            plan,
            instance,
            database,
            source_uri,
            bucket,
            found.object_key,
            load_manifest(storage, found.location),
            gpg_key.home,
        )
    finally:
        drop(source_uri, database)


def add_strict_collection(db) -> None:
    """A collection with a collation and a validator that one of its documents, older than the validator,
    fails: a restore must keep both options and still restore that document (as mongorestore would with
    --bypassDocumentValidation)."""
    db.command(SON([("create", "strict"), ("collation", {"locale": "fr", "strength": 2})]))
    db.strict.insert_many([{"_id": 1, "name": "Élodie"}, {"_id": 2, "legacy": True}])
    db.command(
        SON(
            [
                ("collMod", "strict"),
                ("validator", {"$jsonSchema": {"bsonType": "object", "required": ["name"]}}),
                ("validationLevel", "strict"),
                ("validationAction", "error"),
            ]
        )
    )


def cli(flow: FlowBackup, *args: str) -> list[str]:
    return ["--plan", str(flow.plan), "--instance", flow.instance, "--database", flow.database, "--quiet", *args]


# --- the tests ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("verification", [[], ["--read-back"]], ids=["acknowledged", "read-back"])
def test_flow_backup_restores_identically_with_a_clean_verdict(flow_backup, services, capsys, verification):
    """Both ways of verifying (README, "What verified means") pass a sound backup of every kind of collection
    (capped, a view, TTL, partial and unique indexes, a validator, a 15.5 MiB document)."""
    scratch = services.mongo_uri("mongo-scratch")
    target = unique("restored")
    try:
        assert main(cli(flow_backup, "--to", scratch, "--as", target, *verification)) == 0
        out = capsys.readouterr().out
        restored = assert_same(flow_backup.source_uri, flow_backup.database, scratch, target)
    finally:
        drop(scratch, target)
    assert f"restore: OK s3://{flow_backup.bucket}/{flow_backup.object_key}" in out
    assert "verdict:  clean: 6 namespaces match the manifest" in out  # 5 collections and the view
    assert f"database {target}" in out and "committed" in out
    assert restored["capped_log"]["options"]["capped"] is True
    assert restored["even_view"]["type"] == "view"
    assert {ix[0] for ix in restored["everything"]["indexes"]} >= {"i_unique", "date_ttl", "double_partial"}
    assert len(restored["big"]["documents"][0]) > 15 * 1024 * 1024
    assert restored["strict"]["options"]["collation"]["locale"] == "fr" and restored["strict"]["options"]["validator"]
    assert len(restored["strict"]["documents"]) == 2  # the one the validator would refuse today too


def test_verify_only_checks_everything_and_writes_nothing(flow_backup, services, capsys):
    before = database_names(services.mongo_uri("mongo-scratch"))
    assert main(cli(flow_backup, "--verify-only", "--key", flow_backup.object_key)) == 0
    out = capsys.readouterr().out
    assert "target:   (verify only)" in out
    assert "verdict:  clean: 7 namespaces match the manifest" in out  # the view and the oplog slice too
    assert database_names(services.mongo_uri("mongo-scratch")) == before


def test_our_restore_and_the_real_mongorestore_agree(flow_backup, services, s3_client, mongo_tools, tmp_path):
    """The same stored backup, restored by our restorer into one server and by mongorestore into another."""
    name = unique("twin")
    archive = tmp_path / "backup.archive"
    archive.write_bytes(decrypt_object(s3_client, flow_backup.bucket, flow_backup.object_key, flow_backup.gnupghome))
    ours, theirs = services.mongo_uri("mongo-scratch"), services.mongo_uri("mongo-b")
    try:
        mongo_tools.run(
            "mongorestore",
            f"--uri={theirs}",
            f"--archive={archive}",
            "--bypassDocumentValidation",
            f"--nsFrom={flow_backup.database}.*",
            f"--nsTo={name}.*",
            timeout=300,
        )
        storage = storage_on(services.url("moto"), flow_backup.bucket)
        with MongoClient(ours) as client:
            result = restore_backup(
                storage,
                flow_backup.object_key,
                Gpg(flow_backup.gnupghome),
                client,
                RestoreOptions(target_database=name),
                manifest=flow_backup.manifest,
            )
        assert result.verdict.ok, result.verdict.summary()
        assert_same(theirs, name, ours, name)
    finally:
        drop(ours, name)
        drop(theirs, name)


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_archives_of_the_real_mongodump_restore_identically(flow_backup, services, mongo_tools, tmp_path, capsys, gzip):
    """A stock `mongodump --archive` (no manifest, no oplog) through `--archive FILE`: verified against itself."""
    archive = tmp_path / ("dump.archive.gz" if gzip else "dump.archive")
    mongo_tools.run(
        "mongodump",
        f"--uri={flow_backup.source_uri}",
        f"--db={flow_backup.database}",
        f"--archive={archive}",
        *(["--gzip"] if gzip else []),
        timeout=300,
    )
    scratch, target = services.mongo_uri("mongo-scratch"), unique("stock")
    try:
        assert main(["--archive", str(archive), "--to", scratch, "--as", target, "--quiet"]) == 0
        assert_same(flow_backup.source_uri, flow_backup.database, scratch, target)
    finally:
        drop(scratch, target)
    assert "verdict:  clean: 6 namespaces match the archive" in capsys.readouterr().out


def test_include_exclude_and_a_non_empty_target(flow_backup, services, capsys):
    scratch, target = services.mongo_uri("mongo-scratch"), unique("partial")
    db = flow_backup.database
    try:
        assert (
            main(
                cli(
                    flow_backup,
                    "--to",
                    scratch,
                    "--as",
                    target,
                    "--include",
                    f"{db}.everything",
                    "--include",
                    f"{db}.even_view",
                )
            )
            == 0
        )
        with MongoClient(scratch) as client:
            assert sorted(client[target].list_collection_names()) == ["even_view", "everything"]
            client[target].everything.insert_one({"_id": "added after the restore"})
        capsys.readouterr()

        # Refused, naming what is in the way, and nothing is touched.
        assert main(cli(flow_backup, "--to", scratch, "--as", target, "--exclude", f"{db}.big")) == 1
        err = capsys.readouterr().err
        assert (
            f"the target already has 2 of the collections to restore ({target}.even_view, {target}.everything)" in err
            and "--drop" in err
        )
        with MongoClient(scratch) as client:
            assert client[target].everything.count_documents({"_id": "added after the restore"}) == 1

        assert main(cli(flow_backup, "--to", scratch, "--as", target, "--exclude", f"{db}.big", "--drop")) == 0
        with MongoClient(scratch) as client:
            assert sorted(client[target].list_collection_names()) == [
                "capped_log",
                "empty",
                "even_view",
                "everything",
                "strict",
            ]
            assert client[target].everything.count_documents({"_id": "added after the restore"}) == 0
    finally:
        drop(scratch, target)


def test_list_at_and_usage_errors(flow_backup, capsys):
    assert main(cli(flow_backup, "--list")) == 0
    assert capsys.readouterr().out.split()[:2] == ["committed", flow_backup.manifest.tier]

    assert main(cli(flow_backup, "--verify-only", "--at", "2000-01-01T00:00:00Z")) == 1
    assert (
        f"no committed backup of instance {flow_backup.instance}, database {flow_backup.database} at or "
        "before 2000-01-01T00:00:00+00:00" in capsys.readouterr().err
    )

    assert main(cli(flow_backup, "--verify-only", "--at", "last tuesday")) == 2
    assert "--at 'last tuesday': not an ISO-8601 time" in capsys.readouterr().err
    assert main(["--archive", "x.archive", "--plan", str(flow_backup.plan)]) == 2
    assert main(cli(flow_backup, "--no-verify", "--read-back")) == 2
    assert "--read-back is a way to verify a restore" in capsys.readouterr().err
    assert main(["--plan", str(flow_backup.plan), "--instance", "nope", "--database", "x"]) == 2
    assert "the plan has no instance named 'nope'" in capsys.readouterr().err
