"""Retention of the archived oplog: one lifecycle rule from the tier policy (the daily tier's days), and prune,
which never deletes a segment the newest base backup of a database needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bson import Timestamp
from pymongo import MongoClient

from flows.resources import build_encryption
from mongobackup.inventory import scan
from mongobackup.lifecycle import apply_lifecycle, read_rules
from mongobackup.pitr.chain import build_archive, segments_between
from mongobackup.pitr.keys import SegmentLocation, gap_key
from mongobackup.pitr.point import bases, windows
from mongobackup.pitr.retention import condemned, oplog_rule, oplog_rules, prune_segments
from mongobackup.plan import load_plan
from mongobackup.storage import ObjectInfo
from mongobackup.tiers import Tier, TierPolicy
from tests.helpers import make_backup, unique
from tests.pitr.helpers import INSTANCE, ThreadedArchiver, archive_of, last_write, wait_archived

DAY = 86400
T0 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())
POLICY = TierPolicy(timezone="UTC")


def segment_keys(first: int, last: int, *, manifest: bool = True):
    location = SegmentLocation("", "rs", Timestamp(T0 + first, 1), Timestamp(T0 + last, 1))
    yield ObjectInfo(location.object_key, 10, "e", {})
    if manifest:
        yield ObjectInfo(location.manifest_key, 10, "e", {})


def test_the_lifecycle_rule_keeps_segments_for_the_daily_tiers_days():
    rule = oplog_rule(POLICY, "team/")
    assert rule["Filter"] == {"Prefix": "team/oplog/"} and rule["ID"] == "mongo-backup-oplog:team/"
    assert rule["Expiration"] == {"Days": POLICY.retention_days[Tier.DAILY]} and "Transitions" not in rule


def test_prune_deletes_expired_segments_unless_a_base_needs_them_and_gap_markers_with_their_chain():
    archive = build_archive(
        [
            *segment_keys(0, 30),  # expired, before the base: deleted
            *segment_keys(31, 60),  # expired, holds the base's consistent point: kept
            *segment_keys(61, 90, manifest=False),  # an expired leftover: deleted
            *segment_keys(20 * DAY, 20 * DAY + 30),  # young: kept
            # A gap before the young chain: kept while a segment before it is.
            ObjectInfo(gap_key("", "rs", Timestamp(T0 + 20 * DAY, 1)), 1, "e", {}),
        ],
        "",
        "rs",
    )
    now = datetime.fromtimestamp(T0 + 15 * DAY, UTC)
    keys, kept = condemned(archive, POLICY, now, needed=Timestamp(T0 + 45, 1))
    first = SegmentLocation("", "rs", Timestamp(T0, 1), Timestamp(T0 + 30, 1))
    leftover = SegmentLocation("", "rs", Timestamp(T0 + 61, 1), Timestamp(T0 + 90, 1))
    assert keys == [first.manifest_key, first.object_key, leftover.object_key] and kept == 1
    # Without a base, everything expired goes, and the gap marker with the last segment before it.
    keys, kept = condemned(archive, POLICY, now, needed=None)
    assert len(keys) == 6 and kept == 0 and keys[-1] == gap_key("", "rs", Timestamp(T0 + 20 * DAY, 1))


def test_prune_and_lifecycle_on_a_real_bucket_keep_the_window_of_the_newest_base(
    pitr_mongo, plan_path, storage, services
):
    plan = load_plan(plan_path)
    database = unique("keep")
    with MongoClient(pitr_mongo) as client:
        try:
            with ThreadedArchiver(plan_path) as running:
                client[database].c.insert_many([{"_id": n} for n in range(10)])
                wait_archived(storage, last_write(client), running)
                encryption = build_encryption(plan)
                gpg, keys = encryption.gpg(), encryption.keys
                manifest = make_backup(client, storage, gpg, INSTANCE, database, keys)
                client[database].c.insert_one({"_id": "after the base"})
                wait_archived(storage, Timestamp(last_write(client).time + 1, 0), running)
        finally:
            client.drop_database(database)
    base_end = Timestamp(*manifest.oplog.end)
    before = archive_of(storage)
    assert any(s.last < base_end for s in before.segments) and any(s.last >= base_end for s in before.segments)

    # A month later every segment is expired; the base is the newest backup of its database and prune keeps it.
    later = datetime.now(UTC) + timedelta(days=30)
    report = prune_segments(storage, scan(storage, ""), plan.tiers, [INSTANCE], later)
    after = archive_of(storage)
    assert report.deleted and report.kept_needed == len(after.segments) > 0
    assert all(s.last >= base_end for s in after.segments)
    [window] = windows(after, bases(storage, "", INSTANCE, database))
    assert segments_between(storage, after, base_end, int(window.end.timestamp()))

    diff = apply_lifecycle(storage, plan.tiers, "", oplog_rules(plan))
    rules, _ = read_rules(storage)
    assert diff.changed and {"Prefix": "oplog/"} in [r["Filter"] for r in rules]
    assert not apply_lifecycle(storage, plan.tiers, "", oplog_rules(plan)).changed
