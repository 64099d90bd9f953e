"""The object key layout: built and parsed by the same module, with the tier first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mongobackup.keys import BackupLocation, manifest_key_for, short_run_id
from mongobackup.tiers import Tier


def test_key_layout_and_round_trip():
    when = datetime(2026, 3, 1, 1, 2, 3, tzinfo=timezone(timedelta(hours=2)))
    location = BackupLocation("backups/", Tier.MONTHLY, "rs-orders", "shop-eu_2026", when, "a1b2c3d4")
    assert location.object_key == "backups/monthly/rs-orders/shop-eu_2026/20260228T230203Z-a1b2c3d4.archive.zst.gpg"
    assert location.manifest_key == "backups/monthly/rs-orders/shop-eu_2026/20260228T230203Z-a1b2c3d4.manifest.json"
    assert manifest_key_for(location.object_key) == location.manifest_key
    parsed = BackupLocation.parse(location.manifest_key, "backups/")
    assert parsed == BackupLocation(
        "backups/", Tier.MONTHLY, "rs-orders", "shop-eu_2026", when.astimezone(UTC), "a1b2c3d4"
    )


@pytest.mark.parametrize(
    "key",
    [
        "other/daily/rs/db/20260101T000000Z-abc.archive.zst.gpg",  # outside the prefix
        "backups/daily/rs/db/20260101T000000Z-abc.tar",  # not ours
        "backups/hourly/rs/db/20260101T000000Z-abc.manifest.json",  # unknown tier
        "backups/daily/rs/20260101T000000Z-abc.manifest.json",  # a level missing
        "backups/daily/rs/db/yesterday-abc.manifest.json",  # no timestamp
    ],
)
def test_foreign_keys_are_refused_with_the_key_named(key):
    with pytest.raises(ValueError, match="object key"):
        BackupLocation.parse(key, "backups/")


def test_short_run_id():
    assert short_run_id("0f3c9a2e-77aa-4b1e-9c3d-1234567890ab") == "0f3c9a2e"
    with pytest.raises(ValueError):
        short_run_id("----")
