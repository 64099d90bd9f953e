"""prefect.yaml as a user runs it, with the workers the README starts (a control worker, two backup workers with
one run each): `prefect deploy`, `prefect deployment run 'backup/nightly'`, whose parent fans out one run per
instance: over two workers at once, over one worker one after the other, and failing cleanly at its deadline.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from pymongo import MongoClient

from tests.helpers import influx_points, stored_keys
from tests.planfiles import write_plan

ROOT = Path(__file__).resolve().parent.parent
PREFECT = str(Path(sys.executable).parent / "prefect")


def prefect_cli(*args: str, api_url: str) -> str:
    done = subprocess.run(
        [PREFECT, "--no-prompt", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PREFECT_API_URL": api_url},
    )
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def wait_final(flow_run_id, timeout: float = 240.0):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                return run
            time.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} did not finish in {timeout} s")


@pytest.fixture(scope="module")
def deployed(services, prefect) -> str:
    """The project's prefect.yaml deployed to the session's server, with the README's workers polling: one on the
    control queue, two on the backups queue with --limit 1 (devservices starts them with those arguments)."""
    services.start(["prefect-worker", "prefect-worker-2", "prefect-worker-control"])
    prefect_cli("deploy", "--all", api_url=prefect)
    return prefect


@pytest.fixture
def moto_block(services, deployed) -> str:
    """Credentials for moto as a prefect-aws block: the worker's runs read them from the server."""
    from prefect_aws import AwsCredentials

    name = f"moto-{uuid.uuid4().hex[:6]}"
    AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1").save(name)
    return name


def two_instance_plan(
    tmp_path, services, bucket, gpg_key, moto_block, docs: int = 20, **sections
) -> tuple[Path, list[str], str]:
    database = f"deployed-{uuid.uuid4().hex[:6]}"
    instances = [f"rs-x{uuid.uuid4().hex[:4]}", f"rs-y{uuid.uuid4().hex[:4]}"]
    for service in ("mongo-a", "mongo-b"):
        with MongoClient(services.mongo_uri(service)) as client:
            client[database].c.insert_many([{"n": n, "pad": "x" * 300} for n in range(docs)])
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[
            {"name": instances[0], "uri": services.mongo_uri("mongo-a"), "databases": [database]},
            {"name": instances[1], "uri": services.mongo_uri("mongo-b"), "databases": [database]},
        ],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "home",
        influx_url=services.url("influxdb"),
        storage={
            "bucket": bucket,
            "endpoint_url": services.url("moto"),
            "region": "us-east-1",
            "credentials_block": moto_block,
            "part_size_mib": 5,
        },
        **sections,
    )
    return plan, instances, database


def run_nightly(plan: Path, api_url: str, timeout: float = 600.0):
    """`prefect deployment run 'backup/nightly'` as an operator types it; the parent and its instance runs once the
    parent is final (each child's state as it was then)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    out = prefect_cli("deployment", "run", "backup/nightly", "-p", f"plan_path={plan}", api_url=api_url)
    parent = wait_final(re.search(r"UUID: ([0-9a-f-]{36})", out).group(1), timeout=timeout)
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id]))
        )
    return parent, {run.parameters["instances"][0]: run for run in children}


def worker_of(run) -> str | None:
    return run.labels.get("prefect.worker.name")


def test_nightly_fans_out_over_two_workers_at_once(
    services, deployed, s3_client, bucket, gpg_key, moto_block, tmp_path
):
    # Enough data (about 10 MB each) that each instance run outlasts the few seconds by which a loaded machine
    # may start one worker's flow process after the other's.
    plan, instances, database = two_instance_plan(tmp_path, services, bucket, gpg_key, moto_block, docs=30_000)
    parent, children = run_nightly(plan, deployed)
    assert parent.state.is_completed(), parent.state.message
    assert worker_of(parent) == "prefect-worker-control"  # the parent holds no backup slot while it waits
    assert re.fullmatch(r"backup-(daily|weekly|monthly|quarterly|yearly)-\d{4}-\d{2}-\d{2}", parent.name)
    assert {name: run.name for name, run in children.items()} == {i: f"{parent.name}-{i}" for i in instances}
    assert {worker_of(run) for run in children.values()} == {"prefect-worker", "prefect-worker-2"}
    first, second = children.values()
    assert max(first.start_time, second.start_time) < min(first.end_time, second.end_time), "ran one after the other"

    keys = stored_keys(s3_client, bucket)
    assert sorted({k.split("/")[1] for k in keys}) == sorted(instances) and len(keys) == 4
    assert len({k.split("/")[0] for k in keys}) == 1  # every instance run used the parent's scheduled time
    for instance in instances:
        where = f"\"instance\"='{instance}' AND \"database\"='{database}'"
        assert len(influx_points(services, "instance_backup_completed", where)) == 1


def test_one_worker_finishes_both_instances_one_after_the_other(
    services, deployed, s3_client, bucket, gpg_key, moto_block, tmp_path
):
    plan, instances, _ = two_instance_plan(tmp_path, services, bucket, gpg_key, moto_block)
    services.stop(["prefect-worker-2"])
    try:
        parent, children = run_nightly(plan, deployed)
    finally:
        services.start(["prefect-worker-2"])
    assert parent.state.is_completed(), parent.state.message
    assert {worker_of(run) for run in children.values()} == {"prefect-worker"}
    assert sorted({k.split("/")[1] for k in stored_keys(s3_client, bucket)}) == sorted(instances)


def test_a_deadline_fails_the_parent_naming_the_unfinished_instances(
    services, deployed, bucket, gpg_key, moto_block, tmp_path
):
    from prefect.client.orchestration import get_client

    plan, instances, _ = two_instance_plan(
        tmp_path,
        services,
        bucket,
        gpg_key,
        moto_block,
        fan_out={"deadline_h": 0.001},  # 3.6 s: the paused queue starts nothing however long it waits
    )
    with get_client(sync_client=True) as client:
        queue = client.read_work_queue_by_name("backups", work_pool_name="local-process")
        client.update_work_queue(queue.id, is_paused=True)  # no backup worker takes anything
        try:
            parent, children = run_nightly(plan, deployed)
        finally:
            client.update_work_queue(queue.id, is_paused=False)
        logs = [log.message for log in client.read_logs(log_filter=_logs_of(parent.id))]
    assert parent.state.is_failed()
    for instance in instances:
        assert f"{instance} (never started, cancelled)" in parent.state.message
        assert children[instance].state.is_cancelled()
    assert "deadline of 3.6 s passed" in parent.state.message
    assert not [line for line in logs if "Traceback" in line or "unexpected exception" in line], logs


def _logs_of(flow_run_id):
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    return LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))


def test_every_deployment_of_prefect_yaml_is_on_the_server(deployed):
    import yaml
    from prefect.client.orchestration import get_client

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    flow_of = {
        "flows/backup.py:backup": "backup",
        "flows/firedrill.py:firedrill": "firedrill",
        "flows/watchdog.py:watchdog": "watchdog",
        "flows/retention.py:retention": "retention",
        "flows/oplog.py:oplog": "oplog",
        "flows/snapshot.py:snapshot": "snapshot",
    }
    wanted = {f"{flow_of[d['entrypoint']]}/{d['name']}" for d in spec["deployments"]}
    assert wanted == {
        "backup/nightly",
        "backup/instance",
        "snapshot/nightly",
        "snapshot/source",
        "firedrill/monthly",
        "firedrill/thaw",
        "watchdog/hourly",
        "retention/apply",
        "retention/prune",
        "oplog/rs-a",
        "oplog/rs-b",
    }
    with get_client(sync_client=True) as client:
        for name in wanted:
            deployment = client.read_deployment_by_name(name)
            assert deployment.work_pool_name == "local-process"
        assert client.read_deployment_by_name("backup/nightly").schedules[0].schedule.cron == "30 1 * * *"
        # The thaws are asked the day before the drill, at the same hour: Glacier takes hours.
        assert client.read_deployment_by_name("firedrill/monthly").schedules[0].schedule.cron == "0 6 2 * *"
        thaw = client.read_deployment_by_name("firedrill/thaw")
        assert thaw.schedules[0].schedule.cron == "0 6 1 * *" and thaw.parameters["thaw_only"] is True
        # Snapshots on the same schedule as the databases.
        assert client.read_deployment_by_name("snapshot/nightly").schedules[0].schedule.cron == "30 1 * * *"
        archiver = client.read_deployment_by_name("oplog/rs-a")
        assert archiver.parameters["instance"] == "rs-a"
        assert archiver.global_concurrency_limit is not None and archiver.global_concurrency_limit.limit == 1


def test_the_oplog_deployment_archives_until_cancelled_and_commits_what_it_read(
    services, deployed, s3_client, bucket, gpg_key, moto_block, tmp_path
):
    """A long-running archiver as a deployment run on a worker; cancelling it (SIGTERM to its process)
    commits the open segment before the run ends Cancelled."""
    from prefect.client.orchestration import get_client

    from mongobackup.pitr.chain import scan_archive
    from mongobackup.s3 import S3Storage

    services.start(["mongo-pitr", "prefect-worker-oplog"])
    uri = services.mongo_uri("mongo-pitr")
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": "rs-flow", "uri": uri}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "home",
        storage={
            "bucket": bucket,
            "endpoint_url": services.url("moto"),
            "region": "us-east-1",
            "credentials_block": moto_block,
        },
        pitr={"segment_s": 600, "segment_mib": 16, "max_lag_s": 1200},  # no cut before the cancel
    )
    out = prefect_cli(
        "deployment", "run", "oplog/rs-a", "-p", f"plan_path={plan}", "-p", "instance=rs-flow", api_url=deployed
    )
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)
    storage = S3Storage(s3_client, bucket)
    with MongoClient(uri) as client, get_client(sync_client=True) as prefect_client:
        deadline = time.monotonic() + 120
        while prefect_client.read_flow_run(flow_run_id).state.name != "Running":
            assert time.monotonic() < deadline, "the archiver run did not start"
            time.sleep(1)
        time.sleep(5)  # the archiver has read the oplog by now; nothing is due for ten minutes
        client[f"flow-{uuid.uuid4().hex[:6]}"].marker.insert_one({"_id": "written before the cancel"})
        written = client.local["oplog.rs"].find_one({}, sort=[("$natural", -1)])["ts"]
        time.sleep(3)
        assert scan_archive(storage, "", "rs-flow").segments == ()
        prefect_cli("flow-run", "cancel", flow_run_id, api_url=deployed)
        run = wait_final(flow_run_id)
    assert run.state.is_cancelled(), run.state
    newest = scan_archive(storage, "", "rs-flow").newest
    assert newest is not None and newest.last >= written, "the open segment was not committed on cancel"
