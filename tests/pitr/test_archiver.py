"""The oplog archiver against a real server and a real S3: every entry the server's oplog holds is archived
exactly once, in order, across segment cuts, a transaction (entries sharing one timestamp) and a restart."""

from __future__ import annotations

import time

from pymongo import MongoClient

from mongobackup.crypto import Gpg
from mongobackup.pitr.chain import check_chain
from mongobackup.pitr.keys import instance_prefix
from mongobackup.pitr.segment import load_segment_manifest
from tests.helpers import unique
from tests.pitr.helpers import (
    INSTANCE,
    ThreadedArchiver,
    archive_of,
    archived_entries,
    last_write,
    server_entries,
    wait_archived,
)


def busy_writes(client: MongoClient, database: str, rounds: range, pause_s: float = 0.3) -> None:
    """Inserts, updates, deletes and a transaction per round, spread over time so that segments are cut."""
    db = client[database]
    for n in rounds:
        db.items.insert_many([{"_id": f"{n}-{k}", "n": n, "k": k} for k in range(5)])
        db.items.update_one({"_id": f"{n}-0"}, {"$set": {"touched": True}})
        db.items.delete_one({"_id": f"{n}-4"})
        with client.start_session() as session, session.start_transaction():
            db.ledger.insert_one({"_id": f"debit-{n}", "amount": -n}, session=session)
            db.ledger.insert_one({"_id": f"credit-{n}", "amount": n}, session=session)
        time.sleep(pause_s)


def assert_archive_is_the_oplog(client: MongoClient, storage, gpg_key) -> list:
    """The archived entries are exactly the server's entries over the archived range: none lost or doubled."""
    entries = archived_entries(storage, gpg_key)
    assert entries, "nothing archived"
    expected = server_entries(client, entries[0]["ts"], entries[-1]["ts"])
    assert [e.raw for e in entries] == [e.raw for e in expected]
    return entries


def test_every_entry_is_archived_once_across_cuts_transactions_and_a_restart(pitr_mongo, plan_path, storage, gpg_key):
    database = unique("arch")
    with MongoClient(pitr_mongo) as client:
        try:
            with ThreadedArchiver(plan_path) as running:
                busy_writes(client, database, range(0, 12))
                wait_archived(storage, last_write(client), running)
            assert running.archiver.committed >= 2, running.lines
            first_run = assert_archive_is_the_oplog(client, storage, gpg_key)
            # A transaction's entries share one timestamp: a cut never falls between them.
            shared = [e["ts"] for e in first_run if e["ns"] == f"{database}.ledger"]
            assert len(shared) == 24 and len(set(shared)) == 12

            busy_writes(client, database, range(12, 16))  # while no archiver runs
            with ThreadedArchiver(plan_path) as running:
                busy_writes(client, database, range(16, 20))
                wait_archived(storage, last_write(client), running)
            entries = assert_archive_is_the_oplog(client, storage, gpg_key)
            ours = [e for e in entries if e["ns"].startswith(f"{database}.")]
            assert len(ours) == 20 * 9  # 5 inserts, 1 update, 1 delete, 2 transaction entries, per round
        finally:
            client.drop_database(database)

    archive = archive_of(storage)
    assert archive.gaps == () and archive.leftovers == ()
    [chain] = archive.chains()
    assert check_chain(storage, archive, chain) == []
    manifests = [load_segment_manifest(storage, s.location) for s in chain.segments]
    assert manifests[0].prev_last_ts is None
    assert all(m.instance == INSTANCE and m.encryption.recipients for m in manifests)
    # Nothing readable without the key: the stored object is an OpenPGP message, not BSON.
    body = storage.open_read(manifests[-1].object_key).read()
    assert body[:1] != b"\x00" and f"{database}".encode() not in body
    assert storage.open_uploads(instance_prefix("", INSTANCE)) == []
    Gpg(gpg_key.home)  # the key's home is still usable after the reads (no agent left locked)
