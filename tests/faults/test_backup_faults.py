"""Failures must lose nothing and hide nothing: no object under a final key, no manifest, no open multipart
upload, an `instance_backup_failed` event, a Failed run, and a next run that succeeds.

Faults are real: the source server is stopped by its PID mid-dump, the gpg process is killed mid-stream, and
S3 answers 503 through a proxy in front of the real S3 server. A slow proxy holds the pipeline back (the
stream has backpressure), so each fault lands while the transfer is still under way.

Each kind of fault is run once through the backup flow, which owns what the core cannot show (the failure
event, the Failed run, the preflight, retries); the backup that follows a fault, which only has to show that
nothing was left in its way, is made by the core functions the flow calls (`tests.helpers.make_backup`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
from bson import Binary
from pymongo import MongoClient

from devservices import LocalServices
from flows.backup import backup, main
from mongobackup.crypto import EncryptionKeys, Gpg
from tests.faults.contract import BackupFault, check_backup_fault, flow_run_texts
from tests.faults.proxy import FaultyS3Proxy
from tests.helpers import influx_points, make_backup, storage_on, stored_keys
from tests.planfiles import write_plan

pytestmark = pytest.mark.usefixtures("aws_env")  # the flow builds its S3 client from the default chain

DOC_BYTES = 256 * 1024


def load_incompressible(uri: str, database: str, megabytes: int) -> None:
    """Random payloads: zstd cannot shrink them, so stored bytes track dumped bytes and parts come steadily."""
    with MongoClient(uri) as client:
        client[database].blobs.insert_many(
            [{"_id": n, "payload": Binary(os.urandom(DOC_BYTES))} for n in range(megabytes * 4)]
        )


def wait_for_first_part(s3_client, bucket: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for upload in s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            parts = s3_client.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            if parts.get("Parts"):
                return
        time.sleep(0.05)
    raise AssertionError("no multipart upload got a part in time")


def bytes_read(pid: int) -> int:
    """What process `pid` has read so far (`rchar` of /proc/PID/io); 0 once it is gone."""
    try:
        fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    except OSError:
        return 0
    return int(fields.get("rchar", 0))


def assert_nothing_left(s3_client, bucket: str) -> None:
    assert stored_keys(s3_client, bucket) == []  # neither an object under a final key nor a manifest
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def with_password(uri: str) -> tuple[str, str]:
    """(uri with credentials, password): a user of its own on the server behind `uri`. The local servers do not
    enforce authentication, but a client that is given credentials logs in with them, so the password is a
    real secret of the run to look for in everything it wrote."""
    user, password = f"faults-{uuid.uuid4().hex[:6]}", f"Pw-{uuid.uuid4().hex}"
    with MongoClient(uri) as client:
        client.admin.command("createUser", user, pwd=password, roles=["root"], mechanisms=["SCRAM-SHA-256"])
    scheme, rest = uri.split("://", 1)
    separator = "&" if "?" in rest else "/?"
    return f"{scheme}://{user}:{password}@{rest}{separator}authSource=admin", password


def check_flow_fault(
    state, services, bucket: str, instance: str, database: str, stage: str, password: str, next_backup
) -> None:
    """The shared contract (tests/faults/contract.py) for a failed flow run: its Prefect logs, artifacts and
    message, the bucket and the events searched for the MongoDB password."""
    check_backup_fault(
        BackupFault(
            storage_on(services.url("moto"), bucket),
            instance,
            database,
            message=state.message,
            names=[f"{instance}/{database}"],
            stage=stage,
            services=services,
            secrets=[password],
            outputs=flow_run_texts(state.state_details.flow_run_id),
            next_backup=next_backup,
        )
    )


def plan_for(
    tmp_path: Path, services, *, uri: str, instance: str, database: str, bucket: str, s3_endpoint: str, gpg_key
) -> Path:
    return write_plan(
        tmp_path / f"plan-{uuid.uuid4().hex[:6]}.yaml",
        instances=[{"name": instance, "uri": uri, "databases": [database], "connect_timeout_s": 2}],
        bucket=bucket,
        s3_endpoint=s3_endpoint,
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "encrypt-home",
        influx_url=services.url("influxdb"),
    )


def back_up_again(services, uri: str, instance: str, database: str, bucket: str, gpg_key) -> None:
    """The next backup of the database after a fault, by the core (no flow run): it must simply succeed."""
    with MongoClient(uri) as client:
        storage = storage_on(services.url("moto"), bucket)
        make_backup(client, storage, Gpg(gpg_key.home), instance, database, EncryptionKeys((gpg_key.fingerprint,)))


@pytest.fixture
def slow_s3(services):
    """A proxy in front of moto that holds each part for a moment, so a fault lands mid-transfer."""
    with FaultyS3Proxy(services.url("moto")) as proxy:
        proxy.part_delay_s = 0.5
        yield proxy


def test_source_server_stopped_mid_dump(services, s3_client, bucket, gpg_key, prefect, tmp_path, slow_s3):
    own = LocalServices(tmp_path / "own-mongo")  # a server of our own, to stop by its PID
    own.start(["mongo-a"])
    try:
        instance, database = f"rs-kill-{uuid.uuid4().hex[:4]}", "orders"
        load_incompressible(own.mongo_uri("mongo-a"), database, megabytes=24)
        uri, password = with_password(own.mongo_uri("mongo-a"))
        plan = plan_for(
            tmp_path,
            services,
            uri=uri,
            instance=instance,
            database=database,
            bucket=bucket,
            s3_endpoint=slow_s3.url,
            gpg_key=gpg_key,
        )
        killer = threading.Thread(target=lambda: (wait_for_first_part(s3_client, bucket), own.stop(["mongo-a"])))
        killer.start()
        state = backup(plan_path=str(plan), return_state=True)
        killer.join()
        assert state.is_failed()
        assert_nothing_left(s3_client, bucket)

        own.start(["mongo-a"])  # the same data folder: the server comes back with its data
        check_flow_fault(
            state,
            services,
            bucket,
            instance,
            database,
            "dump",
            password,
            lambda: back_up_again(services, own.mongo_uri("mongo-a"), instance, database, bucket, gpg_key),
        )
        assert len(stored_keys(s3_client, bucket)) == 2
    finally:
        own.stop()


def test_gpg_killed_mid_stream(services, s3_client, bucket, gpg_key, prefect, tmp_path, slow_s3, monkeypatch):
    # A `gpg` first on PATH that records its PID and command line, then becomes the real gpg (same PID).
    wrapper_dir = tmp_path / "bin"
    wrapper_dir.mkdir()
    pids = tmp_path / "gpg-pids"
    (wrapper_dir / "gpg").write_text(f'#!/bin/sh\necho "$$ $*" >> {pids}\nexec /usr/bin/gpg "$@"\n')
    (wrapper_dir / "gpg").chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper_dir}:{os.environ['PATH']}")

    instance, database = f"rs-gpg-{uuid.uuid4().hex[:4]}", f"gpgdb-{uuid.uuid4().hex[:4]}"
    load_incompressible(services.mongo_uri("mongo-b"), database, megabytes=16)
    uri, password = with_password(services.mongo_uri("mongo-b"))
    plan = plan_for(
        tmp_path,
        services,
        uri=uri,
        instance=instance,
        database=database,
        bucket=bucket,
        s3_endpoint=slow_s3.url,
        gpg_key=gpg_key,
    )

    def kill_encrypting_gpg() -> None:
        # Mid-stream: once the encrypting gpg has read 2 MiB. Not "once a part is stored": parts go up in the
        # background while gpg goes on, so by then gpg may have encrypted all 16 MB and exited.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lines = pids.read_text().splitlines() if pids.exists() else []
            encrypting = [int(line.split()[0]) for line in lines if "--encrypt" in line]
            if encrypting and bytes_read(encrypting[-1]) >= 2 << 20:
                os.kill(encrypting[-1], signal.SIGKILL)
                return
            time.sleep(0.02)
        raise AssertionError("no encrypting gpg read 2 MiB in time")

    killer = threading.Thread(target=kill_encrypting_gpg)
    killer.start()
    state = backup(plan_path=str(plan), return_state=True)
    killer.join()
    assert state.is_failed()
    assert_nothing_left(s3_client, bucket)
    check_flow_fault(
        state,
        services,
        bucket,
        instance,
        database,
        "encrypt",
        password,
        lambda: back_up_again(services, uri, instance, database, bucket, gpg_key),
    )
    assert len(stored_keys(s3_client, bucket)) == 2


def test_s3_failing_mid_upload(services, s3_client, bucket, gpg_key, prefect, tmp_path):
    instance, database = f"rs-s3-{uuid.uuid4().hex[:4]}", f"s3db-{uuid.uuid4().hex[:4]}"
    load_incompressible(services.mongo_uri("mongo-b"), database, megabytes=12)
    uri, password = with_password(services.mongo_uri("mongo-b"))
    with FaultyS3Proxy(services.url("moto")) as proxy:
        proxy.fail_from_part = 2  # the first part lands, then every part is refused
        plan = plan_for(
            tmp_path,
            services,
            uri=uri,
            instance=instance,
            database=database,
            bucket=bucket,
            s3_endpoint=proxy.url,
            gpg_key=gpg_key,
        )
        state = backup(plan_path=str(plan), return_state=True)
        assert state.is_failed()
        assert proxy.failed_requests >= 1
        assert_nothing_left(s3_client, bucket)
    check_flow_fault(
        state,
        services,
        bucket,
        instance,
        database,
        "upload",
        password,
        lambda: back_up_again(services, uri, instance, database, bucket, gpg_key),
    )
    assert len(stored_keys(s3_client, bucket)) == 2


def test_unreachable_instance_fails_alone(services, s3_client, bucket, gpg_key, prefect, tmp_path):
    database = f"alive-{uuid.uuid4().hex[:4]}"
    with MongoClient(services.mongo_uri("mongo-b")) as client:
        client[database].c.insert_one({"ok": True})
    dead, alive = f"rs-dead-{uuid.uuid4().hex[:4]}", f"rs-alive-{uuid.uuid4().hex[:4]}"
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[
            {"name": dead, "uri": "mongodb://127.0.0.1:9/?directConnection=true", "connect_timeout_s": 1},
            {"name": alive, "uri": services.mongo_uri("mongo-b"), "databases": [database]},
        ],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "home",
        influx_url=services.url("influxdb"),
    )
    state = backup(plan_path=str(plan), return_state=True)
    assert state.is_failed()
    assert f"{dead}/*" in state.message
    assert {k.split("/")[1] for k in stored_keys(s3_client, bucket)} == {alive}
    failed = influx_points(services, "instance_backup_failed", f"\"instance\"='{dead}'")
    assert [p["stage"] for p in failed] == ["list"]
    assert f"instance {dead}" in failed[0]["error"] and "unreachable" in failed[0]["error"]


def test_bad_credentials_are_named_and_never_echoed(services, s3_client, bucket, gpg_key, prefect, tmp_path):
    instance = f"rs-auth-{uuid.uuid4().hex[:4]}"
    uri = services.mongo_uri("mongo-b").replace("mongodb://", "mongodb://backup:Sup3rSecretPw@")
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": instance, "uri": uri}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "home",
        influx_url=services.url("influxdb"),
    )
    state = backup(plan_path=str(plan), return_state=True)
    assert state.is_failed()
    failed = influx_points(services, "instance_backup_failed", f"\"instance\"='{instance}'")
    assert len(failed) == 1
    assert "bad credentials" in failed[0]["error"] and "Sup3rSecretPw" not in failed[0]["error"]
    assert "Sup3rSecretPw" not in state.message
    assert stored_keys(s3_client, bucket) == []


def test_unknown_gpg_recipient_fails_before_any_dump(services, s3_client, bucket, prefect, tmp_path):
    instance = f"rs-key-{uuid.uuid4().hex[:4]}"
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": instance, "uri": services.mongo_uri("mongo-b")}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        influx_url=services.url("influxdb"),
        encryption={
            "recipients": ["0123456789ABCDEF0123456789ABCDEF01234567"],
            "gnupghome": str(tmp_path / "empty-home"),
        },
    )
    state = backup(plan_path=str(plan), return_state=True)
    assert state.is_failed()
    assert "unknown GPG recipient '0123456789ABCDEF0123456789ABCDEF01234567'" in state.message
    failed = influx_points(services, "instance_backup_failed", f"\"instance\"='{instance}'")
    assert [p["stage"] for p in failed] == ["preflight"]
    assert_nothing_left(s3_client, bucket)


def test_missing_bucket_is_named(services, s3_client, gpg_key, prefect, tmp_path):
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": "rs-b", "uri": services.mongo_uri("mongo-b")}],
        bucket="no-such-bucket-here",
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "home",
    )
    state = backup(plan_path=str(plan), return_state=True)
    assert state.is_failed()
    assert "s3://no-such-bucket-here: bucket does not exist" in state.message


def test_invalid_plan_field_is_named_by_the_cli(tmp_path, capsys):
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "instances: []\nstorage: {bucket: b, prefx: x}\nencryption: {passphrase_env: P}\n"
        "tiers: {timezone: Europe/London}\n"
    )
    assert main(["--plan", str(plan), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "storage.prefx" in err and "instances" in err and str(plan) in err


def test_retry_starts_a_fresh_upload(services, s3_client, bucket, gpg_key, prefect, tmp_path):
    instance, database = f"rs-retry-{uuid.uuid4().hex[:4]}", f"retrydb-{uuid.uuid4().hex[:4]}"
    load_incompressible(services.mongo_uri("mongo-b"), database, megabytes=8)
    with FaultyS3Proxy(services.url("moto")) as proxy:
        # Part 2 is refused as often as boto3 retries it, so the first attempt fails; the retry gets through.
        proxy.fail_from_part, proxy.fail_budget = 2, 4
        plan = write_plan(
            tmp_path / "plan.yaml",
            instances=[{"name": instance, "uri": services.mongo_uri("mongo-b"), "databases": [database]}],
            bucket=bucket,
            s3_endpoint=proxy.url,
            public_key_file=gpg_key.public_key_file,
            gnupghome=tmp_path / "home",
            influx_url=services.url("influxdb"),
            retries={"attempts": 1, "backoff_s": 0.1, "jitter": 0},
        )
        state = backup(plan_path=str(plan), return_state=True)
    assert state.is_completed(), state.message
    assert proxy.failed_requests == 4
    keys = stored_keys(s3_client, bucket)
    assert len(keys) == 2  # one object from the second attempt and its manifest
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # the first was aborted
    # Hooks fire only once retries are spent: a retried success writes no failure event.
    assert influx_points(services, "instance_backup_failed", f"\"instance\"='{instance}'") == []


def test_influxdb_outage_keeps_the_backup_and_fails_the_run_visibly(
    services, s3_client, bucket, gpg_key, prefect, tmp_path
):
    database = f"noinflux-{uuid.uuid4().hex[:4]}"
    with MongoClient(services.mongo_uri("mongo-b")) as client:
        client[database].c.insert_many([{"n": n} for n in range(10)])
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": "rs-b", "uri": services.mongo_uri("mongo-b"), "databases": [database]}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "home",
        influx_url="http://127.0.0.1:9",
    )
    state = backup(plan_path=str(plan), return_state=True)
    assert state.is_failed()
    assert "1 stored backups have no success event" in state.message
    keys = stored_keys(s3_client, bucket)
    assert len(keys) == 2 and any(k.endswith(".manifest.json") for k in keys)  # stored and committed


def test_listed_database_that_does_not_exist_fails_alone(services, s3_client, bucket, gpg_key, prefect, tmp_path):
    instance, present = f"rs-typo-{uuid.uuid4().hex[:4]}", f"present-{uuid.uuid4().hex[:4]}"
    with MongoClient(services.mongo_uri("mongo-b")) as client:
        client[present].c.insert_one({"ok": True})
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": instance, "uri": services.mongo_uri("mongo-b"), "databases": [present, "ordres"]}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "home",
        influx_url=services.url("influxdb"),
    )
    state = backup(plan_path=str(plan), return_state=True)
    assert state.is_failed() and f"{instance}/ordres" in state.message
    assert {k.split("/")[2] for k in stored_keys(s3_client, bucket)} == {present}
    failed = influx_points(services, "instance_backup_failed", f"\"instance\"='{instance}'")
    assert [(p["database"], p["stage"]) for p in failed] == [("ordres", "list")]
    assert "database ordres not found" in failed[0]["error"]
    # The instance is not reported whole: no bare success point for it.
    assert (
        influx_points(services, "instance_backup_completed", f"\"instance\"='{instance}' AND \"database\" = ''") == []
    )


def test_unknown_instance_on_the_command_line_is_named(services, bucket, tmp_path, capsys):
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": "rs-b", "uri": services.mongo_uri("mongo-b")}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        encryption={"passphrase_env": "P"},
    )
    assert main(["--plan", str(plan), "--instance", "rs-typo", "--dry-run"]) == 2
    assert "--instance rs-typo: not in the plan (it has rs-b)" in capsys.readouterr().err
