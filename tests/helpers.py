"""Plain helpers shared by the test modules; the fixtures are in conftest.py. A test module imports helpers from
here (or from tests/planfiles.py for plans and tests/dataset.py for the rich dataset), never from another test
module, and a helper is defined once.
"""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.client import BaseClient
from botocore.config import Config
from pymongo import MongoClient

from devservices import S3_TEST_CREDENTIALS, S3_TEST_REGION, LocalServices
from mongobackup.backup import Compression, back_up_database, tool_version
from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.dump import DatabaseDump
from mongobackup.keys import BackupLocation
from mongobackup.manifest import BackupManifest, EncryptionRecord, Sizes
from mongobackup.s3 import S3Storage, s3_client
from mongobackup.tiers import Tier
from mongobackup.units import MIB
from tests.dataset import snapshot

#: What the `services` fixture starts. Prefect (about 10-20 s) and SeaweedFS start on demand.
SESSION_SERVICES = ("mongo-a", "mongo-b", "mongo-scratch", "moto", "influxdb", "victoria")

#: The dummy moto credentials as environment variables, for code that builds its own S3 client from the
#: default credential chain (a flow, a child process).
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": S3_TEST_CREDENTIALS["aws_access_key_id"],
    "AWS_SECRET_ACCESS_KEY": S3_TEST_CREDENTIALS["aws_secret_access_key"],
    "AWS_DEFAULT_REGION": S3_TEST_REGION,
}


def unique(prefix: str) -> str:
    """A name no other test uses (a database, an instance, a target), so tests can share the servers."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- S3 ------------------------------------------------------------------------------------------------------


def own_s3_client(
    endpoint_url: str, credentials: dict[str, str] | None = None, *, wire_attempts: int | None = None
) -> Any:
    """A boto3 client of the code under test (`storage.s3_client`) with the dummy credentials (or those given)
    given explicitly, and of its own: event hooks a test registers on it stay in that test.

    `wire_attempts`: botocore's attempts per request instead of the code's (`WIRE_RETRIES`), for a fault that
    never heals, where each further attempt only adds a random backoff to wait out."""
    session = boto3.Session(region_name=S3_TEST_REGION, **(credentials or S3_TEST_CREDENTIALS))
    client = s3_client(session=session, endpoint_url=endpoint_url, region=S3_TEST_REGION)
    return fewer_wire_attempts(client, session, wire_attempts)


def fewer_wire_attempts(client: Any, session: boto3.Session, wire_attempts: int | None) -> Any:
    """`client` again with `wire_attempts` attempts per request on the wire (the rest of its configuration as
    the code made it); `client` itself when `wire_attempts` is None."""
    if wire_attempts is None:
        return client
    config = client.meta.config.merge(Config(retries={"mode": "standard", "max_attempts": wire_attempts}))
    return session.client(
        "s3", endpoint_url=client.meta.endpoint_url, region_name=client.meta.region_name, config=config
    )


def storage_on(
    endpoint_url: str,
    bucket: str,
    *,
    part_size: int = 5 * MIB,
    credentials: dict[str, str] | None = None,
    wire_attempts: int | None = None,
    **options: Any,
) -> S3Storage:
    """`S3Storage` for `bucket` on the S3 server at `endpoint_url`, over a client of its own; 5 MiB parts (the
    smallest S3 allows), so a few MB already make a multipart upload; `wire_attempts` as `own_s3_client` takes
    it; `options` as S3Storage takes them."""
    client = own_s3_client(endpoint_url, credentials, wire_attempts=wire_attempts)
    return S3Storage(client, bucket, part_size=part_size, **options)


def new_bucket(s3: BaseClient) -> str:
    """A fresh, empty bucket on the server of `s3`; its name."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


def stored_keys(s3: BaseClient, bucket: str) -> list[str]:
    """Every key in `bucket` (one page: tests store a few), sorted."""
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def decrypt_object(s3: BaseClient, bucket: str, key: str, gnupghome: Path) -> bytes:
    """The plain archive inside a stored object, opened with the stock gpg and zstd command-line tools."""
    stored = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    compressed = subprocess.run(
        ["gpg", "--homedir", str(gnupghome), "--batch", "--quiet", "--decrypt"],
        input=stored,
        capture_output=True,
        check=True,
    ).stdout
    return subprocess.run(["zstd", "-d", "-c", "-q"], input=compressed, capture_output=True, check=True).stdout


# --- the stock MongoDB tools -----------------------------------------------------------------------------------


def stock_mongodump_script(mongo_tools: Any, folder: Path) -> Path:
    """`folder/mongodump`: the real mongodump (under wine) behind a script, as a user who has it installed
    would run it (the `command` of the mongodump engine, or first on PATH)."""
    wrapper = folder / "mongodump"
    folder.mkdir(parents=True, exist_ok=True)
    env = [f"{k}={v}" for k, v in mongo_tools.env().items() if k.startswith("WINE")]
    wrapper.write_text(f'#!/bin/sh\nexec env {shlex.join([*env, *mongo_tools.argv("mongodump")])} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


# --- backups -------------------------------------------------------------------------------------------------


def make_backup(
    client: MongoClient,
    storage: S3Storage,
    gpg: Gpg,
    instance: str,
    database: str,
    keys: EncryptionKeys,
    *,
    when: datetime | None = None,
    tier: Tier = Tier.DAILY,
) -> BackupManifest:
    """A committed backup (daily unless told) made by the core functions the backup flow calls (no Prefect:
    fast), scheduled `when` (now unless told)."""
    when = when or datetime.now(UTC)
    location = BackupLocation("", tier, instance, database, when, uuid.uuid4().hex[:8])
    return back_up_database(
        dump=DatabaseDump(client, instance, database, tool_version=tool_version()),
        location=location,
        storage=storage,
        gpg=gpg,
        keys=keys,
        compression=Compression(),
    )


def fake_manifest(
    location: BackupLocation, *, finished_at: datetime | None = None, size: int = 3, raw_bytes: int | None = None
) -> BackupManifest:
    """A valid manifest for `location` that describes no real object (for code that reads only the manifest):
    finished a minute after the location's time unless told, `size` bytes stored, `raw_bytes` before zstd."""
    return BackupManifest(
        archive_format="0.1",
        tool="mongo-backup-flows",
        tool_version="test",
        instance=location.instance,
        replica_set="secantus",
        server_version="8.2.11",
        database=location.database,
        tier=location.tier.value,
        object_key=location.object_key,
        run_id=location.run_id,
        scheduled_at=location.taken_at,
        started_at=location.taken_at,
        finished_at=finished_at or location.taken_at + timedelta(minutes=1),
        compression="zstd-3",
        sizes=Sizes(raw_bytes=raw_bytes or size, compressed_bytes=size, encrypted_bytes=size),
        sha256="0" * 64,
        etag="x",
        encryption=EncryptionRecord(method="symmetric", cipher="AES256"),
        namespaces=[],
    )


def assert_same(source_uri: str, source_db: str, restored_uri: str, restored_db: str) -> dict:
    """Both databases hold the same collections, options, indexes, views and documents (byte for byte)."""
    with MongoClient(source_uri) as source, MongoClient(restored_uri) as restored:
        expected, actual = snapshot(source, source_db), snapshot(restored, restored_db)
    assert sorted(actual) == sorted(expected)
    for name in expected:
        assert actual[name] == expected[name], f"collection {name} differs after restore"
    return actual


def drop(uri: str, *databases: str) -> None:
    with MongoClient(uri) as client:
        for name in databases:
            client.drop_database(name)


def database_names(uri: str) -> list[str]:
    with MongoClient(uri) as client:
        return client.list_database_names()


# --- events and run results ----------------------------------------------------------------------------------


def influxql(base_url: str, query: str, *, auth: tuple[str, str] | None = None, epoch: str | None = None) -> list:
    """The series an InfluxQL query on the `backups` database returns ([] when it matches nothing); times as
    RFC 3339 text, or as integers in `epoch` units ("ns")."""
    params = {"db": "backups", "q": query, **({"epoch": epoch} if epoch else {})}
    response = httpx.get(f"{base_url}/query", params=params, auth=auth, timeout=10)
    response.raise_for_status()
    result = response.json()["results"][0]
    assert "error" not in result, f"{result['error']}: {query}"
    return result.get("series", [])


def influx_points(services: LocalServices, measurement: str, where: str) -> list[dict[str, Any]]:
    """The points of `measurement` matching the InfluxQL condition `where` on the session's InfluxDB, each a
    dict of every column (None where a point has no such field or tag)."""
    series = influxql(services.url("influxdb"), f'SELECT * FROM "{measurement}" WHERE {where}')
    return [dict(zip(s["columns"], v, strict=True)) for s in series for v in s["values"]]


def vm_export(base_url: str, selector: str, expected: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """VictoriaMetrics' raw samples of `selector`, waiting until `expected` series are there."""
    deadline = time.monotonic() + timeout
    while True:
        httpx.get(f"{base_url}/internal/force_flush", timeout=10).raise_for_status()
        response = httpx.post(f"{base_url}/api/v1/export", data={"match[]": selector}, timeout=10)
        response.raise_for_status()
        series = [httpx.Response(200, content=line).json() for line in response.text.splitlines() if line]
        if len(series) >= expected or time.monotonic() > deadline:
            return series
        time.sleep(0.2)


def run_artifact_rows(flow_run_id: Any) -> list[dict]:
    """The table artifact the run published, read back from the Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), type=ArtifactFilterType(any_=["table"])
            )
        )
    assert len(artifacts) == 1
    data = artifacts[0].data
    return json.loads(data) if isinstance(data, str) else data
