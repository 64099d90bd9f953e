"""Benchmark: the backup pipeline's peak memory does not grow with the size of the database.

    python -m bench.backup_memory [--sizes 16,128] [--runs 1] [--keep-data]

For each size S (MB = 2**20 bytes of BSON) it fills the database `bench_<S>mb` on a local SecantusDB with
mixed 0.5-4 KB documents (about a third of their bytes random, so zstd has real work and the stored object
is not tiny), then backs it up once per run in a CHILD process (`--child`) that calls the core directly:
`transfer_database` (dump -> zstd -> gpg -> S3 multipart on moto) and `verify_upload`. The parent samples the
RSS of the child's process tree (python + the gpg it spawns) every 20 ms. A child process keeps the numbers
clean: the data generation in the parent allocates far more than the backup ever should.

It prints one table row per backup and a verdict line, and writes the rows to bench/results/backup_memory.json.
It asserts nothing about timing: it is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from pymongo import MongoClient, monitoring

from bench.datasets import Dataset, ensure_dataset
from bench.harness import (
    MB,
    PROJECT_ROOT,
    SAMPLE_INTERVAL_S,
    OplogTimer,
    checked,
    child_env,
    last_json_line,
    parse_sizes,
    sample_tree,
    write_json,
)

DEFAULT_SIZES = (16, 128)
#: The verdict's targets: the whole tree stays under TARGET_PEAK_MB, and its peak moves by at most
#: FLAT_WITHIN_MB between the smallest and the largest database.
TARGET_PEAK_MB = 200.0
FLAT_WITHIN_MB = 20.0

RESULTS_FILE = PROJECT_ROOT / "bench" / "results" / "backup_memory.json"
#: With --keep-data the services' state must outlive the run, so it goes under the gitignored .run/.
KEEP_RUN_DIR = PROJECT_ROOT / ".run" / "bench-backup-memory"
BUCKET = "bench-backup-memory"


# --- the child: one backup -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupTarget:
    """Everything the child needs to back up one database; also its command line."""

    uri: str
    database: str
    bucket: str
    endpoint: str
    gnupghome: str
    fingerprint: str

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bench.backup_memory",
            "--child",
            "--uri",
            self.uri,
            "--database",
            self.database,
            "--bucket",
            self.bucket,
            "--endpoint",
            self.endpoint,
            "--gnupghome",
            self.gnupghome,
            "--fingerprint",
            self.fingerprint,
        ]


def run_backup(target: BackupTarget) -> dict[str, Any]:
    """One transfer + verify through the core, as a production run does it minus Prefect. Runs in the child."""
    # Imported here so that the parent, which never backs up, does not pay for (or hold) these modules.
    from mongobackup.backup import Compression, tool_version, transfer_database, verify_upload
    from mongobackup.crypto import EncryptionKeys, Gpg
    from mongobackup.dump import DatabaseDump, open_client
    from mongobackup.keys import BackupLocation
    from mongobackup.s3 import S3Storage, s3_client
    from mongobackup.tiers import Tier

    oplog = OplogTimer()
    monitoring.register(oplog)  # before the client exists: pymongo copies the listeners when it is created
    client = open_client(target.uri)
    storage = S3Storage(s3_client(endpoint_url=target.endpoint, region="us-east-1"), target.bucket)
    gpg = Gpg(target.gnupghome)
    location = BackupLocation(
        prefix="bench/",
        tier=Tier.DAILY,
        instance="bench",
        database=target.database,
        taken_at=datetime.now(UTC),
        run_id=uuid.uuid4().hex[:8],
    )
    rss_before = psutil.Process().memory_info().rss  # the baseline: interpreter + imports + clients
    started = time.perf_counter()
    try:
        # Our own dump (DatabaseDump), as a plan with the default archive source backs up.
        dump = DatabaseDump(client, location.instance, location.database, tool_version=tool_version())
        outcome = transfer_database(
            dump=dump,
            location=location,
            storage=storage,
            gpg=gpg,
            keys=EncryptionKeys((target.fingerprint,)),
            compression=Compression(level=3, threads=2),
        )
        verify_upload(storage, outcome)
        seconds = time.perf_counter() - started
        storage.delete(outcome.receipt.key)  # moto holds objects in memory; repeated runs would pile up
    finally:
        client.close()
    return {
        "database": target.database,
        "documents": outcome.summary.documents,
        "raw_bytes": outcome.raw_bytes,
        "compressed_bytes": outcome.compressed_bytes,
        "stored_bytes": outcome.receipt.size,
        "parts": outcome.receipt.parts,
        "backup_s": round(seconds, 3),
        "stage_seconds": outcome.stage_seconds,
        "oplog_query_s": round(oplog.seconds, 3),
        "rss_before_mb": round(rss_before / MB, 1),
        # The kernel's high-water mark (KiB on Linux): exact where 20 ms sampling can miss a short spike.
        # Not RUSAGE_CHILDREN for gpg: a forked child's maxrss counts the parent's pages it held before exec.
        "python_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


# --- the parent: measure a child ---------------------------------------------------------------------------


@dataclass
class Row:
    """One measured backup: what the child reported plus the RSS the parent saw."""

    size_mb: float
    run: int
    database: str
    documents: int
    raw_bytes: int
    stored_bytes: int
    backup_s: float  # transfer + verify, timed in the child: no interpreter start-up
    process_wall_s: float  # the whole child process, start-up included
    peak_rss_tree_mb: float
    peak_rss_python_mb: float
    peak_rss_gpg_mb: float  # the peak of the descendants' sum alone (gpg): says which side grows
    samples: int
    stage_seconds: dict[str, float] = field(default_factory=dict)
    child: dict[str, Any] = field(default_factory=dict)  # everything else the child reported

    @property
    def raw_mb(self) -> float:
        return self.raw_bytes / MB

    @property
    def stored_mb(self) -> float:
        return self.stored_bytes / MB

    @property
    def mb_per_s(self) -> float:
        return self.raw_mb / self.backup_s if self.backup_s > 0 else 0.0


def measure_backup(target: BackupTarget, *, size_mb: float, run: int = 1, interval_s: float = SAMPLE_INTERVAL_S) -> Row:
    """Runs one backup in a child process and samples its process tree's RSS until it exits.

    The tree is the child python and its descendants (the gpg it spawns); the gpg-agent daemonizes away
    from it, and public-key encryption does not need the agent anyway.
    """
    what = f"backup child for {target.database}"
    done = checked(sample_tree(target.argv(), env=child_env(), what=what, interval_s=interval_s), what)
    report = last_json_line(done.stdout, what)
    return Row(
        size_mb=size_mb,
        run=run,
        database=target.database,
        documents=report["documents"],
        raw_bytes=report["raw_bytes"],
        stored_bytes=report["stored_bytes"],
        backup_s=report["backup_s"],
        process_wall_s=round(done.wall_s, 3),
        peak_rss_tree_mb=round(done.peak_tree / MB, 1),
        peak_rss_python_mb=round(done.peak_root / MB, 1),
        peak_rss_gpg_mb=round(done.peak_descendants / MB, 1),
        samples=done.samples,
        stage_seconds=report["stage_seconds"],
        child={
            k: v
            for k, v in report.items()
            if k not in {"documents", "raw_bytes", "stored_bytes", "backup_s", "stage_seconds", "database"}
        },
    )


# --- report ------------------------------------------------------------------------------------------------

_COLUMNS = (
    "size MB",
    "run",
    "documents",
    "raw MB",
    "stored MB",
    "wall s",
    "MB/s",
    "peak RSS tree MB",
    "peak RSS python MB",
    "stage s dump/compress/upload",
)


def table_rows(rows: Sequence[Row]) -> list[tuple[str, ...]]:
    return [
        (
            f"{r.size_mb:g}",
            str(r.run),
            str(r.documents),
            f"{r.raw_mb:.1f}",
            f"{r.stored_mb:.1f}",
            f"{r.backup_s:.2f}",
            f"{r.mb_per_s:.1f}",
            f"{r.peak_rss_tree_mb:.1f}",
            f"{r.peak_rss_python_mb:.1f}",
            "/".join(f"{r.stage_seconds.get(s, 0.0):.2f}" for s in ("dump", "compress", "upload")),
        )
        for r in rows
    ]


def format_table(rows: Sequence[Row]) -> str:
    cells = [_COLUMNS, *table_rows(rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]
    lines = [" | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def oplog_note(rows: Sequence[Row]) -> str:
    """Why wall s and MB/s say little about the pipeline on SecantusDB: its oplog queries scan the whole oplog."""
    spent = ", ".join(f"{r.child.get('oplog_query_s', 0.0):.1f} s at {r.size_mb:g} MB" for r in rows)
    return f"(the dump stage, wall s and MB/s include SecantusDB's oplog queries, each a whole-oplog scan: {spent})"


@dataclass(frozen=True)
class Verdict:
    smallest_mb: float
    largest_mb: float
    peak_smallest_mb: float
    peak_largest_mb: float
    spread_mb: float  # max - min of the per-size peaks, over every size measured
    met: bool

    @property
    def delta_mb(self) -> float:
        return self.peak_largest_mb - self.peak_smallest_mb

    def line(self) -> str:
        return (
            f"peak RSS (tree) {self.peak_smallest_mb:.1f} MB at {self.smallest_mb:g} MB vs "
            f"{self.peak_largest_mb:.1f} MB at {self.largest_mb:g} MB: delta {self.delta_mb:+.1f} MB "
            f"(target: < {TARGET_PEAK_MB:.0f} MB and flat within {FLAT_WITHIN_MB:.0f} MB): "
            f"{'MET' if self.met else 'MISSED'}"
        )


def verdict(rows: Sequence[Row]) -> Verdict:
    """Per size, the worst run counts; the target needs every peak low and the peaks level across sizes."""
    peaks: dict[float, float] = {}
    for row in rows:
        peaks[row.size_mb] = max(peaks.get(row.size_mb, 0.0), row.peak_rss_tree_mb)
    smallest, largest = min(peaks), max(peaks)
    spread = max(peaks.values()) - min(peaks.values())
    met = max(peaks.values()) < TARGET_PEAK_MB and spread <= FLAT_WITHIN_MB
    return Verdict(smallest, largest, peaks[smallest], peaks[largest], round(spread, 1), met)


def write_results(rows: Sequence[Row], result: Verdict, path: Path = RESULTS_FILE, **extra: Any) -> None:
    document = {
        "benchmark": "backup_memory",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mb": MB,
        "sample_interval_s": SAMPLE_INTERVAL_S,
        "rows": [
            {
                **asdict(r),
                "raw_mb": round(r.raw_mb, 2),
                "stored_mb": round(r.stored_mb, 2),
                "mb_per_s": round(r.mb_per_s, 2),
            }
            for r in rows
        ],
        "verdict": {**asdict(result), "delta_mb": round(result.delta_mb, 1), "line": result.line()},
        **extra,
    }
    write_json(path, document)


# --- entry points ------------------------------------------------------------------------------------------


def run_benchmark(sizes: Sequence[int], runs: int, keep_data: bool) -> int:
    from devservices import S3_TEST_CREDENTIALS, S3_TEST_REGION, LocalServices, create_gpg_key, remove_gpg_home

    began = time.perf_counter()
    run_dir = KEEP_RUN_DIR if keep_data else Path(tempfile.mkdtemp(prefix="bench-memory-"))
    services = LocalServices(run_dir)
    gpg_home = Path(tempfile.mkdtemp(prefix="gpg-bench-", dir="/tmp"))
    rows: list[Row] = []
    datasets: list[Dataset] = []
    try:
        key = create_gpg_key("Backup Bench <bench@localhost>", home=gpg_home)
        print(f"services under {run_dir}: starting mongo-a, moto", flush=True)
        services.start(["mongo-a", "moto"])
        import boto3

        boto3.client(
            "s3", endpoint_url=services.url("moto"), region_name=S3_TEST_REGION, **S3_TEST_CREDENTIALS
        ).create_bucket(Bucket=BUCKET)
        client: MongoClient = MongoClient(services.mongo_uri("mongo-a"))
        try:
            # Every dataset first, then every backup: each backup then finds the server (and its oplog, which
            # SecantusDB scans whole on every oplog query) in the same state, whatever its size.
            for size in sizes:
                datasets.append(
                    ensure_dataset(
                        client,
                        f"bench_{size}mb",
                        size * MB,
                        reuse=keep_data,
                        progress=lambda line: print(line, flush=True),
                    )
                )
            for size, dataset in zip(sizes, datasets, strict=True):
                target = BackupTarget(
                    uri=services.mongo_uri("mongo-a"),
                    database=dataset.name,
                    bucket=BUCKET,
                    endpoint=services.url("moto"),
                    gnupghome=str(key.home),
                    fingerprint=key.fingerprint,
                )
                for run in range(1, runs + 1):
                    row = measure_backup(target, size_mb=size, run=run)
                    rows.append(row)
                    print(
                        f"{dataset.name} run {run}: {row.raw_mb:.1f} MB in {row.backup_s:.2f} s, peak RSS tree "
                        f"{row.peak_rss_tree_mb:.1f} MB (python {row.peak_rss_python_mb:.1f}, "
                        f"gpg {row.peak_rss_gpg_mb:.1f}), {row.samples} samples; oplog queries "
                        f"{row.child.get('oplog_query_s', 0.0):.1f} s of the dump",
                        flush=True,
                    )
        finally:
            client.close()
    finally:
        services.stop()
        remove_gpg_home(gpg_home)
        if not keep_data:
            shutil.rmtree(run_dir, ignore_errors=True)
    result = verdict(rows)
    total = time.perf_counter() - began
    print()
    print(format_table(rows))
    print(oplog_note(rows))
    print()
    print(result.line())
    write_results(rows, result, datasets=[asdict(d) for d in datasets], total_seconds=round(total, 1))
    print(f"rows written to {RESULTS_FILE}; whole benchmark {total:.0f} s")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.backup_memory", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=list(DEFAULT_SIZES),
        help="database sizes in MB (2**20 bytes of BSON), comma-separated (default: 16,128)",
    )
    parser.add_argument("--runs", type=int, default=1, help="backups per size (default: 1)")
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help=f"keep the services' state in {KEEP_RUN_DIR.relative_to(PROJECT_ROOT)} and reuse "
        "databases of the right size from an earlier run",
    )
    child = parser.add_argument_group("child mode (internal: one measured backup, a JSON line on stdout)")
    child.add_argument("--child", action="store_true")
    for name in ("uri", "database", "bucket", "endpoint", "gnupghome", "fingerprint"):
        child.add_argument(f"--{name}")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs: at least 1")
    if args.child:
        missing = [
            n for n in ("uri", "database", "bucket", "endpoint", "gnupghome", "fingerprint") if not getattr(args, n)
        ]
        if missing:
            parser.error("--child needs " + ", ".join(f"--{n}" for n in missing))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        target = BackupTarget(args.uri, args.database, args.bucket, args.endpoint, args.gnupghome, args.fingerprint)
        print(json.dumps(run_backup(target)), flush=True)
        return 0
    return run_benchmark(args.sizes, args.runs, args.keep_data)


if __name__ == "__main__":
    sys.exit(main())
