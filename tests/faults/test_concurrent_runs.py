"""Two runs of one plan at once (issue 10, defect 10): the deployments run one at a time (prefect.yaml's
concurrency limit, checked on a real server in test_setup.py); a command-line run, which no deployment limit holds
back, says so when it finds another run's fresh open upload for a database it is about to back up.

On SeaweedFS: moto reports every open upload as started in 2010, so none would look fresh there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from pymongo import MongoClient

from mongobackup.keys import BackupLocation
from mongobackup.tiers import Tier
from tests.helpers import new_bucket, own_s3_client
from tests.planfiles import write_plan

ROOT = Path(__file__).resolve().parents[2]


def test_a_command_line_run_says_another_run_is_uploading_the_same_database(
    services, gpg_key, aws_env, prefect, tmp_path
):
    services.start(["seaweedfs"])
    s3_client = own_s3_client(services.url("seaweedfs"))
    bucket = new_bucket(s3_client)
    instance, database = f"rs-c{uuid.uuid4().hex[:4]}", f"busy-{uuid.uuid4().hex[:6]}"
    with MongoClient(services.mongo_uri("mongo-a")) as client:
        client[database].c.insert_many([{"n": n} for n in range(10)])
    other = BackupLocation("", Tier.DAILY, instance, database, datetime.now(UTC), "0therrun")
    s3_client.create_multipart_upload(Bucket=bucket, Key=other.object_key)  # the other run, mid-upload
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": instance, "uri": services.mongo_uri("mongo-a"), "databases": [database]}],
        bucket=bucket,
        s3_endpoint=services.url("seaweedfs"),
        public_key_file=gpg_key.public_key_file,
    )
    done = subprocess.run(
        [sys.executable, "-m", "flows.backup", "--plan", str(plan)],
        cwd=ROOT,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert f"{instance}/{database}: another run (0therrun) has an upload open" in output
