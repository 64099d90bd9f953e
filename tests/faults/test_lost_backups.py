"""Fault: every backup of a database vanishes (issue 10, defect 6).

With `databases: all`, status used to expect only databases that still had a manifest in the bucket: delete
a database's only manifest and the watchdog said "all GREEN". Each backup run now records the databases it
found per instance (`<prefix>roster/<instance>.json`), and status and the watchdog expect those too: the
lost one is RED by name. A database dropped on purpose leaves the roster at the next run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pymongo import MongoClient

from devservices import LocalServices
from flows.backup import backup
from flows.status import main as status_main
from flows.watchdog import watchdog
from mongobackup.plan import load_plan
from mongobackup.roster import read_roster, roster_key
from mongobackup.status import Health, read_status
from tests.helpers import storage_on, unique
from tests.planfiles import write_plan


def test_a_database_whose_only_manifest_is_deleted_is_red(
    services, bucket, gpg_key, prefect, aws_env, tmp_path, capsys
):
    own = LocalServices(tmp_path / "own-mongo")  # a server of our own: `databases: all` sees only these
    own.start(["mongo-a"])
    try:
        uri = own.mongo_uri("mongo-a")
        with MongoClient(uri) as client:
            for name in ("kept", "lost"):
                client[name].c.insert_many([{"n": n} for n in range(5)])
        instance = unique("rs-lost")
        plan = write_plan(
            tmp_path / "plan.yaml",
            instances=[{"name": instance, "uri": uri, "databases": "all"}],
            bucket=bucket,
            s3_endpoint=services.url("moto"),
            public_key_file=gpg_key.public_key_file,
            gnupghome=tmp_path / "home",
        )
        storage = storage_on(services.url("moto"), bucket)

        state = backup(plan_path=str(plan), return_state=True)
        assert state.is_completed(), state.message
        roster = read_roster(storage, "", instance)
        assert roster is not None and {"kept", "lost"} <= set(roster.databases)
        assert storage.head(roster_key("", instance)) is not None

        [manifest] = [o.key for o in storage.list_keys(f"daily/{instance}/lost/") if o.key.endswith(".json")]
        storage.delete(manifest)  # the only committed backup of `lost` is gone

        assert status_main(["--plan", str(plan), "--json"]) == 1
        rows = {row["database"]: row for row in json.loads(capsys.readouterr().out)["rows"]}
        assert rows["lost"]["health"] == "RED" and "no committed backup" in rows["lost"]["reason"]
        assert rows["kept"]["health"] == "GREEN"
        state = watchdog(plan_path=str(plan), return_state=True)
        assert state.is_failed() and f"{instance}/lost" in state.message

        # Dropped on purpose: the next run's roster no longer lists it, and it has no backup left to expect.
        with MongoClient(uri) as client:
            client.drop_database("lost")
        state = backup(plan_path=str(plan), return_state=True)
        assert state.is_completed(), state.message
        assert "lost" not in read_roster(storage, "", instance).databases
        assert status_main(["--plan", str(plan), "--json"]) == 0
        rows = {row["database"]: row for row in json.loads(capsys.readouterr().out)["rows"]}
        assert "lost" not in rows and rows["kept"]["health"] == "GREEN"
    finally:
        own.stop()


def test_an_unreadable_roster_is_red_not_ignored(services, bucket, aws_env, tmp_path):
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": "rs-r", "uri": "mongodb://127.0.0.1:1", "databases": "all"}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        encryption={"passphrase_env": "UNUSED"},
    )
    storage = storage_on(services.url("moto"), bucket)
    storage.put_json(roster_key("", "rs-r"), {"format": 99, "databases": ["a"]})
    report = read_status(storage, load_plan(plan), datetime.now(UTC))
    [row] = report.rows
    assert (row.database, row.health) == ("*", Health.RED)
    assert "roster unreadable" in row.reason and "roster/rs-r.json" in row.reason
