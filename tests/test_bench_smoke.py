"""The memory benchmark's measuring path on a tiny database, so the benchmark cannot silently rot.

It checks only that a row comes out with plausible numbers; how much memory or time a backup takes is the
benchmark's business (`python -m bench.backup_memory`), never a test's.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from pymongo import MongoClient

from bench.backup_memory import BackupTarget, format_table, measure_backup, verdict, write_results
from bench.datasets import ensure_dataset
from bench.harness import MB
from devservices import GpgKey, LocalServices


def test_measure_backup_reports_a_plausible_row(
    services: LocalServices, bucket: str, gpg_key: GpgKey, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    uri = services.mongo_uri("mongo-a")
    database = f"bench_smoke_{uuid.uuid4().hex[:8]}"  # not bench_<S>mb: the shared server is not ours alone
    client: MongoClient = MongoClient(uri)
    try:
        dataset = ensure_dataset(client, database, 1 * MB, reuse=False, progress=lambda line: None)
        assert dataset.bson_bytes >= 1 * MB and dataset.documents > 0

        target = BackupTarget(
            uri=uri,
            database=database,
            bucket=bucket,
            endpoint=services.url("moto"),
            gnupghome=str(gpg_key.home),
            fingerprint=gpg_key.fingerprint,
        )
        row = measure_backup(target, size_mb=1)
    finally:
        client.drop_database(database)
        client["bench_meta"]["datasets"].delete_one({"_id": database})
        client.close()

    assert row.documents == dataset.documents
    assert row.raw_bytes > dataset.bson_bytes  # the archive adds headers around the documents
    assert 0 < row.stored_bytes < row.raw_bytes  # about a third is random: compressible, but not to nothing
    assert row.samples > 0
    assert row.peak_rss_python_mb > 0
    assert row.peak_rss_tree_mb >= row.peak_rss_python_mb
    assert row.backup_s > 0
    assert {"dump", "compress", "upload"} <= set(row.stage_seconds)

    table = format_table([row])
    assert "peak RSS tree MB" in table and str(row.documents) in table
    # Two sizes are what a verdict compares; the same row twice is enough to exercise it.
    result = verdict([row, row])
    assert result.line().startswith("peak RSS (tree)")
    out = tmp_path / "backup_memory.json"
    write_results([row], result, path=out)
    written = json.loads(out.read_text())["rows"][0]
    assert written["stored_bytes"] == row.stored_bytes and written["peak_rss_tree_mb"] > 0
