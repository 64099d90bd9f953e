"""Recovery point lag in status and the watchdog: judged from the bucket's listing, RED above pitr.max_lag_s,
RED while nothing is archived, RED while a gap waits for a base backup."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from bson import Timestamp
from pymongo import MongoClient

from flows.status import main as status_main
from mongobackup.metrics import INSTANCE_OPLOG_LAG
from mongobackup.pitr.chain import build_archive
from mongobackup.pitr.keys import SegmentLocation, gap_key
from mongobackup.pitr.lag import judge_lag
from mongobackup.pitr.settings import PitrPlan
from mongobackup.plan import load_plan
from mongobackup.status import read_status, stale_events
from mongobackup.storage import ObjectInfo
from tests.helpers import unique
from tests.pitr.helpers import INSTANCE, ThreadedArchiver, last_write, wait_archived

T0 = int(datetime(2026, 12, 2, 9, 0, tzinfo=UTC).timestamp())
SETTINGS = PitrPlan(segment_s=30, max_lag_s=120)


def archive(*ranges: tuple[int, int], gaps: tuple[int, ...] = ()):
    keys = []
    for first, last in ranges:
        location = SegmentLocation("", "rs", Timestamp(T0 + first, 1), Timestamp(T0 + last, 1))
        keys += [ObjectInfo(location.object_key, 10, "e", {}), ObjectInfo(location.manifest_key, 10, "e", {})]
    keys += [ObjectInfo(gap_key("", "rs", Timestamp(T0 + gap, 1)), 10, "e", {}) for gap in gaps]
    return build_archive(keys, "", "rs")


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, UTC)


def test_lag_is_green_up_to_max_lag_s_and_red_above_or_with_nothing_archived():
    fresh, late = archive((0, 30), (31, 60)), archive((0, 30))
    [green] = judge_lag(SETTINGS, {"rs": fresh}, {}, at(100))
    [red] = judge_lag(SETTINGS, {"rs": late}, {}, at(151))
    [empty] = judge_lag(SETTINGS, {"rs": archive()}, {}, at(0))
    assert (green.green, green.lag_s, green.newest) == (True, 40, at(60))
    assert not red.green and "recovery point lag 121 s (more than 120 s)" in red.reason
    assert not empty.green and empty.lag_s is None and "no oplog archived" in empty.reason


def test_a_gap_is_red_until_every_database_has_a_backup_finished_after_it():
    gapped = archive((0, 30), (500, 530), gaps=(500,))
    [waiting] = judge_lag(SETTINGS, {"rs": gapped}, {"rs": [at(600), at(400)]}, at(540))
    [closed] = judge_lag(SETTINGS, {"rs": gapped}, {"rs": [at(600), at(601)]}, at(540))
    assert not waiting.green and waiting.open_gap == at(500) and "awaiting a base backup" in waiting.reason
    assert closed.green and closed.open_gap is None


def test_status_shows_the_lag_of_an_archived_instance_and_turns_red_when_it_grows(
    pitr_mongo, plan_path, storage, capsys
):
    database = unique("lag")
    with MongoClient(pitr_mongo) as client, ThreadedArchiver(plan_path) as running:
        client[database].c.insert_one({"_id": 1})
        wait_archived(storage, last_write(client), running)
        client.drop_database(database)

    assert status_main(["--plan", str(plan_path), "--json"]) in (0, 1)  # no backups in this bucket: RED rows
    document = json.loads(capsys.readouterr().out)
    [row] = document["pitr"]
    assert row["instance"] == INSTANCE and row["health"] == "GREEN" and row["lag_s"] < 60

    plan = load_plan(plan_path)
    later = datetime.now(UTC) + timedelta(minutes=5)
    report = read_status(storage, plan, later)
    assert not report.ok and [r.instance for r in report.red_pitr] == [INSTANCE]
    assert "recovery point lag" in report.table()
    lag_events = [e for e in stale_events(report) if e.measurement == INSTANCE_OPLOG_LAG.name]
    assert len(lag_events) == 1 and lag_events[0].fields["lag_s"] > 60
