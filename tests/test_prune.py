"""Prune over 60 simulated days of backups in a real S3 server (moto): exactly what the policy keeps stays,
the newest committed backup of every database always stays, and manifests go before their objects.

The backups are fake (a few bytes and a small manifest under the keys the backup flow computes): prune reads
only the listing. What must survive is worked out here from dates alone, the way the team's retention table
reads ("a daily backup is kept 9 days, through the day it turns 9 days old"), not with mongobackup.prune.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mongobackup.errors import StorageError
from mongobackup.inventory import scan
from mongobackup.keys import BackupLocation
from mongobackup.prune import Verdict, expires_at, prune
from mongobackup.s3 import S3Storage
from mongobackup.tiers import Tier, TierPolicy

POLICY = TierPolicy(timezone="Europe/London", weekly_day="monday")
LONDON = ZoneInfo("Europe/London")
RETENTION = {"daily": 9, "weekly": 40, "monthly": 365, "quarterly": 2190, "yearly": 43800}
FIRST_DAY = date(2026, 11, 20)  # 60 nightly runs: 20 Nov 2026 .. 18 Jan 2027, across a 1 January
DAYS = 60
#: The prune runs on the morning after the last night: 19 January 2027, 09:00 UTC.
NOW = datetime(2027, 1, 19, 9, 0, tzinfo=UTC)
LIVE = [("rs-a", "orders"), ("rs-b", "billing")]
#: Older first-of-month backups: a quarterly over 6 years old (expired: 2190 days), a recent quarterly, a monthly
#: a year and seven weeks old (expired: 365 days) and a yearly of 1990 (kept: 43800 days).
HISTORY = [date(2020, 10, 1), date(2026, 10, 1), date(2025, 12, 1), date(1990, 1, 1)]
#: Backed up nightly until 25 days before the end, then never again (decommissioned): all of its backups but
#: the newest expire.
RETIRED = ("rs-b", "legacy")


def nightly(day: date) -> datetime:
    """The scheduled time of a night's run: 02:00 in London."""
    return datetime(day.year, day.month, day.day, 2, 0, tzinfo=LONDON).astimezone(UTC)


def tier_of(day: date) -> str:
    """The tier of a London calendar day, from the rules as the plan documents them."""
    if day.day == 1:
        return "yearly" if day.month == 1 else "quarterly" if day.month in (4, 7, 10) else "monthly"
    return "weekly" if day.weekday() == 0 else "daily"


def kept_by_policy(taken_at: datetime, tier: str, now: datetime) -> bool:
    """S3's rule: the object goes at the first midnight UTC at least `days` after it was made."""
    return now.date() <= (taken_at.astimezone(UTC).date() + timedelta(days=RETENTION[tier]))


def put_backup(
    storage: S3Storage, instance: str, database: str, day: date, *, committed: bool = True, prefix: str = ""
) -> BackupLocation:
    when = nightly(day)
    location = BackupLocation(prefix, Tier(tier_of(day)), instance, database, when, f"r{day:%m%d}x")
    storage.client.put_object(Bucket=storage.bucket, Key=location.object_key, Body=b"encrypted bytes")
    if committed:
        storage.put_json(location.manifest_key, {"instance": instance, "database": database})
    return location


def all_keys(storage: S3Storage) -> set[str]:
    pages = storage.client.get_paginator("list_objects_v2").paginate(Bucket=storage.bucket)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


@pytest.fixture
def sixty_days(storage) -> dict[BackupLocation, bool]:
    """60 nights of backups of three live databases and one retired one, plus HISTORY; location -> committed."""
    nights = [FIRST_DAY + timedelta(days=n) for n in range(DAYS)]
    wanted = [(instance, database, day, True) for day in nights for instance, database in LIVE]
    wanted += [(*RETIRED, day, True) for day in nights[: DAYS - 25]]
    # Older backups of the long tiers, some past their retention: 60 nights hold no quarterly.
    wanted += [("rs-a", "orders", day, True) for day in HISTORY]
    # A run that died between upload and commit, 20 days ago, and one that may be committing right now.
    wanted += [("rs-a", "orders", date(2026, 12, 30), False), ("rs-b", "billing", NOW.date(), False)]
    with ThreadPoolExecutor(8) as pool:  # 500 small PUTs: in parallel, a few seconds less per test
        locations = list(pool.map(lambda w: put_backup(storage, w[0], w[1], w[2], committed=w[3]), wanted))
    return {location: w[3] for location, w in zip(locations, wanted, strict=True)}


def expected_keys(made: dict[BackupLocation, bool]) -> set[str]:
    newest: dict[tuple[str, str], BackupLocation] = {}
    for location, committed in made.items():
        pair = (location.instance, location.database)
        if committed and (pair not in newest or location.taken_at > newest[pair].taken_at):
            newest[pair] = location
    keys = set()
    for location, committed in made.items():
        if kept_by_policy(location.taken_at, location.tier.value, NOW) or location in newest.values():
            keys.add(location.object_key)
            if committed:
                keys.add(location.manifest_key)
    return keys


def test_prune_keeps_exactly_what_the_policy_keeps_and_never_the_newest(storage, sixty_days):
    foreign = {"daily/README.txt", "other/keep-me.bin"}  # under a tier prefix but not ours; outside the tiers
    for key in foreign:
        storage.client.put_object(Bucket=storage.bucket, Key=key, Body=b"x")
    before = all_keys(storage)
    assert {location.tier.value for location in sixty_days} == set(RETENTION)

    dry = prune(storage, scan(storage, ""), POLICY, NOW, dry_run=True)
    assert all_keys(storage) == before and dry.deleted_keys == ()
    assert dry.lines()[0].startswith(f"prune at {NOW.isoformat()}: would delete")

    deleted: list[str] = []
    storage.client.meta.events.register(
        "before-parameter-build.s3.DeleteObject", lambda params, **_: deleted.append(params["Key"])
    )
    report = prune(storage, scan(storage, ""), POLICY, NOW)
    assert all_keys(storage) == expected_keys(sixty_days) | foreign
    assert len(deleted) == len(before) - len(all_keys(storage)) == len(report.deleted_keys) > 200
    for n, key in enumerate(deleted):  # each manifest went before its object
        manifest = key.removesuffix(".archive.zst.gpg") + ".manifest.json"
        if key.endswith(".archive.zst.gpg") and manifest in deleted:
            assert deleted.index(manifest) < n, key
    assert {d.backup.location for d in report.with_verdict(Verdict.DELETE)} == {
        d.backup.location for d in dry.with_verdict(Verdict.DELETE)
    }

    # The retired database: its last backup (a daily of 24 December, 26 days old) is expired and survives as
    # its newest; every other daily of it is gone.
    retired = [d for d in report.decisions if d.backup.pair == RETIRED]
    newest = [d for d in retired if d.verdict == Verdict.KEEP_NEWEST]
    assert [d.backup.location.taken_at.date() for d in newest] == [date(2026, 12, 24)]
    assert all(d.verdict == Verdict.DELETE for d in retired if d.backup.location.tier is Tier.DAILY and d not in newest)
    # The live databases: 9-10 dailies, the weeklies of 40 days, 1 December and 1 January remain.
    orders = sorted(
        loc.taken_at.date()
        for loc in sixty_days
        if (loc.instance, loc.database) == ("rs-a", "orders") and loc.object_key in all_keys(storage)
    )
    assert {date(2026, 12, 1), date(2027, 1, 1), date(2026, 10, 1), date(1990, 1, 1)} <= set(orders)
    assert not {date(2020, 10, 1), date(2025, 12, 1)} & set(orders)
    assert min(d for d in orders if tier_of(d) == "daily") == date(2027, 1, 10)

    again = prune(storage, scan(storage, ""), POLICY, NOW)  # nothing left to do
    assert again.deleted_keys == ()


class FailingDeletes(S3Storage):
    """S3Storage whose delete fails on the object of the third backup, as a network cut would."""

    def __init__(self, storage: S3Storage):
        super().__init__(storage.client, storage.bucket)
        self.objects = 0

    def delete(self, key: str) -> None:
        if key.endswith(".archive.zst.gpg"):
            self.objects += 1
            if self.objects == 3:
                raise StorageError(f"delete {self.where(key)}: connection reset", transient=True)
        super().delete(key)


def test_an_interrupted_prune_never_leaves_a_manifest_without_its_object(storage, sixty_days):
    with pytest.raises(StorageError, match="connection reset"):
        prune(FailingDeletes(storage), scan(storage, ""), POLICY, NOW)
    keys = all_keys(storage)
    manifests = {k for k in keys if k.endswith(".manifest.json")}
    assert all(m.removesuffix(".manifest.json") + ".archive.zst.gpg" in keys for m in manifests)

    prune(storage, scan(storage, ""), POLICY, NOW)  # the next run finishes the job, orphaned object included
    assert all_keys(storage) == expected_keys(sixty_days)


def test_prune_under_a_prefix_leaves_other_prefixes_alone(storage):
    old = date(2026, 1, 6)  # a Tuesday: daily
    mine = [put_backup(storage, "rs-a", "db", old + timedelta(days=n), prefix="prod/") for n in range(3)]
    theirs = put_backup(storage, "rs-a", "db", old, prefix="staging/")
    prune(storage, scan(storage, "prod/"), POLICY, NOW)
    keys = all_keys(storage)
    assert theirs.object_key in keys and theirs.manifest_key in keys
    assert {k for k in keys if k.startswith("prod/")} == {mine[-1].object_key, mine[-1].manifest_key}


def test_expiry_rounds_up_to_midnight_utc_as_s3_does():
    assert expires_at(datetime(2014, 1, 15, 10, 30, tzinfo=UTC), 3) == datetime(2014, 1, 19, tzinfo=UTC)
    assert expires_at(datetime(2026, 3, 2, 0, 0, tzinfo=UTC), 9) == datetime(2026, 3, 11, tzinfo=UTC)


def test_cli_prune_dry_run_then_the_flow(services, storage, aws_env, prefect, tmp_path, capsys):
    from flows.retention import main
    from tests.planfiles import write_plan

    old, newest = [put_backup(storage, "rs-a", "db", date(2026, 1, 6) + timedelta(days=n)) for n in (0, 1)]
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": "rs-a", "uri": "mongodb://127.0.0.1:1"}],
        bucket=storage.bucket,
        s3_endpoint=services.url("moto"),
        encryption={"passphrase_env": "UNUSED"},
        tiers={"timezone": "Europe/London"},
    )
    at = NOW.isoformat()
    assert main(["--plan", str(plan), "--prune", "--dry-run", "--at", at]) == 0
    out = capsys.readouterr().out
    assert "would delete 1 backups" in out and f"delete      {old.stem}" in out and f"keep-newest {newest.stem}" in out
    assert old.manifest_key in all_keys(storage)

    assert main(["--plan", str(plan), "--prune", "--at", at]) == 0
    assert all_keys(storage) == {newest.object_key, newest.manifest_key}
    with pytest.raises(SystemExit):
        main(["--plan", str(plan), "--prune", "--versioning"])  # bucket settings go with the lifecycle rules
