"""Status and the watchdog: RED without a backup, GREEN after a real run of the backup flow, RED again 30 h
later, and the watchdog's `instance_backup_stale` event read back from InfluxDB 1.6 with InfluxQL.

Time is injected (`--at`, `now`), never slept through. Which databases are expected is checked on a plan and
a listing in memory; everything that touches storage runs against moto.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import MongoClient

from flows.backup import backup
from flows.status import main as status_main
from flows.watchdog import watchdog
from mongobackup.inventory import build_inventory
from mongobackup.keys import BackupLocation
from mongobackup.manifest import BackupManifest
from mongobackup.plan import BackupPlan
from mongobackup.status import Health, judge, read_status, stale_events
from mongobackup.storage import ObjectInfo
from mongobackup.tiers import Tier
from tests.helpers import fake_manifest, influx_points, unique
from tests.planfiles import write_plan

NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)


def plan_of(instances: list[dict], max_age_h: float | None = None) -> BackupPlan:
    data = {
        "instances": instances,
        "storage": {"bucket": "status-test"},
        "encryption": {"passphrase_env": "UNUSED"},
        "tiers": {"timezone": "UTC"},
    }
    if max_age_h is not None:
        data["status"] = {"max_age_h": max_age_h}
    return BackupPlan.model_validate(data)


class Bucket:
    """A listing and its manifests in memory: what `judge` reads."""

    def __init__(self) -> None:
        self.listing: list[ObjectInfo] = []
        self.manifests: dict[str, BackupManifest | Exception] = {}

    def add(
        self,
        instance: str,
        database: str,
        hours_ago: float,
        *,
        tier: Tier = Tier.DAILY,
        manifest: bool = True,
        obj: bool = True,
        broken: Exception | None = None,
    ) -> BackupLocation:
        taken = NOW - timedelta(hours=hours_ago + 1)
        location = BackupLocation("", tier, instance, database, taken, uuid.uuid4().hex[:8])
        if obj:
            self.listing.append(ObjectInfo(location.object_key, 1234, "etag", {}))
        if manifest:
            self.listing.append(ObjectInfo(location.manifest_key, 900, "etag", {}))
            self.manifests[location.manifest_key] = broken or fake_manifest(
                location, finished_at=NOW - timedelta(hours=hours_ago), size=1234, raw_bytes=3 * 1234
            )
        return location

    def read(self, backup) -> BackupManifest:
        found = self.manifests[backup.manifest_key]
        if isinstance(found, Exception):
            raise found
        return found

    def judge(self, plan: BackupPlan, max_age_h: float | None = None):
        return judge(plan, build_inventory(self.listing, ""), self.read, NOW, max_age_h, bucket="status-test")


def rows(report) -> dict[tuple[str, str], object]:
    return {(row.instance, row.database): row for row in report.rows}


def test_expected_databases_follow_the_plan_and_the_bucket():
    plan = plan_of(
        [
            {"name": "rs-list", "uri": "mongodb://h", "databases": ["a", "b"]},
            {"name": "rs-all", "uri": "mongodb://h", "databases": "all", "exclude": ["tmp_*"]},
            {"name": "rs-empty", "uri": "mongodb://h"},
        ]
    )
    bucket = Bucket()
    bucket.add("rs-list", "a", 2)
    bucket.add("rs-list", "c", 2)  # not in the list (any more): not watched
    bucket.add("rs-all", "x", 3)
    bucket.add("rs-all", "y", 40)  # dropped or failing: RED until excluded
    bucket.add("rs-all", "tmp_1", 50)  # excluded by the plan
    bucket.add("rs-all", "admin", 50)  # a system database, backed up once when it was listed
    bucket.add("rs-gone", "z", 90)  # an instance no longer in the plan
    report = bucket.judge(plan)
    found = rows(report)
    assert list(found) == [("rs-list", "a"), ("rs-list", "b"), ("rs-all", "x"), ("rs-all", "y"), ("rs-empty", "*")]
    assert [row.health for row in report.rows] == [Health.GREEN, Health.RED, Health.GREEN, Health.RED, Health.RED]
    assert found[("rs-list", "b")].reason == "no committed backup in the bucket"
    assert found[("rs-empty", "*")].reason == "no committed backup of any database in the bucket"
    assert found[("rs-all", "y")].age_h == 40.0 and "more than 26 h" in found[("rs-all", "y")].reason
    assert not report.ok and len(report.red) == 3

    events = stale_events(report)
    assert [(e.tags, e.fields) for e in events] == [
        ({"instance": "rs-list", "database": "b"}, {"value": 1}),
        ({"instance": "rs-all", "database": "y"}, {"value": 1, "age_h": 40.0}),
        ({"instance": "rs-empty"}, {"value": 1}),  # no database tag: the instance has no backup at all
    ]
    assert all(e.time == NOW for e in events)


def test_the_newest_backup_of_any_tier_counts_and_the_threshold_is_inclusive():
    plan = plan_of([{"name": "rs", "uri": "mongodb://h", "databases": ["d"]}])
    bucket = Bucket()
    bucket.add("rs", "d", 100, tier=Tier.YEARLY)
    newest = bucket.add("rs", "d", 26, tier=Tier.WEEKLY)
    bucket.add("rs", "d", 10, manifest=False)  # newer, but never committed: does not count
    row = bucket.judge(plan).rows[0]
    assert (row.health, row.age_h, row.tier, row.object_key) == (Health.GREEN, 26.0, "weekly", newest.object_key)
    assert row.size_bytes == 1234 and row.finished_at == NOW - timedelta(hours=26)
    assert bucket.judge(plan, max_age_h=25.5).rows[0].health is Health.RED  # the CLI's --max-age-h
    strict = plan_of([{"name": "rs", "uri": "mongodb://h", "databases": ["d"]}], max_age_h=2)  # status.max_age_h
    assert bucket.judge(strict).max_age_h == 2 and bucket.judge(strict).rows[0].health is Health.RED


def test_a_broken_newest_commit_is_red_and_named():
    plan = plan_of([{"name": "rs", "uri": "mongodb://h", "databases": ["bad", "lost"]}])
    bucket = Bucket()
    bucket.add("rs", "bad", 1, broken=ValueError("manifest x: format_version 9 is not one this tool reads"))
    lost = bucket.add("rs", "lost", 1, obj=False)
    found = rows(bucket.judge(plan))
    assert found[("rs", "bad")].health is Health.RED and "format_version 9" in found[("rs", "bad")].reason
    assert found[("rs", "lost")].reason == f"newest manifest {lost.manifest_key} has no object beside it"


def stale_points(services, instance: str) -> list[dict]:
    # Points of the watchdog may lie in the future (an injected `at`): ask for a range around now.
    return influx_points(
        services, "instance_backup_stale", f"\"instance\" = '{instance}' AND time > now() - 7d AND time < now() + 7d"
    )


def run_status(capsys, *args: str) -> tuple[int, dict]:
    code = status_main([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_red_without_a_backup_green_after_a_run_red_at_30_h_and_the_watchdog_event(
    services, s3_client, bucket, gpg_key, prefect, aws_env, tmp_path, capsys
):
    instance, database = unique("rs-st"), unique("st")
    with MongoClient(services.mongo_uri("mongo-b")) as client:
        client[database].things.insert_many([{"n": n} for n in range(20)])
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": instance, "uri": services.mongo_uri("mongo-b"), "databases": [database]}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "home",
        influx_url=services.url("influxdb"),
    )

    code, before = run_status(capsys, "--plan", str(plan))
    assert code == 1 and before["ok"] is False
    assert [(r["instance"], r["database"], r["health"]) for r in before["rows"]] == [(instance, database, "RED")]

    state = backup(plan_path=str(plan), return_state=True)
    assert state.is_completed(), state.message
    code, after = run_status(capsys, "--plan", str(plan))
    row = after["rows"][0]
    assert code == 0 and row["health"] == "GREEN" and 0 <= row["age_h"] < 1
    stored = s3_client.head_object(Bucket=bucket, Key=row["object_key"])
    assert row["size_bytes"] == stored["ContentLength"] and row["tier"] in {t.value for t in Tier}

    later = (datetime.fromisoformat(row["finished_at"]) + timedelta(hours=30)).isoformat()
    code, stale = run_status(capsys, "--plan", str(plan), "--at", later)
    assert code == 1 and stale["rows"][0]["health"] == "RED" and stale["rows"][0]["age_h"] == 30.0
    assert status_main(["--plan", str(plan), "--at", later]) == 1
    assert "30.0" in capsys.readouterr().out  # the table for people shows the age too

    assert stale_points(services, instance) == []
    watched = watchdog(plan_path=str(plan), at=later, emit=True, return_state=True)
    assert watched.is_failed() and f"{instance}/{database}" in watched.message
    points = stale_points(services, instance)
    assert len(points) == 1
    assert points[0]["database"] == database and points[0]["value"] == 1 and points[0]["age_h"] == 30.0
    assert points[0]["time"].startswith(later[:19].replace("+00:00", ""))

    fresh = watchdog(plan_path=str(plan), return_state=True)  # now: GREEN, no new event
    assert fresh.is_completed(), fresh.message
    assert len(stale_points(services, instance)) == 1


def test_watchdog_reports_an_instance_that_never_backed_up(services, bucket, prefect, aws_env, tmp_path):
    instance = unique("rs-never")
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": instance, "uri": "mongodb://127.0.0.1:1"}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        encryption={"passphrase_env": "UNUSED"},
        influx_url=services.url("influxdb"),
    )
    assert watchdog(plan_path=str(plan), return_state=True).is_failed()
    points = stale_points(services, instance)
    # .get: on a fresh server, no point of the measurement has had a database tag or age_h yet
    assert len(points) == 1 and points[0].get("database") is None and points[0].get("age_h") is None


def test_status_cli_exit_codes_for_a_bad_plan_and_a_missing_bucket(services, aws_env, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("instances: []\n")
    assert status_main(["--plan", str(bad)]) == 2
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": "rs", "uri": "mongodb://127.0.0.1:1"}],
        bucket="no-such-bucket-st1",
        s3_endpoint=services.url("moto"),
        encryption={"passphrase_env": "UNUSED"},
    )
    assert status_main(["--plan", str(plan)]) == 3
    assert "no-such-bucket-st1" in capsys.readouterr().err


@pytest.mark.parametrize("max_age", ["0", "-1"])
def test_status_cli_refuses_a_non_positive_threshold(tmp_path, max_age):
    with pytest.raises(SystemExit) as exited:
        status_main(["--plan", str(tmp_path / "p.yaml"), "--max-age-h", max_age])
    assert exited.value.code == 2


def test_a_manifest_in_the_bucket_that_is_not_json_or_describes_another_object_is_red(
    services, bucket, storage, s3_client, aws_env
):
    plan = plan_of([{"name": "rs", "uri": "mongodb://h", "databases": ["garbled", "swapped"]}])
    garbled = BackupLocation("", Tier.DAILY, "rs", "garbled", NOW - timedelta(hours=2), "aaaa1111")
    swapped = BackupLocation("", Tier.DAILY, "rs", "swapped", NOW - timedelta(hours=2), "bbbb2222")
    for location in (garbled, swapped):
        s3_client.put_object(Bucket=bucket, Key=location.object_key, Body=b"x")
    s3_client.put_object(Bucket=bucket, Key=garbled.manifest_key, Body=b"{not json")
    storage.put_json(
        swapped.manifest_key,
        fake_manifest(garbled, finished_at=NOW - timedelta(hours=1), size=1234, raw_bytes=3 * 1234).to_json_dict(),
    )

    found = rows(read_status(storage, plan, NOW))
    assert found[("rs", "garbled")].health is Health.RED and "not valid JSON" in found[("rs", "garbled")].reason
    assert found[("rs", "swapped")].health is Health.RED and "describes" in found[("rs", "swapped")].reason
