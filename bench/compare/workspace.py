"""Where the comparative benchmark runs: its services, key and scratch folder (`Bench`), one size's data
(`SizeData`), and the chores every subject shares (buckets, restored databases, s3cmd's config)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from bench.compare.settings import INSTANCE_PARTS
from bench.datasets import COLLECTION, META_DATABASE, Dataset, ensure_dataset
from bench.harness import MB, MOTO_ENV
from devservices import GpgKey, MongoTools


@dataclass(frozen=True)
class SizeData:
    """One size's data: a database of S MB and an instance of INSTANCE_PARTS databases of S/INSTANCE_PARTS."""

    size_mb: int
    single: Dataset
    parts: tuple[Dataset, ...]

    @property
    def instance_bytes(self) -> int:
        return sum(d.bson_bytes for d in self.parts)


@dataclass
class Bench:
    """Where the benchmark runs: the services, the key and a scratch folder of its own."""

    source_uri: str
    endpoint: str
    bucket: str
    key: GpgKey
    work: Path  # configs, archives, the children's TMPDIRs; removed by whoever made it
    restore_uri: str | None = None
    tools: MongoTools | None = None
    prefect_url: str | None = None
    server_pid: int | None = None  # the S3 server's process, whose CPU time the pipeline rows report
    s3_store: str = "moto"  # which local S3 server `endpoint` is (moto, or SeaweedFS for the pipeline rows)

    def s3(self) -> Any:
        """A client with the dummy moto credentials given explicitly: the machine's own are never looked up."""
        import boto3

        from mongobackup.s3 import s3_client

        session = boto3.Session(
            aws_access_key_id=MOTO_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=MOTO_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=MOTO_ENV["AWS_DEFAULT_REGION"],
        )
        return s3_client(session=session, endpoint_url=self.endpoint, region=MOTO_ENV["AWS_DEFAULT_REGION"])

    def storage(self) -> Any:
        from mongobackup.s3 import S3Storage

        return S3Storage(self.s3(), self.bucket)

    def scratch(self, name: str) -> Path:
        """A fresh, empty folder under the work folder."""
        path = self.work / f"{name}-{uuid.uuid4().hex[:6]}"
        path.mkdir(parents=True)
        return path


def prepare_size(
    client: MongoClient, size_mb: int, *, reuse: bool, prefix: str = "bench", progress: Callable[[str], None] = print
) -> SizeData:
    """The size's databases, generated (or with `reuse`, found) by backup_memory's generator."""
    single = ensure_dataset(client, f"{prefix}_{size_mb}mb", size_mb * MB, reuse=reuse, progress=progress)
    part_bytes = size_mb * MB // INSTANCE_PARTS
    parts = tuple(
        ensure_dataset(client, f"{prefix}_{size_mb}mb_p{n}", part_bytes, reuse=reuse, progress=progress)
        for n in range(1, INSTANCE_PARTS + 1)
    )
    return SizeData(size_mb, single, parts)


def drop_size(client: MongoClient, data: SizeData) -> None:
    """Drops the size's databases and their generator records (the smoke test shares its server)."""
    for dataset in (data.single, *data.parts):
        client.drop_database(dataset.name)
        client[META_DATABASE]["datasets"].delete_one({"_id": dataset.name})


def tools_of(bench: Bench) -> MongoTools:
    if bench.tools is None:
        raise RuntimeError("this subject needs the real mongo tools under wine (Bench.tools)")
    return bench.tools


def restore_uri(bench: Bench) -> str:
    return bench.restore_uri or bench.source_uri


def check_restored(bench: Bench, database: str, dataset: Dataset) -> None:
    client: MongoClient = MongoClient(restore_uri(bench))
    try:
        count = client[database][COLLECTION].count_documents({})
    finally:
        client.close()
    if count != dataset.documents:
        raise RuntimeError(
            f"{database} holds {count} documents after the restore, {dataset.name} has {dataset.documents}"
        )


def drop_restored(bench: Bench, database: str) -> None:
    client: MongoClient = MongoClient(restore_uri(bench))
    try:
        client.drop_database(database)
    finally:
        client.close()


def delete_prefix(bench: Bench, prefix: str) -> int:
    """Deletes every object under `prefix` (moto keeps them in memory); returns the bytes of the backup
    objects among them (manifests not counted)."""
    storage = bench.storage()
    stored = 0
    for info in list(storage.list_keys(prefix)):
        if not info.key.endswith(".json"):
            stored += info.size
        storage.delete(info.key)
    return stored


def s3cmd_config(bench: Bench) -> Path:
    """s3cmd's config for the bench's S3 server (moto or SeaweedFS, which take the same dummy keys):
    path-style on the loopback port, plain HTTP, SigV4. One file per endpoint."""
    host = bench.endpoint.removeprefix("http://").rstrip("/")
    path = bench.work / f"s3cmd-{host.replace(':', '-')}.cfg"
    if not path.exists():
        path.write_text(
            "\n".join(
                [
                    "[default]",
                    f"access_key = {MOTO_ENV['AWS_ACCESS_KEY_ID']}",
                    f"secret_key = {MOTO_ENV['AWS_SECRET_ACCESS_KEY']}",
                    f"host_base = {host}",
                    f"host_bucket = {host}",
                    f"bucket_location = {MOTO_ENV['AWS_DEFAULT_REGION']}",
                    "use_https = False",
                    "signature_v2 = False",
                    "guess_mime_type = False",
                    "",
                ]
            )
        )
    return path
