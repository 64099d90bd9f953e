"""`python -m flows.setup` against the real Prefect server: idempotent, blocks named when missing, and the two
automations it creates really act: a failed backup run reaches the webhook, a flow run process killed with -9
ends Crashed once its heartbeats stop.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from flows import automations
from flows.backup import backup
from tests.planfiles import write_plan

pytestmark = pytest.mark.usefixtures("aws_env")  # flows build their S3 client from the default chain

ROOT = Path(__file__).resolve().parent.parent
HEARTBEAT_S = 30  # the shortest period Prefect allows
CRASH_WINDOW_S = 35  # a run is crashed after this long without a heartbeat: above HEARTBEAT_S, so a live run never is


class Webhook:
    """A local HTTP server recording every POST body: the notification block's other end."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, text: str, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for body in list(self.bodies):
                if text in json.dumps(body):
                    return body
            time.sleep(0.5)
        raise AssertionError(f"no notification mentioning {text!r} in {timeout} s; got {self.bodies}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def plan_with_blocks(tmp_path: Path, services, bucket: str, gpg_key, credentials: str, uri_secret: str) -> Path:
    return write_plan(
        tmp_path / f"setup-{uuid.uuid4().hex[:6]}.yaml",
        instances=[{"name": "rs-setup", "uri_secret": uri_secret, "databases": ["shop"]}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        storage={"bucket": bucket, "endpoint_url": services.url("moto"), "credentials_block": credentials},
        pitr={},  # its oplog archiver is deployed under the plan's instance name
    )


@pytest.fixture(scope="module")
def webhook():
    hook = Webhook()
    try:
        yield hook
    finally:
        hook.close()


@pytest.fixture(scope="module")
def configured(prefect, services, webhook, s3_client, gpg_key, tmp_path_factory):
    """The setup run once for the module (its blocks made first); its plan and report. The automations are
    removed at the end, so that the short crash window never touches another module's runs."""
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect_aws import AwsCredentials

    tag = uuid.uuid4().hex[:6]
    AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1").save(
        f"moto-{tag}"
    )
    Secret(value=services.mongo_uri("mongo-a")).save(f"mongo-a-uri-{tag}")
    bucket = f"setup-{tag}"
    s3_client.create_bucket(Bucket=bucket)
    plan_path = plan_with_blocks(
        tmp_path_factory.mktemp("setup"), services, bucket, gpg_key, f"moto-{tag}", f"mongo-a-uri-{tag}"
    )
    first = run_setup(plan_path, "--webhook-url", webhook.url, "--heartbeat-window-s", str(CRASH_WINDOW_S))
    try:
        yield plan_path, first
    finally:
        with get_client(sync_client=True) as client:
            for name in (automations.NOTIFY_AUTOMATION, automations.CRASH_AUTOMATION):
                for automation in client.read_automations_by_name(name):
                    client.delete_automation(automation.id)


def run_setup(plan_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The command exactly as the README gives it, from the project folder."""
    return subprocess.run(
        [sys.executable, "-m", "flows.setup", "--plan", str(plan_path), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )


def report(done: subprocess.CompletedProcess) -> dict[str, str]:
    """{what: outcome} of the report lines."""
    lines = [line for line in done.stdout.splitlines() if line and not line.startswith("setup:")]
    return {line[13:].split(": ")[0]: line[:12].strip() for line in lines}


def test_setup_twice_changes_nothing_the_second_time(configured, webhook):
    plan_path, first = configured
    assert first.returncode == 0, first.stdout + first.stderr
    assert "MISSING" not in report(first).values()
    again = run_setup(plan_path, "--webhook-url", webhook.url, "--heartbeat-window-s", str(CRASH_WINDOW_S))
    assert again.returncode == 0, again.stdout + again.stderr
    outcomes = report(again)
    assert set(outcomes.values()) == {"ok"}, again.stdout
    assert {
        "work pool local-process",
        "work queue local-process/backups",
        "work queue local-process/control",
        "deployment backup/nightly",
        "deployment firedrill/monthly",
        "deployment oplog/rs-setup",
        f"automation {automations.NOTIFY_AUTOMATION!r}",
        f"automation {automations.CRASH_AUTOMATION!r}",
    } <= set(outcomes)
    assert sum(1 for what in outcomes if what.startswith(("aws-credentials block", "secret block"))) == 2


def test_backup_and_drill_deployments_run_one_at_a_time_and_queue_the_next(configured):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for name in ("backup/nightly", "firedrill/monthly"):
            deployment = client.read_deployment_by_name(name)
            assert deployment.global_concurrency_limit.limit == 1
            assert deployment.concurrency_options.collision_strategy.value == "ENQUEUE"
            assert deployment.parameters["plan_path"] == str(configured[0])


def test_setup_names_each_missing_block_and_the_field_that_wants_it(configured, services, gpg_key, tmp_path):
    plan_path = plan_with_blocks(tmp_path, services, "no-bucket", gpg_key, "no-such-aws", "no-such-secret")
    done = run_setup(plan_path, "--check")
    assert done.returncode == 1
    assert (
        "MISSING      aws-credentials block no-such-aws: plan field storage.credentials_block names it" in done.stdout
    )
    assert "MISSING      secret block no-such-secret: plan field instances.0.uri_secret names it" in done.stdout


def test_a_failed_backup_run_reaches_the_webhook(configured, webhook, services, bucket, gpg_key, tmp_path):
    with socket.socket() as probe:  # a port nothing listens on: the instance is down
        probe.bind(("127.0.0.1", 0))
        down = f"mongodb://127.0.0.1:{probe.getsockname()[1]}/?directConnection=true"
    plan = write_plan(
        tmp_path / "down.yaml",
        instances=[{"name": "rs-down", "uri": down, "databases": ["shop"], "connect_timeout_s": 1}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
    )
    state = backup(plan_path=str(plan), return_state=True)
    assert state.is_failed()
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        name = client.read_flow_run(state.state_details.flow_run_id).name
    message = webhook.wait_for(name)
    assert "Failed" in message["title"] and "rs-down" in message["text"]


def test_a_killed_run_ends_crashed_by_the_heartbeat_automation(
    configured, webhook, services, bucket, gpg_key, tmp_path
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with socket.socket() as hole:
        # Accepts connections into its backlog and never answers: the dump waits (up to 300 s) as on a hung server.
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)
        plan = write_plan(
            tmp_path / "hung.yaml",
            instances=[
                {
                    "name": "rs-hung",
                    "uri": f"mongodb://127.0.0.1:{hole.getsockname()[1]}/?directConnection=true",
                    "databases": ["shop"],
                    "connect_timeout_s": 300,
                }
            ],
            bucket=bucket,
            s3_endpoint=services.url("moto"),
            public_key_file=gpg_key.public_key_file,
        )
        env = {**os.environ, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}
        child = subprocess.Popen(
            [sys.executable, "-m", "flows.backup", "--plan", str(plan)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            with get_client(sync_client=True) as client:
                run = _wait(
                    lambda: next(
                        (
                            r
                            for r in client.read_flow_runs(
                                flow_filter=FlowFilter(name=FlowFilterName(any_=["backup"])),
                                sort=FlowRunSort.START_TIME_DESC,
                                limit=20,
                            )
                            if r.parameters.get("plan_path") == str(plan) and r.state and r.state.is_running()
                        ),
                        None,
                    ),
                    "the run to start",
                )
                _wait(lambda: _heartbeats(services, run.id), "its first heartbeat")
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                crashed = _wait(
                    lambda: (lambda r: r if r.state.is_final() else None)(client.read_flow_run(run.id)),
                    "the run to end",
                    timeout=CRASH_WINDOW_S + 150,
                )
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
    assert crashed.state.type.value == "CRASHED", crashed.state
    assert f"No heartbeat for {CRASH_WINDOW_S} s" in crashed.state.message
    webhook.wait_for(crashed.name)  # a crashed run notifies too


def _heartbeats(services, flow_run_id) -> int:
    reply = httpx.post(
        f"{services.url('prefect')}/events/filter",
        json={
            "filter": {
                "event": {"name": ["prefect.flow-run.heartbeat"]},
                "resource": {"id": [f"prefect.flow-run.{flow_run_id}"]},
            },
            "limit": 5,
        },
        timeout=10,
    )
    reply.raise_for_status()
    return len(reply.json()["events"])


def _wait(probe, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"waited {timeout:.0f} s for {what}")


def test_the_oplog_archiver_is_deployed_per_instance_of_the_plan_not_per_demo_name(configured):
    """prefect.yaml names the demo's instances (rs-a, rs-b); setup deploys the plan's own, shaped alike."""
    from prefect.client.orchestration import get_client

    plan_path, first = configured
    outcomes = report(first)
    assert outcomes["deployment oplog/rs-setup"] == "created", first.stdout
    assert not any(what.startswith(("deployment oplog/rs-a", "deployment oplog/rs-b")) for what in outcomes)
    with get_client(sync_client=True) as client:
        archiver = client.read_deployment_by_name("oplog/rs-setup")
    assert archiver.parameters == {"plan_path": str(plan_path), "instance": "rs-setup"}
    assert archiver.entrypoint == "flows/oplog.py:oplog" and archiver.work_queue_name == "oplog"
    assert archiver.global_concurrency_limit.limit == 1


@pytest.mark.parametrize(("pitr", "archivers"), [(None, []), ({}, [("rs-x", "rs-x"), ("rs-y", "rs-y")])])
def test_the_plans_oplog_archivers_replace_the_files_and_a_plan_without_pitr_gets_none(tmp_path, pitr, archivers):
    from flows.setup import OPLOG_ENTRYPOINT, plan_spec, project_spec
    from mongobackup.plan import load_plan

    plan_path = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": "rs-x", "uri": "mongodb://127.0.0.1:1"}, {"name": "rs-y", "uri": "mongodb://127.0.0.1:2"}],
        bucket="setup-plan-spec",
        s3_endpoint="http://127.0.0.1:1",
        encryption={"passphrase_env": "BACKUP_PASSPHRASE"},
        **({} if pitr is None else {"pitr": pitr}),
    )
    spec = project_spec()
    deployments = plan_spec(spec, load_plan(plan_path))["deployments"]
    found = [(d["name"], d["parameters"]["instance"]) for d in deployments if d["entrypoint"] == OPLOG_ENTRYPOINT]
    assert found == archivers
    others = [d for d in spec["deployments"] if d["entrypoint"] != OPLOG_ENTRYPOINT]
    assert deployments[: len(others)] == others
