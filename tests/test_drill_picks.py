"""The drill's archived picks: one backup per archived tier, by rule, in rotation over databases, the same for
the thaw run the day before as for the drill."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mongobackup.drill_picks import archived_picks, rotation_index
from mongobackup.inventory import StoredBackup
from mongobackup.keys import BackupLocation
from mongobackup.tiers import Tier, TierPolicy

POLICY = TierPolicy(timezone="Europe/London")
DRILL = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


def stored(tier: Tier, instance: str, database: str, days_ago: float, committed: bool = True) -> StoredBackup:
    when = DRILL - timedelta(days=days_ago)
    return StoredBackup(BackupLocation("", tier, instance, database, when, f"r{int(days_ago * 10)}"), 10, committed)


def test_each_archived_tier_gets_its_rule_pick():
    backups = [
        stored(Tier.DAILY, "rs", "shop", 0.2),
        stored(Tier.WEEKLY, "rs", "shop", 36),  # the oldest weekly
        stored(Tier.WEEKLY, "rs", "shop", 29),
        stored(Tier.WEEKLY, "rs", "shop", 1),
        stored(Tier.MONTHLY, "rs", "shop", 1),  # too young to be in Glacier yet
        stored(Tier.MONTHLY, "rs", "shop", 31),  # the newest archived monthly
        stored(Tier.MONTHLY, "rs", "shop", 62),
        stored(Tier.YEARLY, "rs", "shop", 335),
        stored(Tier.YEARLY, "rs", "shop", 1, committed=False),  # never committed: never picked
    ]
    picks = {pick.tier: pick for pick in archived_picks(backups, POLICY, DRILL)}
    assert list(picks) == [Tier.WEEKLY, Tier.MONTHLY, Tier.YEARLY]  # no quarterly backups: no quarterly row
    assert picks[Tier.WEEKLY].backup == backups[1] and picks[Tier.WEEKLY].reason == "oldest weekly"
    assert picks[Tier.MONTHLY].backup == backups[5] and picks[Tier.MONTHLY].reason == "newest archived monthly"
    assert picks[Tier.YEARLY].backup == backups[7]


def test_a_weekly_expiring_before_the_drill_is_not_picked_and_the_thaw_run_agrees():
    backups = [stored(Tier.WEEKLY, "rs", "shop", 39.5), stored(Tier.WEEKLY, "rs", "shop", 32)]
    on_the_day = archived_picks(backups, POLICY, DRILL)
    day_before = archived_picks(backups, POLICY, (DRILL - timedelta(days=1)) + timedelta(days=1))
    assert [p.backup for p in on_the_day] == [backups[1]] == [p.backup for p in day_before]


def test_rotation_walks_through_the_databases_month_by_month():
    backups = [stored(Tier.QUARTERLY, "rs", name, 62) for name in ("a", "b", "c")]
    chosen = []
    for month in range(3):
        when = datetime(2027, 1 + month, 2, 6, tzinfo=UTC)
        chosen += [p.backup.location.database for p in archived_picks(backups, POLICY, when)]
    assert sorted(chosen) == ["a", "b", "c"]
    # The month is the plan timezone's: 1 Jan 00:30 in London is still January there and in UTC.
    assert rotation_index(POLICY, datetime(2027, 1, 1, 0, 30, tzinfo=UTC)) == 2027 * 12
