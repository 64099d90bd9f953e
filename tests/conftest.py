"""Shared fixtures: real local services (SecantusDB, moto, InfluxDB 1.6, VictoriaMetrics, on demand Prefect),
the real mongo tools under wine, an S3 client and fresh buckets on moto, and throwaway GnuPG keys.

The services run once per session on free loopback ports under the session's tmp folder and are stopped by
PID at the end, even when tests fail. Tests share them: give each test its own database, bucket or key
prefix rather than resetting a server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config

from devservices import (
    S3_TEST_CREDENTIALS,
    S3_TEST_REGION,
    GpgKey,
    LocalServices,
    MongoTools,
    stop_gpg_agents_under,
    throwaway_gpg_key,
)
from mongobackup.s3 import S3Storage
from tests.helpers import AWS_ENV, SESSION_SERVICES, free_port, new_bucket, storage_on

#: The session's Prefect server port, fixed before anything imports prefect. Prefect's log and event workers
#: run in threads of their own, which see the settings of import time rather than a `temporary_settings`
#: context: without PREFECT_API_URL in the environment from the start, they would start a throwaway server.
PREFECT_PORT = free_port()
os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{PREFECT_PORT}/api"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the wine tools, so `-m "not wine"` leaves them out."""
    for item in items:
        if "mongo_tools" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.wine)


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    """The local services of SESSION_SERVICES, started in parallel; anything started later on this
    object (`services.start(["prefect"])`) is stopped with them at the end of the session."""
    local = LocalServices(tmp_path_factory.mktemp("services"), ports={"prefect": PREFECT_PORT})
    try:
        local.start(SESSION_SERVICES)
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def prefect_api_url(services: LocalServices) -> str:
    """A Prefect server for the session, started on first use; its API URL (ending in /api)."""
    services.start(["prefect"])
    return services.url("prefect")


@pytest.fixture(scope="session")
def prefect(prefect_api_url: str) -> str:
    """Flows run in this session report to the local Prefect server (PREFECT_API_URL is set for the whole
    session, see PREFECT_PORT); its API URL. The server starts on first use."""
    assert os.environ["PREFECT_API_URL"] == prefect_api_url
    return prefect_api_url


@pytest.fixture(scope="session")
def kv_stores(services: LocalServices) -> LocalServices:
    """etcd 3.4 and the project's Consul snapshot-API stand-in, started on first use with the session's
    services (and stopped with them); the services object, for their URLs."""
    services.start(["etcd", "consul"])
    return services


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The dummy moto credentials and region in the environment, for code that builds its own boto3
    client from the default credential chain; no profile or session token from the machine leaks in."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    return dict(AWS_ENV)


@pytest.fixture(scope="session")
def mongo_tools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoTools]:
    """The real mongodump/mongorestore under wine, its prefix created here (about 5 s) rather than in
    whichever test runs first."""
    tools = MongoTools(tmp_path_factory.mktemp("wine") / "prefix")
    tools.prepare()
    try:
        yield tools
    finally:
        tools.shutdown()


@pytest.fixture(scope="session")
def s3_client(services: LocalServices) -> BaseClient:
    """A boto3 S3 client for moto: dummy credentials, us-east-1, path-style addressing."""
    return boto3.client(
        "s3",
        endpoint_url=services.url("moto"),
        region_name=S3_TEST_REGION,
        config=Config(s3={"addressing_style": "path"}),
        **S3_TEST_CREDENTIALS,
    )


@pytest.fixture
def bucket(s3_client: BaseClient) -> str:
    """A fresh, empty bucket on moto, unique to this test; its name."""
    return new_bucket(s3_client)


@pytest.fixture
def storage(services: LocalServices, bucket: str) -> S3Storage:
    """The code under test's S3Storage on this test's bucket on moto, over a client of its own (event hooks a
    test registers on `storage.client` stay in that test), with 5 MiB parts."""
    return storage_on(services.url("moto"), bucket)


@pytest.fixture(scope="session")
def gpg_key() -> Iterator[GpgKey]:
    """A passphrase-less key pair (ed25519 + cv25519 encryption subkey) in its own short GnuPG home."""
    with throwaway_gpg_key("Backup Test <backup@test>") as key:
        yield key


@pytest.fixture(scope="session")
def other_gpg_key() -> Iterator[GpgKey]:
    """A second, unrelated key pair in another home: for wrong-key and unknown-recipient tests."""
    with throwaway_gpg_key("Other Test <other@test>") as key:
        yield key


@pytest.fixture(scope="session", autouse=True)
def _default_gnupg_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """$GNUPGHOME for the session, under its tmp folder: code that falls back to it (a plan without
    `gnupghome`) never reads or writes the user's ~/.gnupg, and its gpg-agent is stopped like the others."""
    home = tmp_path_factory.mktemp("gnupghome")
    home.chmod(0o700)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GNUPGHOME", str(home))
        yield


@pytest.fixture(autouse=True)
def _stop_gpg_agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """gpg leaves a gpg-agent running for every GnuPG home it used (a plan's gnupghome under tmp_path, an
    empty keyring): after each test, stop those of the homes under the session's tmp folder."""
    yield
    stop_gpg_agents_under(tmp_path_factory.getbasetemp())
