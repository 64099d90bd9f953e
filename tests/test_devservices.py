"""The local services really start, answer, and stop by recorded PID; the wine tools and GPG keys work."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path

import boto3
import gnupg
import psutil
import pymongo
import pytest
from botocore.client import BaseClient
from botocore.config import Config

from devservices import (
    INFLUX_DATABASE,
    PREFECT_WORK_POOL,
    S3_TEST_CREDENTIALS,
    S3_TEST_REGION,
    GpgKey,
    LocalServices,
    MongoToolError,
    MongoTools,
    ServiceError,
)
from devservices.catalog import SPECS, http_status
from tests.helpers import SESSION_SERVICES


#: What the `services` fixture in conftest.py starts.
def _refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_session_services_answer_their_health_checks(services: LocalServices, s3_client: BaseClient) -> None:
    assert {s.name: s.state for s in services.status(SESSION_SERVICES)} == dict.fromkeys(SESSION_SERVICES, "up")
    for name in ("mongo-a", "mongo-b", "mongo-scratch"):
        with pymongo.MongoClient(services.mongo_uri(name), serverSelectionTimeoutMS=5000) as client:
            assert client.admin.command("ping")["ok"] == 1
    assert "Buckets" in s3_client.list_buckets()
    query = urllib.parse.urlencode({"q": "SHOW DATABASES"})
    assert http_status(f"{services.url('influxdb')}/query?{query}") == 200
    assert http_status(f"{services.url('victoria')}/health") == 200
    # each service got its own port, recorded beside its pid
    ports = [services.port(n) for n in SESSION_SERVICES]
    assert len(set(ports)) == len(ports)
    assert all((services.state_dir(n) / "pid").is_file() for n in SESSION_SERVICES)


def test_influxdb_has_the_backups_database(services: LocalServices) -> None:
    import urllib.request

    query = urllib.parse.urlencode({"q": "SHOW DATABASES"})
    with urllib.request.urlopen(f"{services.url('influxdb')}/query?{query}", timeout=10) as response:
        body = json.load(response)
    names = [row[0] for row in body["results"][0]["series"][0]["values"]]
    assert INFLUX_DATABASE in names


def test_a_second_instance_stops_services_by_recorded_pid(tmp_path: Path) -> None:
    first = LocalServices(tmp_path)
    first.start(["moto", "victoria"])
    pids = {s.name: s.pid for s in first.status(["moto", "victoria"])}
    ports = {n: first.port(n) for n in pids}

    second = LocalServices(tmp_path)  # knows nothing but the run folder
    assert {n: second.port(n) for n in pids} == ports
    second.stop()

    assert all(_gone(pid) for pid in pids.values() if pid is not None)
    assert all(_refuses_connections(port) for port in ports.values())
    assert [s.state for s in second.status(["moto", "victoria"])] == ["down", "down"]
    second.stop()  # stopping what is stopped is a no-op
    first.stop()  # the starter only reaps its children
    assert all(not psutil.pid_exists(pid) for pid in pids.values() if pid is not None)


def test_start_is_idempotent(tmp_path: Path) -> None:
    local = LocalServices(tmp_path)
    try:
        local.start(["moto"])
        before = local.status(["moto"])[0]
        local.start(["moto"])
        LocalServices(tmp_path).start(["moto"])  # another process adopts it instead of starting a second
        assert local.status(["moto"])[0] == before
    finally:
        local.stop()


def test_a_restarted_mongo_keeps_its_port_and_data(tmp_path: Path) -> None:
    local = LocalServices(tmp_path)
    try:
        local.start(["mongo-a"])
        uri = local.mongo_uri("mongo-a")
        with pymongo.MongoClient(uri) as client:
            client.keep.things.insert_one({"_id": 1})
        local.stop(["mongo-a"])  # the server closes first: its side of the connection sits in TIME_WAIT
        local.start(["mongo-a"])
        assert local.mongo_uri("mongo-a") == uri  # a plan written with the old URI still reaches it
        with pymongo.MongoClient(uri) as client:
            assert client.keep.things.find_one() == {"_id": 1}
    finally:
        local.stop()


def test_fixed_ports_are_used(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    local = LocalServices(tmp_path, {"moto": port})
    try:
        local.start(["moto"])
        assert local.url("moto") == f"http://127.0.0.1:{port}"
        assert LocalServices(tmp_path).port("moto") == port
    finally:
        local.stop()


def test_a_fixed_port_held_by_another_process_is_refused(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(ServiceError, match=f"moto: its port {port} is taken"):
            LocalServices(tmp_path, {"moto": port}).start(["moto"])


def test_a_failing_binary_names_the_service_and_its_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "victoria-metrics"
    fake.write_text("#!/bin/sh\necho 'boom: cannot open storage' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    local = LocalServices(tmp_path / "run")

    with pytest.raises(ServiceError) as caught:
        local.start(["victoria"])

    message = str(caught.value)
    log = local.log_file("victoria")
    assert caught.value.service == "victoria"
    assert message.startswith("victoria: exited with code 3")
    assert str(log) in message
    assert "boom: cannot open storage" in message  # the log's tail comes with it
    assert local.status(["victoria"])[0].state == "down"
    local.stop()


_STUBBORN_SERVER = """\
import http.server, signal, subprocess, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
helper = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"])
open("helper.pid", "w").write(str(helper.pid))
port = int(next(a for a in sys.argv if a.startswith("-httpListenAddr=")).rsplit(":", 1)[1])
http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def test_stop_kills_a_group_that_ignores_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "victoria-metrics"
    fake.write_text(f"#!{sys.executable}\n{_STUBBORN_SERVER}")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(SPECS["victoria"], "healthy", lambda port: http_status(f"http://127.0.0.1:{port}/") == 200)
    monkeypatch.setattr(SPECS["victoria"], "stop_timeout", 0.5)
    local = LocalServices(tmp_path / "run")
    local.start(["victoria"])
    server_pid = local.status(["victoria"])[0].pid
    helper_pid = int((local.state_dir("victoria") / "helper.pid").read_text())

    LocalServices(tmp_path / "run").stop(["victoria"])  # not the parent: cannot reap, must still finish

    assert server_pid is not None and _gone(server_pid)
    assert _gone(helper_pid)  # the server's own group went with it
    local.stop()


def test_a_missing_binary_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceError, match=r"victoria: 'victoria-metrics' is not in .* apt-get install"):
        LocalServices(tmp_path / "run").start(["victoria"])


def test_unknown_service_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown service 'mongo-c'"):
        LocalServices(tmp_path).start(["mongo-c"])
    with pytest.raises(ValueError, match="mongo_uri"):
        LocalServices(tmp_path, {"mongo-a": 1}).url("mongo-a")


def test_cli_start_status_env_stop(tmp_path: Path) -> None:
    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "devservices", *args, "--run-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout

    cli("start", "moto")
    try:
        assert any(line.split()[0] == "moto" and line.endswith(" up") for line in cli("status").splitlines())
        exports = cli("env")
        port = LocalServices(tmp_path).port("moto")
        assert f"export S3_ENDPOINT_URL=http://127.0.0.1:{port}" in exports.splitlines()
        assert "# mongo-a: down" in exports
    finally:
        cli("stop")
    assert any(line.split()[0] == "moto" and line.endswith(" down") for line in cli("status").splitlines())
    assert _refuses_connections(port)


def test_prefect_server_and_worker_start_on_demand(services: LocalServices) -> None:
    services.start(["prefect-worker"])  # starts the server first
    api = services.url("prefect")
    assert api.endswith("/api")
    assert http_status(f"{api}/health") == 200
    assert http_status(f"{services.url('prefect-worker')}/health") == 200
    assert http_status(f"{api}/work_pools/{PREFECT_WORK_POOL}") == 200


def test_prefect_fixture_points_flows_at_the_local_server(prefect: str) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client

    @flow(name="devservices-check")
    def check() -> int:
        return 42

    assert check() == 42
    assert os.environ["PREFECT_API_URL"] == prefect
    with get_client(sync_client=True) as client:
        assert str(client.api_url).rstrip("/") == prefect
        assert client.read_flow_by_name("devservices-check").name == "devservices-check"


def test_aws_env_holds_the_dummy_credentials(aws_env: dict[str, str], services: LocalServices) -> None:
    s3 = boto3.client("s3", endpoint_url=services.url("moto"))  # the default credential chain
    assert "Buckets" in s3.list_buckets()
    assert os.environ["AWS_ACCESS_KEY_ID"] == aws_env["AWS_ACCESS_KEY_ID"] == "testing"


def test_seaweedfs_serves_s3(tmp_path: Path) -> None:
    local = LocalServices(tmp_path)
    try:
        local.start(["seaweedfs"])
        s3 = boto3.client(
            "s3",
            endpoint_url=local.url("seaweedfs"),
            region_name=S3_TEST_REGION,
            config=Config(s3={"addressing_style": "path"}),
            **S3_TEST_CREDENTIALS,
        )
        s3.create_bucket(Bucket="devservices-check")
        s3.put_object(Bucket="devservices-check", Key="k", Body=b"on disk")
        assert s3.get_object(Bucket="devservices-check", Key="k")["Body"].read() == b"on disk"
    finally:
        local.stop()


def test_mongodump_archive_restores_through_stdin(
    services: LocalServices, mongo_tools: MongoTools, tmp_path: Path
) -> None:
    database = f"devservices_wine_{uuid.uuid4().hex[:8]}"
    docs = [{"_id": i, "name": f"doc {i}", "blob": bytes([i]) * 100} for i in range(50)]
    with pymongo.MongoClient(services.mongo_uri("mongo-a")) as source:
        source[database]["things"].insert_many(docs)
    archive = tmp_path / "dump.archive"

    mongo_tools.run("mongodump", f"--uri={services.mongo_uri('mongo-a')}", f"--db={database}", f"--archive={archive}")
    assert archive.stat().st_size > 5000
    with archive.open("rb") as stdin:
        mongo_tools.run(
            "mongorestore",
            f"--uri={services.mongo_uri('mongo-scratch')}",
            f"--nsInclude={database}.*",
            "--archive",
            stdin=stdin,
        )

    with pymongo.MongoClient(services.mongo_uri("mongo-scratch")) as target:
        assert list(target[database]["things"].find().sort("_id")) == docs
        target.drop_database(database)
    with pymongo.MongoClient(services.mongo_uri("mongo-a")) as source:
        source.drop_database(database)


def test_mongo_tool_failures_carry_stderr(mongo_tools: MongoTools) -> None:
    with pytest.raises(MongoToolError, match="no-such-flag") as caught:
        mongo_tools.run("mongodump", "--no-such-flag")
    assert caught.value.returncode != 0
    with pytest.raises(ValueError, match="--flag=/path"):
        mongo_tools.argv("mongodump", "--out", "/tmp/x")


def test_gpg_keys_encrypt_for_their_own_home_only(gpg_key: GpgKey, other_gpg_key: GpgKey) -> None:
    assert len(gpg_key.home.as_posix()) < 40  # gpg-agent's socket path must stay short
    assert gpg_key.fingerprint != other_gpg_key.fingerprint
    ours = gnupg.GPG(gnupghome=str(gpg_key.home))
    theirs = gnupg.GPG(gnupghome=str(other_gpg_key.home))

    encrypted = ours.encrypt(b"secret dump", gpg_key.fingerprint, armor=False)
    assert encrypted.ok, encrypted.status
    assert ours.decrypt(encrypted.data).data == b"secret dump"
    assert not theirs.decrypt(encrypted.data).ok

    imported = theirs.import_keys(gpg_key.public_key_file.read_text())
    assert imported.fingerprints == [gpg_key.fingerprint]
