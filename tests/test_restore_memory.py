"""Restore memory is bounded the way backup's is: the peak RSS of a restore does not grow with the backup.

Two backups, of 4 MB and 32 MB of mixed documents, go through the real backup pipeline (zstd, gpg, S3 multipart
on moto) from a generated source; each is restored by a CHILD process into the scratch SecantusDB, which
reports its own peak RSS and that of gpg. A child keeps the numbers clean: this process has held whole
datasets. The numbers are printed (pytest -s) as the benchmark's restore row would show them.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import bson
from bson import Binary, ObjectId

from devservices import GpgKey, LocalServices
from mongobackup.archive import (
    ARCHIVE_VERSION,
    ArchiveHeader,
    ArchiveWriter,
    NamespaceMetadata,
    collection_metadata_json,
)
from mongobackup.backup import Compression, back_up_database
from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.dump import DumpSummary
from mongobackup.keys import BackupLocation
from mongobackup.manifest import DocumentDigest, IndexRecord, NamespaceRecord
from mongobackup.s3 import S3Storage
from mongobackup.tiers import Tier
from tests.helpers import AWS_ENV, new_bucket, storage_on

MB = 1 << 20
SIZES_MB = (4, 32)
#: The whole tree (python + gpg) stays under this, and its peak moves by at most FLAT_WITHIN_MB between sizes:
#: the same targets as the backup benchmark.
TARGET_PEAK_MB = 200.0
FLAT_WITHIN_MB = 20.0


class GeneratedDump:
    """A database that exists only as generated documents (0.5-4 KB, a third random bytes), fed to the real
    backup pipeline in place of a dump: the source side costs no server time."""

    def __init__(self, database: str, megabytes: int):
        self.database = database
        self.target = megabytes * MB
        self.summary = DumpSummary(server_version="generated")

    def chunks(self) -> Iterator[bytes]:
        writer = ArchiveWriter(ArchiveHeader(1, ARCHIVE_VERSION, "generated", "test"))
        index = {"v": 2, "key": {"_id": 1}, "name": "_id_"}
        metadata = collection_metadata_json({}, [index], None, "docs", "collection")
        yield writer.prelude([NamespaceMetadata(self.database, "docs", metadata, self.target, "collection")])
        digest = DocumentDigest()
        yield from writer.documents(self.database, "docs", self._documents(digest))
        yield writer.end_namespace(self.database, "docs")
        yield writer.finish()
        self.summary.namespaces.append(
            NamespaceRecord(
                collection="docs",
                type="collection",
                documents=digest.count,
                bytes=digest.bytes,
                crc=writer.crc(self.database, "docs"),
                digest=digest.hexdigest,
                indexes=[IndexRecord(name="_id_", key={"_id": 1})],
            )
        )
        self.summary.complete = True

    def _documents(self, digest: DocumentDigest) -> Iterator[bytes]:
        rng = random.Random(7)
        while digest.bytes < self.target:
            size = rng.randint(512, 4096)
            raw = bson.encode(
                {
                    "_id": ObjectId(),
                    "n": digest.count,
                    "text": "order shipped " * (size // 40),
                    "blob": Binary(rng.randbytes(size // 3)),
                }
            )
            digest.add(raw)
            yield raw


def store_generated(storage: S3Storage, gpg_key: GpgKey, megabytes: int) -> str:
    database = f"memory_{megabytes}mb_{uuid.uuid4().hex[:6]}"
    when = datetime.now(UTC)
    location = BackupLocation("", Tier.DAILY, "rs-mem", database, when, uuid.uuid4().hex[:8])
    back_up_database(
        dump=GeneratedDump(database, megabytes),
        location=location,
        storage=storage,
        gpg=Gpg(gpg_key.home),
        keys=EncryptionKeys((gpg_key.fingerprint,)),
        compression=Compression(),
    )
    return location.object_key


CHILD = """
import json, sys, threading
import boto3, psutil
from mongobackup.inventory import load_manifest
from mongobackup.crypto import Gpg
from mongobackup.dump import open_client
from mongobackup.inventory import StoredBackup
from mongobackup.keys import BackupLocation
from mongobackup.drill import drill_restore
from mongobackup.s3 import S3Storage, s3_client

args = json.loads(sys.argv[1])
peak = {"self": 0.0, "children": 0.0}
done = threading.Event()

def sample():
    # Sampled, not ru_maxrss: that counts the image of the (large) pytest process this child was forked from.
    me = psutil.Process()
    while not done.wait(0.02):
        rss = 0
        for child in me.children(recursive=True):
            try:
                rss += child.memory_info().rss
            except psutil.Error:
                pass
        peak["children"] = max(peak["children"], rss / 2**20)
        peak["self"] = max(peak["self"], me.memory_info().rss / 2**20)

storage = S3Storage(s3_client(session=boto3.Session(), endpoint_url=args["moto"], region="us-east-1"),
                    args["bucket"], part_size=5 << 20)
location = BackupLocation.parse(args["key"])
manifest = load_manifest(storage, location)
before = psutil.Process().memory_info().rss / 2**20
threading.Thread(target=sample, daemon=True).start()
with open_client(args["scratch"]) as client:
    result = drill_restore(storage, args["key"], Gpg(args["home"]), client, args["target"], manifest=manifest)
done.set()
print(json.dumps({"documents": result.documents, "archive_mb": result.archive_bytes / 2**20,
                  "seconds": result.seconds, "mb_per_s": result.mb_per_s, "verdict": result.verdict.summary(),
                  "rss_before_mb": before,
                  "peak_rss_python_mb": peak["self"], "peak_rss_gpg_mb": peak["children"]}))
"""


def restore_in_child(services: LocalServices, bucket: str, key: str, gpg_key: GpgKey) -> dict:
    args = {
        "moto": services.url("moto"),
        "bucket": bucket,
        "key": key,
        "home": str(gpg_key.home),
        "scratch": services.mongo_uri("mongo-scratch"),
        "target": f"memory_{uuid.uuid4().hex[:8]}",
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args)],
        capture_output=True,
        text=True,
        env={**os.environ, **AWS_ENV},
        cwd=os.getcwd(),
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_restore_peak_memory_does_not_grow_with_the_backup(services, s3_client, gpg_key):
    storage = storage_on(services.url("moto"), new_bucket(s3_client))
    rows = {
        size: restore_in_child(services, storage.bucket, store_generated(storage, gpg_key, size), gpg_key)
        for size in SIZES_MB
    }
    for size, row in rows.items():
        tree = row["peak_rss_python_mb"] + row["peak_rss_gpg_mb"]
        print(
            f"\nrestore {size} MB: {row['documents']} docs, {row['archive_mb']:.1f} MB archive in "
            f"{row['seconds']:.1f} s ({row['mb_per_s']:.1f} MB/s), peak RSS python {row['peak_rss_python_mb']:.0f} "
            f"MB (before the restore {row['rss_before_mb']:.0f} MB) + gpg {row['peak_rss_gpg_mb']:.0f} MB"
        )
        assert row["verdict"] == "clean: 1 namespace matches the manifest"
        assert row["archive_mb"] >= size
        assert tree < TARGET_PEAK_MB
    small, large = (rows[size]["peak_rss_python_mb"] for size in SIZES_MB)
    assert large - small < FLAT_WITHIN_MB, f"peak RSS grew from {small:.0f} MB to {large:.0f} MB"
