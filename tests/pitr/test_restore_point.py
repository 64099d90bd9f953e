"""Restore to a point, end to end on the real servers: writes with known values at known times, two base backups,
the oplog archived as it happens; then `python -m flows.restore --point-in-time` at several points restores a
database equal, document for document, to a snapshot of the source taken at that point. Points outside the
window are refused with the window printed."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from bson import Timestamp
from pymongo import ASCENDING, MongoClient

from flows.resources import build_encryption
from flows.restore import main as restore_main
from mongobackup.plan import load_plan
from tests.dataset import snapshot
from tests.helpers import make_backup, unique
from tests.pitr.helpers import INSTANCE, ThreadedArchiver, archive_of, last_write, wait_archived


def base_backup(client: MongoClient, plan_path, storage, database: str) -> Timestamp:
    """A committed backup of `database`, made by the functions the backup flow calls; where it is consistent."""
    encryption = build_encryption(load_plan(plan_path))
    gpg, keys = encryption.gpg(), encryption.keys
    return Timestamp(*make_backup(client, storage, gpg, INSTANCE, database, keys).oplog.end)


def next_second(after: Timestamp) -> None:
    """Waits until the clock is past the second of `after`, so later writes fall in later seconds."""
    while time.time() < after.time + 1.05:
        time.sleep(0.05)


def phase(client: MongoClient, database: str, n: int) -> None:
    """Writes with known values: inserts, updates, a delete, a transaction, DDL now and then."""
    db = client[database]
    db.accounts.insert_many([{"_id": f"a{n}-{k}", "balance": 100 * n + k, "phase": n} for k in range(4)])
    db.accounts.update_many({"phase": n - 1}, {"$inc": {"balance": 7}, "$set": {"seen_by": n}})
    db.accounts.delete_one({"_id": f"a{n - 1}-0"})
    with client.start_session() as session, session.start_transaction():
        db.transfers.insert_one({"_id": f"t{n}", "amount": n}, session=session)
        db.accounts.update_one({"_id": f"a{n}-1"}, {"$set": {"locked": True}}, session=session)
    if n == 2:
        db.create_collection("audit", capped=True, size=1 << 16)
        db.accounts.create_index([("phase", ASCENDING)], name="by_phase")
    if n >= 2:
        db.audit.insert_one({"_id": n, "what": f"phase {n}"})
    if n == 4:
        db.drop_collection("transfers")


def iso(ts: Timestamp) -> str:
    return f"{datetime.fromtimestamp(ts.time, UTC):%Y-%m-%dT%H:%M:%SZ}"


def test_restores_at_several_points_equal_the_source_at_those_points(
    pitr_mongo, plan_path, storage, services, gpg_key, capsys
):
    database = unique("pitr")
    points: list[tuple[Timestamp, dict]] = []
    with MongoClient(pitr_mongo) as source:
        try:
            with ThreadedArchiver(plan_path) as running:
                phase(source, database, 1)
                first_base_end = base_backup(source, plan_path, storage, database)
                next_second(first_base_end)
                for n in range(2, 7):
                    phase(source, database, n)
                    points.append((last_write(source), snapshot(source, database)))
                    next_second(points[-1][0])
                    if n == 4:
                        base_backup(source, plan_path, storage, database)  # points after this use the newer base
                # The last point's second is complete once a later entry (a no-op heartbeat) is archived.
                wait_archived(storage, Timestamp(points[-1][0].time + 1, 0), running)
        finally:
            source.drop_database(database)

    common = ["--plan", str(plan_path), "--instance", INSTANCE, "--database", database]
    target = ["--to", services.mongo_uri("mongo-scratch"), "--gnupghome", str(gpg_key.home), "--quiet"]
    assert restore_main([*common, "--list"]) == 0
    listing = capsys.readouterr().out
    assert "point-in-time window" in listing and iso(first_base_end) in listing

    with MongoClient(services.mongo_uri("mongo-scratch")) as scratch:
        for number, (point, expected) in enumerate(points):
            restored = f"{database}_at{number}"
            try:
                code = restore_main([*common, *target, "--as", restored, "--point-in-time", iso(point)])
                out = capsys.readouterr()
                assert code == 0, out.err + out.out
                assert snapshot(scratch, restored) == expected, f"restore at {iso(point)} differs from the source"
            finally:
                scratch.drop_database(restored)

        # Before the first base backup ended, and after the newest archived second: refused, window printed.
        newest = archive_of(storage).newest.last
        for outside in (Timestamp(first_base_end.time - 5, 0), Timestamp(newest.time + 60, 0)):
            code = restore_main([*common, *target, "--as", f"{database}_out", "--point-in-time", iso(outside)])
            err = capsys.readouterr().err
            assert code == 1 and "outside the restorable window" in err and iso(first_base_end) in err, err
            assert f"{database}_out" not in scratch.list_database_names()


def test_a_point_restore_that_fails_in_the_archived_oplog_leaves_the_target_as_it_was(
    pitr_mongo, plan_path, storage, services, gpg_key, capsys
):
    """A damaged segment after the base: the restore fails in the replay, after the base was staged, and the
    target's own documents are still there, with no staging collection left beside them."""
    database = unique("safe")
    with MongoClient(pitr_mongo) as source:
        try:
            with ThreadedArchiver(plan_path) as running:
                source[database].items.insert_many([{"_id": n} for n in range(10)])
                base_backup(source, plan_path, storage, database)
                source[database].items.insert_many([{"_id": n} for n in range(10, 20)])
                point = last_write(source)
                wait_archived(storage, Timestamp(point.time + 2, 0), running)
        finally:
            source.drop_database(database)
    damaged = next(s for s in archive_of(storage).segments if s.last >= point).location.object_key
    body = bytearray(storage.open_read(damaged).read())
    body[-10] ^= 0xFF
    storage.client.put_object(Bucket=storage.bucket, Key=damaged, Body=bytes(body))

    target = f"{database}_target"
    with MongoClient(services.mongo_uri("mongo-scratch")) as scratch:
        scratch[target].items.insert_many([{"_id": f"mine-{n}", "n": n} for n in range(3)])
        before = snapshot(scratch, target)
        try:
            code = restore_main(
                [
                    *("--plan", str(plan_path), "--instance", INSTANCE, "--database", database),
                    *("--to", services.mongo_uri("mongo-scratch"), "--gnupghome", str(gpg_key.home), "--quiet"),
                    *("--as", target, "--drop", "--point-in-time", iso(point)),
                ]
            )
            err = capsys.readouterr().err
            assert code == 1 and damaged in err, err
            assert snapshot(scratch, target) == before
            assert scratch[target].list_collection_names() == ["items"]
        finally:
            scratch.drop_database(target)
