"""The drill across tiers: the newest backup of every database and one archived backup per tier, some of them in
Glacier. Before the thaw run the archived ones fail by name; the thaw run (the day before the drill) asks for
their thaws; then every tier restores. Rows, events and artifacts carry the tier, the backup's age and the time
of each stage.

Backups are made by the core (any tier, any scheduled time), moved to GLACIER / DEEP_ARCHIVE the way moto can
(a copy onto itself with another storage class), and drilled by the real flow under Prefect.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pymongo import MongoClient

from flows.firedrill import firedrill
from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.tiers import Tier
from tests.helpers import influx_points, make_backup, run_artifact_rows, storage_on, unique
from tests.planfiles import write_plan

STAGES = ("thaw_wait_s", "download_s", "restore_s", "verify_s", "total_s")


def back_up(client, storage, gpg_key, instance: str, database: str, tier: Tier, days_ago: float) -> str:
    """A committed backup of `tier`, scheduled `days_ago`; its object key."""
    when = datetime.now(UTC) - timedelta(days=days_ago)
    keys = EncryptionKeys((gpg_key.fingerprint,))
    return make_backup(client, storage, Gpg(gpg_key.home), instance, database, keys, when=when, tier=tier).object_key


def archive(s3_client, bucket: str, key: str, storage_class: str) -> None:
    s3_client.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key}, StorageClass=storage_class)


def test_the_drill_proves_every_tier_and_fails_by_name_what_is_not_thawed(
    services, s3_client, bucket, gpg_key, prefect, aws_env, tmp_path
):
    source = services.mongo_uri("mongo-a")
    instance, shop, audit = unique("rs-tiers"), unique("shop"), unique("audit")
    storage = storage_on(services.url("moto"), bucket)
    with MongoClient(source) as client:
        client[shop].orders.insert_many([{"n": i, "item": "x" * 100} for i in range(120)])
        client[audit].log.insert_many([{"n": i} for i in range(30)])
        keys = {
            (shop, "daily"): back_up(client, storage, gpg_key, instance, shop, Tier.DAILY, 0.1),
            (shop, "weekly-old"): back_up(client, storage, gpg_key, instance, shop, Tier.WEEKLY, 36),
            (shop, "weekly-new"): back_up(client, storage, gpg_key, instance, shop, Tier.WEEKLY, 1),
            (shop, "monthly"): back_up(client, storage, gpg_key, instance, shop, Tier.MONTHLY, 32),
            (shop, "quarterly"): back_up(client, storage, gpg_key, instance, shop, Tier.QUARTERLY, 63),
            (shop, "yearly"): back_up(client, storage, gpg_key, instance, shop, Tier.YEARLY, 335),
            (audit, "daily"): back_up(client, storage, gpg_key, instance, audit, Tier.DAILY, 0.1),
            (audit, "weekly-old"): back_up(client, storage, gpg_key, instance, audit, Tier.WEEKLY, 30),
        }
    # What lifecycle has done by now: the old ones are archived, the recent ones are not.
    for name, storage_class in [
        ((shop, "weekly-old"), "GLACIER"),
        ((audit, "weekly-old"), "GLACIER"),
        ((shop, "monthly"), "GLACIER"),
        ((shop, "quarterly"), "DEEP_ARCHIVE"),
        ((shop, "yearly"), "GLACIER"),
    ]:
        archive(s3_client, bucket, keys[name], storage_class)
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": instance, "uri": source, "databases": [shop, audit]}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "encrypt-home",
        influx_url=services.url("influxdb"),
        drill={"scratch_uri": services.mongo_uri("mongo-scratch"), "gnupghome": str(gpg_key.home)},
        restore={"retrieval": "bulk", "thaw_days": 2},
    )
    drill_at = datetime.now(UTC).isoformat()
    try:
        # 1. No thaw asked yet: the newest backups restore, every archived pick fails, by name.
        state = firedrill(plan_path=str(plan), drill_at=drill_at, return_state=True)
        assert state.is_failed()
        rows = run_artifact_rows(state.state_details.flow_run_id)
        assert sorted(r["tier"] for r in rows) == ["daily", "daily", "monthly", "quarterly", "weekly", "yearly"]
        for row in rows:
            assert row["age_h"] is not None and row["pick"]
            if row["tier"] == "daily":
                assert row["state"] == "Passed" and row["pick"] == "newest", row
            else:
                assert row["state"] == "Failed" and "not thawed" in row["error"], row
                assert row["key"] in row["error"] and row["tier"] in state.message
        by_tier = {r["tier"]: r for r in rows if r["tier"] != "daily"}
        assert by_tier["monthly"]["key"] == keys[(shop, "monthly")]
        assert by_tier["quarterly"]["key"] == keys[(shop, "quarterly")]
        assert "DEEP_ARCHIVE not thawed" in by_tier["quarterly"]["error"]
        assert by_tier["yearly"]["age_h"] > 335 * 24 - 1
        assert by_tier["weekly"]["pick"] == "oldest weekly"
        assert by_tier["weekly"]["key"] in (keys[(shop, "weekly-old")], keys[(audit, "weekly-old")])

        # 2. The thaw run, the day before the drill: asks for the archived picks' thaws, once each.
        state = firedrill(plan_path=str(plan), drill_at=drill_at, thaw_only=True, return_state=True)
        assert state.is_completed(), state.message
        assert state.message.startswith("4 thaws asked")
        thaws = run_artifact_rows(state.state_details.flow_run_id)
        assert sorted(r["tier"] for r in thaws if r["asked"]) == ["monthly", "quarterly", "weekly", "yearly"]
        assert all("bulk" in r["thaw"] for r in thaws if r["asked"])

        # 3. The drill: every tier restores and verifies; rows and events say tier, age and stage times.
        state = firedrill(plan_path=str(plan), drill_at=drill_at, return_state=True)
        assert state.is_completed(), state.message
        rows = run_artifact_rows(state.state_details.flow_run_id)
        assert sorted(r["tier"] for r in rows) == ["daily", "daily", "monthly", "quarterly", "weekly", "yearly"]
        assert {r["state"] for r in rows} == {"Passed"}
        for row in rows:
            assert row["verdict"].startswith("clean: ")
            assert all(row[stage] is not None and row[stage] >= 0 for stage in STAGES), row
            assert row["total_s"] >= row["download_s"] and row["total_s"] > 0 and row["restore_mb_s"] > 0
        events = [p for p in influx_points(services, "instance_restore_drill", f"\"instance\"='{instance}'")]
        last = sorted(events, key=lambda p: p["time"])[-6:]
        assert sorted(p["tier"] for p in last) == ["daily", "daily", "monthly", "quarterly", "weekly", "yearly"]
        assert all(p["value"] is True and p["total_s"] > 0 and "download_s" in p for p in last)
        assert {p["database"] for p in last} <= {shop, audit}
        yearly = next(p for p in last if p["tier"] == "yearly")
        assert yearly["backup_age_h"] > 335 * 24 - 1
    finally:
        with MongoClient(source) as client:
            client.drop_database(shop)
            client.drop_database(audit)
