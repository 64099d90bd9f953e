"""Fixtures of the point-in-time recovery tests: their own SecantusDB (restarted and rolled over on purpose, so
never the shared ones), a bucket's storage, a plan with a `pitr` section, archiver processes stopped by PID."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devservices import GpgKey, LocalServices
from mongobackup.s3 import S3Storage
from tests.helpers import storage_on
from tests.pitr.helpers import ArchiverProcess, pitr_plan


@pytest.fixture(scope="session")
def pitr_mongo(services: LocalServices) -> str:
    """The URI of a SecantusDB of the PITR tests alone, writing a no-op entry every second (as mongod does
    every 10 s), started on first use."""
    services.start(["mongo-pitr"])
    return services.mongo_uri("mongo-pitr")


@pytest.fixture
def storage(services: LocalServices, bucket: str) -> S3Storage:
    return storage_on(services.url("moto"), bucket)


@pytest.fixture
def plan_path(
    tmp_path: Path, pitr_mongo: str, services: LocalServices, bucket: str, gpg_key: GpgKey, aws_env: dict[str, str]
) -> Path:
    """A plan archiving the PITR server into the test's bucket; the moto credentials are in the environment."""
    return pitr_plan(tmp_path, mongo_uri=pitr_mongo, bucket=bucket, s3_endpoint=services.url("moto"), gpg_key=gpg_key)


@pytest.fixture
def archiver_process(tmp_path: Path) -> Iterator[Callable[[Path], ArchiverProcess]]:
    """Starts archiver processes; any still running at the end of the test is killed (by its PID)."""
    started: list[ArchiverProcess] = []

    def start(plan_path: Path) -> ArchiverProcess:
        process = ArchiverProcess(plan_path, tmp_path / f"archiver-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()
