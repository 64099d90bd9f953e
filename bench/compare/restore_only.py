"""`python -m bench.compare --only restore --sizes 24 --runs 1`: the restore rows alone (ours with the default
verification, without it, and with `--read-back`; the stock mongorestore), at any sizes, in about a minute at
24 MB: for working on the restore.

It starts its own services and key like the whole benchmark, prints the rows and a one-line ratio per size, and
publishes nothing (bench/RESULTS.md is the whole benchmark's).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pymongo import MongoClient

from bench.compare.report import Measure
from bench.compare.restores import measure_restores, prepare_restore_source
from bench.compare.settings import BUCKET, OPLOG_MAX_ENTRIES
from bench.compare.workspace import Bench
from bench.datasets import ensure_dataset
from bench.harness import MB
from devservices import MongoTools


def run_restores_only(sizes: Sequence[int], runs: int) -> int:
    from devservices import LocalServices, create_gpg_key, remove_gpg_home

    run_dir = Path(tempfile.mkdtemp(prefix="bench-restore-"))
    services = LocalServices(run_dir)
    for name in ("mongo-a", "mongo-b"):
        services.state_dir(name).mkdir(parents=True, exist_ok=True)
        (services.state_dir(name) / "secantusd.toml").write_text(f"[oplog]\nmax_entries = {OPLOG_MAX_ENTRIES}\n")
    gpg_home = Path(tempfile.mkdtemp(prefix="gpg-rst-", dir="/tmp"))
    work = Path(tempfile.mkdtemp(prefix="bench-restore-work-"))
    tools = MongoTools(run_dir / "wine")
    measures: list[Measure] = []
    try:
        key = create_gpg_key("Backup Restore Bench <restore@localhost>", home=gpg_home)
        services.start(["mongo-a", "mongo-b", "moto"])
        bench = Bench(
            source_uri=services.mongo_uri("mongo-a"),
            restore_uri=services.mongo_uri("mongo-b"),
            endpoint=services.url("moto"),
            bucket=BUCKET,
            key=key,
            work=work,
            tools=tools,
        )
        bench.s3().create_bucket(Bucket=BUCKET)
        tools.prepare()
        client: MongoClient = MongoClient(bench.source_uri)
        try:
            datasets = [
                (size, ensure_dataset(client, f"bench_{size}mb", size * MB, reuse=False, progress=print))
                for size in sizes
            ]
        finally:
            client.close()
        sources = [prepare_restore_source(bench, dataset, size) for size, dataset in datasets]
        for run in range(1, runs + 1):
            for source in sources:
                measures += measure_restores(
                    bench, source, run=run, read_back=True, progress=lambda line: print(line, flush=True)
                )
    finally:
        services.stop()
        tools.shutdown()
        remove_gpg_home(gpg_home)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    for size in sizes:
        walls = {
            subject: statistics.median(m.wall_s for m in measures if m.subject == subject and m.size_mb == size)
            for subject in ("restore_ours", "restore_ours_noverify", "restore_ours_readback", "mongorestore")
        }
        stock = walls["mongorestore"]
        print(
            f"{size} MB, median of {runs}: ours verify on {walls['restore_ours']:.2f} s "
            f"({walls['restore_ours'] / stock:.2f}x), verify off {walls['restore_ours_noverify']:.2f} s "
            f"({walls['restore_ours_noverify'] / stock:.2f}x), --read-back {walls['restore_ours_readback']:.2f} s "
            f"({walls['restore_ours_readback'] / stock:.2f}x), stock mongorestore {stock:.2f} s"
        )
    return 0
