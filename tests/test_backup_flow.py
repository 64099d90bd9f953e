"""The backup flow end to end, against the real services, judged by the stock tools.

The stored object is opened with the `gpg` and `zstd` command-line tools and restored by the real
mongorestore (under wine) into another server: a backup that only our own code can read would prove nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time

import pytest
from pymongo import MongoClient

from flows.backup import backup, main
from mongobackup.archive import ArchiveReader
from mongobackup.keys import manifest_key_for
from tests.dataset import load_rich_dataset, snapshot
from tests.helpers import (
    decrypt_object,
    influx_points,
    run_artifact_rows,
    stock_mongodump_script,
    stored_keys,
    unique,
    vm_export,
)
from tests.planfiles import write_plan

pytestmark = pytest.mark.usefixtures("aws_env")  # the flow builds its S3 client from the default chain


@pytest.fixture
def rich_database(services):
    name = unique("shop-eu_2026")  # dashes and underscores: the odd names MongoDB allows
    with MongoClient(services.mongo_uri("mongo-a")) as client:
        features = load_rich_dataset(client, name)
        yield name, features
        client.drop_database(name)


def test_rich_dataset_restores_identically_with_the_real_mongorestore(
    services, mongo_tools, s3_client, bucket, gpg_key, prefect, tmp_path, rich_database
):
    database, features = rich_database
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": "rs-a", "uri": services.mongo_uri("mongo-a"), "databases": [database]}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "encrypt-home",
        influx_url=services.url("influxdb"),
    )

    state = backup(plan_path=str(plan), return_state=True)
    assert state.is_completed(), state.message

    keys = stored_keys(s3_client, bucket)
    assert len(keys) == 2, keys  # the object and its manifest, nothing else
    object_key, manifest_key = sorted(keys, key=lambda k: k.endswith(".manifest.json"))
    assert object_key.endswith(".archive.zst.gpg") and f"/rs-a/{database}/" in object_key
    manifest = json.loads(s3_client.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    stored = s3_client.get_object(Bucket=bucket, Key=object_key)["Body"].read()
    assert manifest["sha256"] == hashlib.sha256(stored).hexdigest()
    assert manifest["sizes"]["encrypted_bytes"] == len(stored)
    assert manifest["encryption"]["recipients"] == [gpg_key.fingerprint]
    assert manifest["instance"] == "rs-a" and manifest["database"] == database
    assert manifest["replica_set"] == "secantus"  # SecantusDB's one-member replica set
    counts = {ns["collection"]: ns["documents"] for ns in manifest["namespaces"]}
    assert counts["everything"] == 200 and counts["big"] == 1 and counts["empty"] == 0
    assert counts["capped_log"] == 50 and counts["even_view"] == 0

    archive = tmp_path / "backup.archive"
    archive.write_bytes(decrypt_object(s3_client, bucket, object_key, gpg_key.home))
    assert manifest["sizes"]["raw_bytes"] == archive.stat().st_size
    mongo_tools.run("mongorestore", f"--uri={services.mongo_uri('mongo-scratch')}", f"--archive={archive}", "--drop")

    with (
        MongoClient(services.mongo_uri("mongo-a")) as source,
        MongoClient(services.mongo_uri("mongo-scratch")) as restored,
    ):
        try:
            expected, actual = snapshot(source, database), snapshot(restored, database)
            assert sorted(actual) == sorted(expected)
            for name in expected:
                assert actual[name] == expected[name], f"collection {name} differs after restore"
            assert actual["capped_log"]["options"]["capped"] is True
            assert actual["even_view"]["type"] == "view"
            assert len(actual["big"]["documents"][0]) > 15 * 1024 * 1024
        finally:
            restored.drop_database(database)
    # SecantusDB refuses text indexes (features["text_index"] is False there), so this run cannot show one
    # surviving a backup; on a server that takes one, the snapshot comparison above covers it like the rest.

    completed = influx_points(services, "instance_backup_completed", f"\"database\"='{database}'")
    assert len(completed) == 1
    assert completed[0]["value"] is True and completed[0]["docs"] == manifest_docs(manifest)
    assert completed[0]["bytes"] == len(stored) and completed[0]["tier"] == manifest["tier"]


def manifest_docs(manifest: dict) -> int:
    return sum(ns["documents"] for ns in manifest["namespaces"] if ns["type"] != "oplog")


def test_instance_event_and_tier_prefix_from_at(services, s3_client, bucket, gpg_key, prefect, tmp_path):
    databases = [unique("alpha"), unique("beta")]
    instance = unique("rs")
    with MongoClient(services.mongo_uri("mongo-b")) as client:
        for n, name in enumerate(databases):
            client[name].things.insert_many([{"n": i} for i in range(n * 10 + 5)])
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": instance, "uri": services.mongo_uri("mongo-b"), "databases": databases}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "home",
        influx_url=services.url("influxdb"),
    )
    # 1 January, 00:30 in London, is still 31 December in some zones: the plan's zone decides.
    state = backup(plan_path=str(plan), at="2027-01-01T00:30:00+00:00", return_state=True)
    assert state.is_completed(), state.message
    keys = stored_keys(s3_client, bucket)
    assert len(keys) == 4
    assert all(k.startswith(f"yearly/{instance}/") for k in keys)
    assert {k.split("/")[2] for k in keys} == set(databases)

    bare = influx_points(services, "instance_backup_completed", f"\"instance\"='{instance}' AND \"database\" = ''")
    assert len(bare) == 1 and bare[0]["value"] is True
    assert bare[0]["tier"] is None and bare[0]["bytes"] is None  # exactly `instance=<rs> value=true`


def test_dry_run_lists_planned_backups_and_touches_nothing(services, s3_client, bucket, tmp_path, capsys):
    database = unique("dry")
    with MongoClient(services.mongo_uri("mongo-b")) as client:
        client[database].c.insert_one({"x": 1})
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": "rs-b", "uri": services.mongo_uri("mongo-b"), "databases": "all", "exclude": ["test-*"]}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        encryption={"passphrase_env": "UNUSED_IN_DRY_RUN"},
    )
    assert main(["--plan", str(plan), "--dry-run", "--at", "2026-11-30T12:00:00Z"]) == 0
    lines = capsys.readouterr().out.splitlines()
    mine = [line for line in lines if f" {database} " in line]
    assert mine == [f"weekly rs-b {database} weekly/rs-b/{database}/20261130T120000Z-dryrun.archive.zst.gpg"]
    assert not any(" admin " in line or " local " in line or " config " in line for line in lines)
    assert stored_keys(s3_client, bucket) == []


def test_events_through_the_v2_write_api_and_the_run_artifact(services, s3_client, bucket, gpg_key, prefect, tmp_path):
    instance, database = unique("rs-v2"), unique("vm")
    with MongoClient(services.mongo_uri("mongo-b")) as client:
        client[database].c.insert_many([{"n": n} for n in range(7)])
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": instance, "uri": services.mongo_uri("mongo-b"), "databases": [database]}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "home",
        notify={"influxdb": {"api": "v2", "url": services.url("victoria"), "org": "acme", "bucket": "backups"}},
    )
    state = backup(plan_path=str(plan), return_state=True)
    assert state.is_completed(), state.message

    series = vm_export(
        services.url("victoria"),
        f'{{__name__=~"instance_backup_completed_.*",instance="{instance}"}}',
        expected=5,
        timeout=30,
    )
    assert len(series) >= 5, series
    by_metric = {(s["metric"]["__name__"], s["metric"].get("database")): s["values"] for s in series}
    assert by_metric[("instance_backup_completed_docs", database)] == [7]
    assert by_metric[("instance_backup_completed_value", database)] == [1]
    assert by_metric[("instance_backup_completed_value", None)] == [1]  # the bare per-instance point

    rows = run_artifact_rows(state.state_details.flow_run_id)
    assert [(r["instance"], r["database"], r["state"], r["docs"]) for r in rows] == [
        (instance, database, "Completed", 7)
    ]
    assert f"/{instance}/{database}/" in rows[0]["key"] and rows[0]["key"].endswith(".archive.zst.gpg")


def test_stock_mongodump_engine_feeds_the_same_pipeline(
    services, mongo_tools, s3_client, bucket, gpg_key, prefect, tmp_path, monkeypatch
):
    # The stock mongodump first on PATH, as a user who has it installed would have it (here: under wine).
    wrapper = stock_mongodump_script(mongo_tools, tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")

    database = unique("stock")
    with MongoClient(services.mongo_uri("mongo-b")) as client:
        client[database].orders.insert_many([{"n": n, "s": "x" * (n % 50)} for n in range(300)])
        client[database].orders.create_index("n", unique=True)
        client[database].command({"create": "big", "viewOn": "orders", "pipeline": [{"$match": {"n": {"$gt": 9}}}]})
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[
            {"name": "rs-b", "uri": services.mongo_uri("mongo-b"), "databases": [database], "engine": "mongodump"}
        ],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "home",
    )
    state = backup(plan_path=str(plan), return_state=True)
    assert state.is_completed(), state.message

    object_key = next(k for k in stored_keys(s3_client, bucket) if k.endswith(".archive.zst.gpg"))
    manifest = json.loads(s3_client.get_object(Bucket=bucket, Key=manifest_key_for(object_key))["Body"].read())
    records = {ns["collection"]: ns for ns in manifest["namespaces"]}
    assert records["orders"]["documents"] == 300 and records["big"]["type"] == "view"
    assert {ix["name"] for ix in records["orders"]["indexes"]} == {"_id_", "n_1"}
    assert manifest["replica_set"] == "secantus"
    reader = ArchiveReader(io.BytesIO(decrypt_object(s3_client, bucket, object_key, gpg_key.home)))
    assert reader.header.tool_version == "100.3.1"  # written by the stock tool, stored by our pipeline


def test_stock_mongodump_failure_names_instance_and_database(
    services, s3_client, bucket, gpg_key, prefect, tmp_path, monkeypatch
):
    wrapper = tmp_path / "bin" / "mongodump"
    wrapper.parent.mkdir()
    wrapper.write_text('#!/bin/sh\necho "Failed: cannot connect to mongodb://u:pw@host" >&2\nexit 1\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    database = unique("dumpfails")
    with MongoClient(services.mongo_uri("mongo-b")) as client:
        client[database].c.insert_one({"x": 1})
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[
            {"name": "rs-b", "uri": services.mongo_uri("mongo-b"), "databases": [database], "engine": "mongodump"}
        ],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "home",
    )
    state = backup(plan_path=str(plan), return_state=True)
    assert state.is_failed() and f"rs-b/{database}" in state.message
    assert stored_keys(s3_client, bucket) == []
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_chains_are_submitted_as_lanes_free_up(services, s3_client, bucket, gpg_key, prefect, tmp_path, monkeypatch):
    """Memory flat in the number of databases: with one lane, at most two databases' chains (one running, one
    waiting) are in flight at any time, however many databases the run backs up; all of them are stored."""
    import flows.backup as flow_module

    databases = [unique(f"lane{n}") for n in range(5)]
    with MongoClient(services.mongo_uri("mongo-b")) as client:
        for name in databases:
            client[name].things.insert_one({"name": name})
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": unique("rs"), "uri": services.mongo_uri("mongo-b"), "databases": databases}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "home",
    )
    in_flight, most = [0], [0]
    submit, collect = flow_module._submit_chain, flow_module._collect

    def counted_submit(*args, **kwargs):
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        return submit(*args, **kwargs)

    def counted_collect(chain):
        in_flight[0] -= 1
        return collect(chain)

    monkeypatch.setattr(flow_module, "_submit_chain", counted_submit)
    monkeypatch.setattr(flow_module, "_collect", counted_collect)
    try:
        state = backup(plan_path=str(plan), return_state=True)
    finally:
        with MongoClient(services.mongo_uri("mongo-b")) as client:
            for name in databases:
                client.drop_database(name)
    assert state.is_completed(), state.message
    assert len(stored_keys(s3_client, bucket)) == 2 * len(databases)  # objects and manifests
    assert most[0] == 2 and in_flight[0] == 0


def test_only_the_transfer_carries_the_instance_tag(services, s3_client, bucket, gpg_key, prefect, tmp_path):
    """`mongo-instance:<name>` is for a tag concurrency limit on the instance's load: only the transfer reads the
    instance. Every tagged task costs the server a concurrency call (a write that SQLite may refuse as locked,
    retried seconds later), so verify, commit and notify carry no tag."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    database, instance = unique("tagged"), unique("rs")
    with MongoClient(services.mongo_uri("mongo-a")) as client:
        client[database].things.insert_one({"n": 1})
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": instance, "uri": services.mongo_uri("mongo-a"), "databases": [database]}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "home",
    )
    try:
        state = backup(plan_path=str(plan), return_state=True)
    finally:
        with MongoClient(services.mongo_uri("mongo-a")) as client:
            client.drop_database(database)
    assert state.is_completed(), state.message
    flow_run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    tags: dict[str, set[str]] = {}
    with get_client(sync_client=True) as client:
        for _ in range(60):  # task runs reach the server as events, recorded shortly after the flow returns
            task_runs = client.read_task_runs(flow_run_filter=flow_run_filter)
            tags = {r.name.split(" ")[0]: set(r.tags) for r in task_runs if f"{instance}/{database}" in r.name}
            if len(tags) == 4:
                break
            time.sleep(0.5)
    assert tags == {
        "transfer": {f"mongo-instance:{instance}"},
        "verify": set(),
        "commit": set(),
        "notify": set(),
    }
