"""Fault: multipart uploads left open by a killed backup (issue 10, defect 4).

A process killed with kill -9 mid-upload (or cut off from S3, so its abort never arrives) leaves its upload
open, parts billed, and nothing saw it. Now status warns about open uploads of ours (count, bytes, oldest),
and the next backup run and the retention flow abort those older than `storage.abort_uploads_after_h`;
uploads that are not ours (outside the tier prefixes, or not a backup key) are never touched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import MongoClient

from flows.backup import backup
from flows.retention import retention
from flows.status import main as status_main
from mongobackup.uploads import UploadSummary, abort_stale_uploads, our_open_uploads
from tests.helpers import storage_on, unique
from tests.planfiles import write_plan

#: The child process: starts an upload of a backup object, sends one 5 MiB part, says so, and waits to die.
UPLOADER = """
import os, sys, time
from tests.helpers import storage_on
endpoint, bucket, key = sys.argv[1:4]
storage = storage_on(endpoint, bucket)
upload = storage.open_upload(key)
upload.write(os.urandom(5 << 20))
upload.drain()  # the part goes up in the background: wait until it is stored
print("part sent", flush=True)
time.sleep(600)
"""


def killed_mid_upload(endpoint: str, bucket: str, key: str) -> None:
    """Runs UPLOADER until its first part is stored, then kills it with SIGKILL: no abort can run."""
    child = subprocess.Popen(
        [sys.executable, "-c", UPLOADER, endpoint, bucket, key], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "part sent"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


OURS = "daily/rs-up/shop/20260101T013000Z-dead0001.archive.zst.gpg"


def test_only_stale_uploads_of_ours_are_aborted(services):
    """On SeaweedFS, which reports when each upload started (moto reports a fixed date in 2010)."""
    services.start(["seaweedfs"])
    storage = storage_on(services.url("seaweedfs"), f"up-{uuid.uuid4().hex[:12]}")
    storage.client.create_bucket(Bucket=storage.bucket)
    killed_mid_upload(services.url("seaweedfs"), storage.bucket, OURS)
    for foreign in ("other/big.bin", "daily/notes.txt"):  # outside the tiers; inside but not a backup key
        storage.open_upload(foreign).write(b"")  # opened, never finished

    [ours] = our_open_uploads(storage, "")
    assert (ours.key, ours.size) == (OURS, 5 << 20)
    now = datetime.now(UTC)
    assert abort_stale_uploads(storage, "", now, timedelta(hours=24)) == []  # young: may be a running backup
    later = now + timedelta(hours=25)
    assert abort_stale_uploads(storage, "", later, timedelta(hours=24), dry_run=True) == [ours]
    assert our_open_uploads(storage, "") == [ours]  # the dry run aborted nothing
    lines: list[str] = []
    assert abort_stale_uploads(storage, "", later, timedelta(hours=24), log=lines.append) == [ours]
    assert our_open_uploads(storage, "") == []
    assert sorted(u.key for u in storage.open_uploads()) == ["daily/notes.txt", "other/big.bin"]
    assert storage.where(OURS) in lines[0] and "5.0 MiB" in lines[0]


def test_status_warns_and_the_next_backup_and_retention_runs_abort(
    services, bucket, gpg_key, prefect, aws_env, tmp_path, capsys
):
    """On moto: every upload there reads as started in 2010, so it is past any threshold (the age rule itself
    is the SeaweedFS test's); what this checks is that the flows and the status command do their part."""
    instance, database = unique("rs-up"), unique("up")
    uri = services.mongo_uri("mongo-b")
    with MongoClient(uri) as client:
        client[database].c.insert_many([{"n": n} for n in range(10)])
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": instance, "uri": uri, "databases": [database]}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "home",
    )
    storage = storage_on(services.url("moto"), bucket)
    left = f"daily/{instance}/{database}/20260101T013000Z-dead0002.archive.zst.gpg"
    try:
        killed_mid_upload(services.url("moto"), bucket, left)
        assert status_main(["--plan", str(plan), "--json"]) == 1  # RED: no backup yet
        report = json.loads(capsys.readouterr().out)
        assert report["open_uploads"]["count"] == 1 and report["open_uploads"]["bytes"] == 5 << 20
        assert report["open_uploads"]["oldest_key"] == left
        assert status_main(["--plan", str(plan)]) == 1
        table = capsys.readouterr().out
        assert "WARNING: 1 open multipart uploads hold 5.0 MiB" in table and left in table

        state = backup(plan_path=str(plan), return_state=True)
        assert state.is_completed(), state.message
        assert our_open_uploads(storage, "") == []
        assert status_main(["--plan", str(plan), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["open_uploads"]["count"] == 0

        killed_mid_upload(services.url("moto"), bucket, left)
        state = retention(plan_path=str(plan), prune=True, return_state=True)
        assert state.is_completed(), state.message
        assert our_open_uploads(storage, "") == []
    finally:
        with MongoClient(uri) as client:
            client.drop_database(database)


def test_the_summary_of_no_upload_is_no_warning():
    assert UploadSummary.of([]).warning(str) is None


@pytest.mark.parametrize("hours", [0, -1])
def test_the_plan_refuses_a_non_positive_upload_age(tmp_path, hours):
    from mongobackup.plan import PlanError, load_plan

    plan = write_plan(
        tmp_path / "plan.yaml", instances=[{"name": "rs", "uri": "mongodb://h"}], bucket="bkt", s3_endpoint=None
    )
    text = plan.read_text().replace("part_size_mib: 5", f"part_size_mib: 5\n  abort_uploads_after_h: {hours}")
    plan.write_text(text)
    with pytest.raises(PlanError, match="storage.abort_uploads_after_h"):
        load_plan(plan)
