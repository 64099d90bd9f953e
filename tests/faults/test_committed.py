"""Fault: a manifest whose object is gone (or was replaced) must never count as a backup (issue 10, defect 5).

One definition of "committed" (`mongobackup.inventory`: manifest AND object, of the manifest's size) is used by
status, the watchdog, prune, restore and the drill. An orphaned manifest turns its database RED in status,
naming the key, and prune can never keep it as "the newest" while deleting the last intact backup.
Real S3 (moto); the backups are small fake objects with valid manifests (nothing is restored here).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest

from devservices import S3_TEST_CREDENTIALS, S3_TEST_REGION
from mongobackup.inventory import scan, select_backup
from mongobackup.keys import BackupLocation
from mongobackup.plan import BackupPlan
from mongobackup.prune import Verdict, prune
from mongobackup.s3 import S3Storage, s3_client
from mongobackup.status import Health, read_status
from mongobackup.tiers import Tier, TierPolicy
from tests.helpers import fake_manifest

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
OBJECT = b"twelve bytes"
POLICY = TierPolicy(timezone="UTC")


@pytest.fixture
def storage(services, bucket) -> S3Storage:
    session = boto3.Session(region_name=S3_TEST_REGION, **S3_TEST_CREDENTIALS)
    return S3Storage(s3_client(session=session, endpoint_url=services.url("moto"), region=S3_TEST_REGION), bucket)


def put(storage: S3Storage, hours_ago: float, *, run: str, body: bytes | None = OBJECT) -> BackupLocation:
    """A committed backup of rs/shop taken `hours_ago`; body None: its object is gone (an orphaned manifest)."""
    location = BackupLocation("", Tier.DAILY, "rs", "shop", NOW - timedelta(hours=hours_ago), run)
    manifest = fake_manifest(location, finished_at=location.taken_at + timedelta(minutes=5), size=len(OBJECT))
    if body is not None:
        storage.client.put_object(Bucket=storage.bucket, Key=location.object_key, Body=body)
    storage.put_json(location.manifest_key, manifest.to_json_dict())
    return location


def plan_for(storage: S3Storage, databases: list[str] | str) -> BackupPlan:
    return BackupPlan.model_validate(
        {
            "instances": [{"name": "rs", "uri": "mongodb://127.0.0.1:1", "databases": databases}],
            "storage": {"bucket": storage.bucket},
            "encryption": {"passphrase_env": "UNUSED"},
            "tiers": {"timezone": "UTC"},
        }
    )


@pytest.mark.parametrize("databases", [["shop"], "all"])
def test_an_orphaned_manifest_is_red_in_status_with_its_key(storage, databases):
    put(storage, 30, run="intact01")
    put(storage, 10, run="newest01")  # fresh and intact: the database would be GREEN on its own
    orphan = put(storage, 20, run="orphan01", body=None)  # its object was deleted

    row = read_status(storage, plan_for(storage, databases), NOW).rows[0]
    assert (row.instance, row.database, row.health) == ("rs", "shop", Health.RED)
    assert f"manifest {orphan.manifest_key} has no object beside it" in row.reason


def test_an_orphan_newer_than_every_object_is_red_and_never_the_backup_to_restore(storage):
    intact = put(storage, 30, run="intact01")
    orphan = put(storage, 5, run="orphan01", body=None)
    row = read_status(storage, plan_for(storage, ["shop"]), NOW).rows[0]
    assert row.health is Health.RED and orphan.manifest_key in row.reason
    assert select_backup(storage, "", "rs", "shop").object_key == intact.object_key


def test_prune_never_keeps_an_orphan_as_the_newest_and_deletes_the_last_intact_backup(storage):
    intact = put(storage, 24 * 30, run="intact01")  # expired: daily backups are kept 9 days
    orphan = put(storage, 24 * 20, run="orphan01", body=None)  # newer, expired too, its object gone

    report = prune(storage, scan(storage, ""), POLICY, NOW)
    verdicts = {d.backup.location: d.verdict for d in report.decisions}
    assert verdicts[intact] is Verdict.KEEP_NEWEST
    assert verdicts[orphan] is Verdict.DELETE
    assert storage.head(intact.object_key) is not None and storage.head(intact.manifest_key) is not None
    assert storage.head(orphan.manifest_key) is None  # an expired orphan goes like any expired backup


def test_prune_steps_back_past_a_newest_backup_whose_object_was_replaced(storage):
    intact = put(storage, 24 * 30, run="intact01")
    replaced = put(storage, 24 * 20, run="replaced", body=b"short")  # not the size its manifest records

    report = prune(storage, scan(storage, ""), POLICY, NOW)
    verdicts = {d.backup.location: d.verdict for d in report.decisions}
    assert verdicts[intact] is Verdict.KEEP_NEWEST
    assert verdicts[replaced] is Verdict.DELETE
    assert storage.head(intact.object_key) is not None


def test_a_newest_backup_whose_object_was_replaced_is_red_in_status(storage):
    put(storage, 30, run="intact01")
    replaced = put(storage, 2, run="replaced", body=b"short")
    row = read_status(storage, plan_for(storage, ["shop"]), NOW).rows[0]
    assert row.health is Health.RED and row.object_key == replaced.object_key
    assert f"{replaced.manifest_key} says {len(OBJECT)}: the object was truncated or replaced" in row.reason
