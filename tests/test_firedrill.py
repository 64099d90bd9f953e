"""The fire drill under Prefect against two instances: every newest backup restored into the scratch server,
verified, dropped again; one event and one artifact row per database; a stale or corrupt backup fails the run.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from pymongo import MongoClient

from flows.backup import backup
from flows.firedrill import firedrill
from flows.firedrill import main as firedrill_main
from flows.resources import DrillNotConfigured, RunResources
from mongobackup.inventory import list_backups, newest_by_database
from mongobackup.plan import load_plan
from tests.helpers import database_names, influx_points, run_artifact_rows, storage_on, unique
from tests.planfiles import write_plan


def markdown_of(flow_run_id) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), type=ArtifactFilterType(any_=["markdown"])
            )
        )
    assert len(artifacts) == 1
    return artifacts[0].data


def drill_databases(scratch_uri: str) -> list[str]:
    return [name for name in database_names(scratch_uri) if name.startswith("drill_")]


def latest_events(services, instances: list[str]) -> dict[str, dict]:
    where = " OR ".join(f"\"instance\"='{name}'" for name in instances)
    points = influx_points(services, "instance_restore_drill", f"({where})")
    latest: dict[str, dict] = {}
    for point in sorted(points, key=lambda p: p["time"]):
        latest[point["database"]] = point
    return latest


def test_the_drill_restores_every_newest_backup_and_fails_on_a_stale_or_corrupt_one(
    services, s3_client, bucket, gpg_key, prefect, aws_env, tmp_path
):
    scratch = services.mongo_uri("mongo-scratch")
    first, second = unique("rs-d1"), unique("rs-d2")
    layout = {first: ("mongo-a", [unique("orders"), unique("users")]), second: ("mongo-b", [unique("audit")])}
    for service, names in layout.values():
        with MongoClient(services.mongo_uri(service)) as client:
            for n, name in enumerate(names):
                client[name].things.insert_many([{"n": i, "pad": "x" * 200} for i in range(50 + n)])
                client[name].things.create_index("n", unique=True)
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[
            {"name": instance, "uri": services.mongo_uri(service), "databases": names}
            for instance, (service, names) in layout.items()
        ],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "encrypt-home",
        influx_url=services.url("influxdb"),
        drill={"scratch_uri": scratch, "gnupghome": str(gpg_key.home), "max_age_h": 26},
    )
    try:
        assert backup(plan_path=str(plan), return_state=True).is_completed()
        before = drill_databases(scratch)

        state = firedrill(plan_path=str(plan), return_state=True)
        assert state.is_completed(), state.message
        assert state.message == "3 backups restored and verified"
        rows = run_artifact_rows(state.state_details.flow_run_id)
        assert sorted((r["instance"], r["database"], r["state"], r["docs"]) for r in rows) == sorted(
            (instance, name, "Passed", 50 + n)
            for instance, (_, names) in layout.items()
            for n, name in enumerate(names)
        )
        assert {r["verdict"] for r in rows} == {"clean: 1 namespace matches the manifest"}
        assert all(r["key"].endswith(".archive.zst.gpg") and r["age_h"] < 1 for r in rows)
        markdown = markdown_of(state.state_details.flow_run_id)
        assert markdown.count("| Passed |") == 3
        events = latest_events(services, [first, second])
        assert sorted(events) == sorted(layout[first][1] + layout[second][1])
        assert all(e["value"] is True and e["backup_age_h"] < 1 and e["bytes"] > 0 for e in events.values())
        assert {e["docs"] for e in events.values()} == {50, 51}
        assert drill_databases(scratch) == before  # every scratch database dropped again

        # Corrupt the newest backup of one database and make another one's newest backup stale.
        storage = storage_on(services.url("moto"), bucket)
        newest = newest_by_database(list_backups(storage, "", first))
        corrupt = newest[layout[first][1][1]].object_key
        stored = bytearray(s3_client.get_object(Bucket=bucket, Key=corrupt)["Body"].read())
        stored[len(stored) // 2] ^= 0xFF
        s3_client.put_object(Bucket=bucket, Key=corrupt, Body=bytes(stored))
        stale = newest_by_database(list_backups(storage, "", second))[layout[second][1][0]].manifest_key
        manifest = json.loads(s3_client.get_object(Bucket=bucket, Key=stale)["Body"].read())
        manifest["finished_at"] = (datetime.fromisoformat(manifest["finished_at"]) - timedelta(hours=72)).isoformat()
        storage.put_json(stale, manifest)

        state = firedrill(plan_path=str(plan), return_state=True)
        assert state.is_failed()
        assert "2 of 3 drills failed" in state.message
        rows = {r["database"]: r for r in run_artifact_rows(state.state_details.flow_run_id)}
        good, broken = layout[first][1]
        assert rows[good]["state"] == "Passed"
        assert rows[broken]["state"] == "Failed" and rows[broken]["verdict"] == "restore failed"
        assert f"s3://{bucket}/{corrupt}" in rows[broken]["error"]
        old = rows[layout[second][1][0]]
        assert old["state"] == "Failed" and old["error"].startswith("stale: the newest backup is 72.")
        assert old["verdict"].startswith("clean: ")  # it does restore; it is just too old
        events = latest_events(services, [first, second])
        assert events[good]["value"] is True
        assert events[broken]["value"] is False and events[old["database"]]["value"] is False
        assert events[old["database"]]["backup_age_h"] >= 72
        assert drill_databases(scratch) == before  # dropped even when the restore failed
    finally:
        for service, names in layout.values():
            with MongoClient(services.mongo_uri(service)) as client:
                for name in names:
                    client.drop_database(name)


def test_a_plan_without_a_drill_section_is_refused(tmp_path, capsys):
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": "rs", "uri": "mongodb://127.0.0.1:1"}],
        bucket="some-bucket",
        s3_endpoint="http://127.0.0.1:1",
        encryption={"passphrase_env": "X"},
    )
    with pytest.raises(DrillNotConfigured, match="the plan has no drill section"):
        RunResources(load_plan(plan)).drill  # noqa: B018 - raises
    (tmp_path / "bad.yaml").write_text("drill: {scratch_uri: 'http://nope'}\n")
    assert firedrill_main(["--plan", str(tmp_path / "bad.yaml")]) == 2
    assert "drill.scratch_uri" in capsys.readouterr().err
