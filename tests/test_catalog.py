"""Finding backups in the bucket: committed ones only, newest, newest at or before a time, by key; an object
without a manifest is never picked unless named with the flag that says it is uncommitted. Real S3 (moto)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mongobackup.errors import VerificationError
from mongobackup.inventory import (
    BackupNotFound,
    UncommittedBackup,
    list_backups,
    load_manifest,
    newest_by_database,
    select_backup,
)
from mongobackup.keys import BackupLocation
from mongobackup.s3 import S3Storage
from mongobackup.tiers import Tier
from tests.helpers import fake_manifest

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def put_backup(
    storage: S3Storage, location: BackupLocation, *, committed: bool = True, with_object: bool = True
) -> BackupLocation:
    if with_object:
        storage.client.put_object(Bucket=storage.bucket, Key=location.object_key, Body=b"obj")
    if committed:
        storage.put_json(location.manifest_key, fake_manifest(location).to_json_dict())
    return location


def at(
    hours: float,
    *,
    tier: Tier = Tier.DAILY,
    database: str = "shop",
    instance: str = "rs-a",
    run: str = "run00001",
    prefix: str = "backups/",
) -> BackupLocation:
    return BackupLocation(prefix, tier, instance, database, T0 + timedelta(hours=hours), run)


def test_newest_committed_across_tiers_skips_uncommitted_and_orphaned(storage):
    put_backup(storage, at(0, tier=Tier.MONTHLY))
    newest_committed = put_backup(storage, at(24, tier=Tier.DAILY))
    put_backup(storage, at(48, run="failed01"), committed=False)  # an upload that never committed
    put_backup(storage, at(72, run="orphan01"), with_object=False)  # a manifest whose object is gone
    put_backup(storage, at(96, database="other"))  # another database
    put_backup(storage, at(96, instance="rs-a-2"))  # an instance whose name starts with ours

    backups = list_backups(storage, "backups/", "rs-a", "shop")
    assert [b.location.taken_at for b in backups] == [T0 + timedelta(hours=h) for h in (0, 24, 48, 72)]
    found = select_backup(storage, "backups/", "rs-a", "shop")
    assert found.object_key == newest_committed.object_key and found.committed

    everything = list_backups(storage, "backups/", "rs-a")
    assert {db: b.location.taken_at for db, b in newest_by_database(everything).items()} == {
        "shop": T0 + timedelta(hours=24),
        "other": T0 + timedelta(hours=96),
    }


def test_at_picks_the_newest_at_or_before_the_time(storage):
    first, second = put_backup(storage, at(0)), put_backup(storage, at(24))
    assert (
        select_backup(storage, "backups/", "rs-a", "shop", at=T0 + timedelta(hours=23)).object_key == first.object_key
    )
    assert (
        select_backup(storage, "backups/", "rs-a", "shop", at=T0 + timedelta(hours=24)).object_key == second.object_key
    )
    with pytest.raises(
        BackupNotFound,
        match=r"no committed backup of instance rs-a, database shop at or before "
        r"2026-11-01T01:00:00\+00:00 under s3://.*/backups/<tier>/rs-a/shop/ "
        r"\(2 backups there, 2 committed, the oldest taken 2026-11-01T02:00",
    ):
        select_backup(storage, "backups/", "rs-a", "shop", at=T0 - timedelta(hours=1))


def test_an_uncommitted_object_is_restored_only_by_key_with_the_flag(storage):
    put_backup(storage, at(0))
    uncommitted = put_backup(storage, at(24, run="failed01"), committed=False)
    assert select_backup(storage, "backups/", "rs-a", "shop").location.taken_at == T0  # never the newest

    with pytest.raises(UncommittedBackup, match=rf"{uncommitted.object_key} has no manifest .*--uncommitted"):
        select_backup(storage, "backups/", "rs-a", "shop", key=uncommitted.object_key)
    with pytest.raises(BackupNotFound, match="only restored when named by its key"):
        select_backup(storage, "backups/", "rs-a", "shop", uncommitted=True)
    found = select_backup(storage, "backups/", "rs-a", "shop", key=uncommitted.object_key, uncommitted=True)
    assert found.object_key == uncommitted.object_key and not found.committed


def test_by_key_accepts_manifest_keys_and_addresses_and_checks_the_database(storage):
    location = put_backup(storage, at(0))
    for key in (location.object_key, location.manifest_key, storage.where(location.object_key)):
        assert select_backup(storage, "backups/", "rs-a", "shop", key=key).object_key == location.object_key
    with pytest.raises(
        BackupNotFound, match="is a backup of instance rs-a, database shop, not of instance rs-a, database billing"
    ):
        select_backup(storage, "backups/", "rs-a", "billing", key=location.object_key)
    with pytest.raises(BackupNotFound, match="no such backup object"):
        select_backup(storage, "backups/", "rs-a", "shop", key=at(5).object_key)
    with pytest.raises(BackupNotFound, match="neither a backup object nor a manifest"):
        select_backup(storage, "backups/", "rs-a", "shop", key="backups/daily/rs-a/shop/notes.txt")


def test_nothing_there_says_where_it_looked(storage):
    with pytest.raises(
        BackupNotFound,
        match=r"no committed backup of instance rs-a, database shop under "
        r"s3://test-\w+/backups/<tier>/rs-a/shop/$",
    ):
        select_backup(storage, "backups/", "rs-a", "shop")


def test_a_manifest_must_describe_the_object_beside_it(storage):
    location = put_backup(storage, at(0))
    backup = select_backup(storage, "backups/", "rs-a", "shop")
    assert load_manifest(storage, backup.location).object_key == location.object_key

    other = at(1)
    storage.put_json(location.manifest_key, fake_manifest(other).to_json_dict())  # copied from another backup
    with pytest.raises(VerificationError, match=rf"{location.manifest_key} describes .*{other.object_key}"):
        load_manifest(storage, backup.location)
    storage.put_json(location.manifest_key, {"format_version": 99})
    with pytest.raises(VerificationError, match="not a valid manifest: .*format_version 99"):
        load_manifest(storage, backup.location)
