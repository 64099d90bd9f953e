"""The point-in-time drill: a random second of a database's window restored into a scratch database, the chain
checked segment by segment, the replay checked for stability; a damaged segment fails it by name."""

from __future__ import annotations

import random

from bson import Timestamp
from pymongo import MongoClient

from flows.resources import build_encryption
from mongobackup.crypto import Gpg
from mongobackup.pitr.drill import drill_point
from mongobackup.plan import load_plan
from tests.helpers import make_backup, unique
from tests.pitr.helpers import INSTANCE, ThreadedArchiver, archive_of, last_write, wait_archived


def test_a_random_point_restores_and_checks_and_a_damaged_segment_fails_the_drill(
    pitr_mongo, plan_path, storage, services, gpg_key
):
    database = unique("drill")
    with MongoClient(pitr_mongo) as source:
        try:
            with ThreadedArchiver(plan_path) as running:
                source[database].items.insert_many([{"_id": n, "v": 0} for n in range(20)])
                encryption = build_encryption(load_plan(plan_path))
                gpg, keys = encryption.gpg(), encryption.keys
                make_backup(source, storage, gpg, INSTANCE, database, keys)
                for n in range(20):
                    source[database].items.update_one({"_id": n}, {"$inc": {"v": 1}, "$push": {"seen": n}})
                    source[database].items.delete_one({"_id": 19 - n}) if n % 5 == 0 else None
                wait_archived(storage, Timestamp(last_write(source).time + 2, 0), running)
        finally:
            source.drop_database(database)

    scratch_uri = services.mongo_uri("mongo-scratch")
    with MongoClient(scratch_uri) as scratch:
        kwargs = dict(prefix="", instance=INSTANCE, database=database, scratch_database=f"{database}_d")
        drill = drill_point(storage, Gpg(gpg_key.home), scratch, rng=random.Random(7), **kwargs)
        assert drill.passed, drill.describe()
        assert drill.window is not None and drill.point in drill.window and drill.segments >= 1
        assert f"{database}_d" not in scratch.list_database_names()

        # One byte of a segment after the base changed: the chain check and the replay name it.
        damaged = archive_of(storage).segments[-1].location.object_key
        body = bytearray(storage.open_read(damaged).read())
        body[len(body) // 2] ^= 0xFF
        storage.client.put_object(Bucket=storage.bucket, Key=damaged, Body=bytes(body))
        drill = drill_point(storage, Gpg(gpg_key.home), scratch, rng=random.Random(7), **kwargs)
        assert not drill.passed and any(damaged in problem for problem in drill.problems), drill.problems
        assert f"{database}_d" not in scratch.list_database_names()
