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
import contextlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bson
import psutil
from bson import Binary, ObjectId
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient, monitoring

MB = 1 << 20
DEFAULT_SIZES = (16, 128)
#: Sizes must span at least this factor: flatness between 16 and 24 MB would prove little.
MIN_SIZE_RATIO = 8
SAMPLE_INTERVAL_S = 0.02
#: The verdict's targets: the whole tree stays under TARGET_PEAK_MB, and its peak moves by at most
#: FLAT_WITHIN_MB between the smallest and the largest database.
TARGET_PEAK_MB = 200.0
FLAT_WITHIN_MB = 20.0
#: insert_many batch: SecantusDB takes about 5 MB/s, so ~2 MB batches give steady progress lines.
BATCH_DOCUMENTS = 1000
PROGRESS_EVERY_S = 5.0
CHILD_TIMEOUT_S = 3600.0

COLLECTION = "documents"
#: Where a finished dataset is recorded, outside the benchmarked database so the backup does not see it.
META_DATABASE = "bench_meta"
#: Bump when the document shape changes, so --keep-data regenerates instead of reusing stale data.
GENERATOR_VERSION = 1
SEED = 20240601

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_FILE = PROJECT_ROOT / "bench" / "results" / "backup_memory.json"
#: With --keep-data the services' state must outlive the run, so it goes under the gitignored .run/.
KEEP_RUN_DIR = PROJECT_ROOT / ".run" / "bench-backup-memory"
BUCKET = "bench-backup-memory"
MOTO_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

_WORDS = (
    "order",
    "invoice",
    "shipment",
    "customer",
    "warehouse",
    "pallet",
    "express",
    "standard",
    "refund",
    "credit",
    "debit",
    "account",
    "balance",
    "ledger",
    "north",
    "south",
    "east",
    "west",
    "central",
    "priority",
    "delayed",
    "delivered",
    "pending",
    "cancelled",
    "returned",
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
    "the",
    "and",
    "with",
    "for",
    "from",
    "please",
    "note",
    "contact",
    "support",
    "regarding",
    "package",
    "damaged",
    "replacement",
)
_CITIES = ("Lisbon", "Oslo", "Quito", "Osaka", "Lagos", "Perth", "Austin", "Graz", "Turku", "Cork", "Lyon")
_KINDS = ("order", "refund", "shipment", "invoice", "ticket")
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


# --- data ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """A benchmark database as it was generated (or found, with --keep-data)."""

    name: str
    target_bytes: int
    documents: int
    bson_bytes: int
    reused: bool
    seconds: float


def make_document(rng: random.Random, seq: int) -> bytes:
    """One encoded document of 512-4096 bytes: scalars, a nested customer, line items, text, random bytes.

    A third of the target size is random bytes (incompressible); the rest is words and numbers, which zstd
    shrinks several times, as it would real application data.
    """
    target = rng.randint(512, 4096)
    doc: dict[str, Any] = {
        "_id": ObjectId(),
        "seq": seq,
        "kind": rng.choice(_KINDS),
        "amount": round(rng.uniform(0, 10_000), 2),
        "quantity": rng.randint(1, 500),
        "active": rng.random() < 0.5,
        "created": _EPOCH + timedelta(seconds=seq * 37),
        "customer": {
            "name": f"{rng.choice(_WORDS).title()} {rng.choice(_WORDS).title()}",
            "score": rng.random(),
            "address": {
                "street": f"{rng.randint(1, 999)} {rng.choice(_WORDS)} street",
                "city": rng.choice(_CITIES),
                "zip": f"{rng.randint(10_000, 99_999)}",
            },
        },
        "tags": rng.sample(_WORDS, k=rng.randint(1, 6)),
        "lines": [
            {
                "sku": f"SKU-{rng.randint(0, 99_999):05d}",
                "qty": rng.randint(1, 9),
                "price": round(rng.uniform(1, 500), 2),
            }
            for _ in range(rng.randint(1, 5))
        ],
        "payload": Binary(rng.randbytes(target // 3)),
    }
    # The "notes" element costs 12 bytes besides its text: type, "notes\0", int32 length, trailing NUL.
    room = target - len(bson.encode(doc)) - 12
    if room > 0:
        words = " ".join(rng.choices(_WORDS, k=room // 5 + 1))
        while len(words) < room:  # short words: top up rather than overshoot the size range
            words += " " + " ".join(rng.choices(_WORDS, k=room // 5 + 1))
        doc["notes"] = words[:room]
    return bson.encode(doc)


def ensure_dataset(
    client: MongoClient, name: str, target_bytes: int, *, reuse: bool, progress: Callable[[str], None] = print
) -> Dataset:
    """The database `name` holding `target_bytes` of BSON: reused when `reuse` and a finished one is there."""
    meta = client[META_DATABASE]["datasets"]
    if reuse:
        found = meta.find_one({"_id": name})
        if (
            found is not None
            and found.get("generator") == GENERATOR_VERSION
            and found.get("target_bytes") == target_bytes
            and client[name][COLLECTION].estimated_document_count() == found.get("documents")
        ):
            progress(f"{name}: reusing {found['documents']} documents, {found['bson_bytes'] / MB:.1f} MB")
            return Dataset(name, target_bytes, found["documents"], found["bson_bytes"], True, 0.0)
    # The marker goes first: an interrupted generation must never look finished to a later --keep-data run.
    meta.delete_one({"_id": name})
    client.drop_database(name)
    collection = client[name][COLLECTION]
    rng = random.Random(f"{SEED}-{name}")
    started = last_report = time.perf_counter()
    documents = total = 0
    while total < target_bytes:
        batch: list[RawBSONDocument] = []
        while len(batch) < BATCH_DOCUMENTS and total < target_bytes:
            raw = make_document(rng, documents)
            batch.append(RawBSONDocument(raw))  # inserted as the very bytes we counted
            documents += 1
            total += len(raw)
        collection.insert_many(batch, ordered=True)
        now = time.perf_counter()
        if now - last_report >= PROGRESS_EVERY_S or total >= target_bytes:
            last_report = now
            progress(
                f"{name}: {total / MB:6.1f}/{target_bytes / MB:.0f} MB, {documents} documents, "
                f"{total / MB / (now - started):.1f} MB/s"
            )
    seconds = time.perf_counter() - started
    meta.replace_one(
        {"_id": name},
        {
            "_id": name,
            "generator": GENERATOR_VERSION,
            "target_bytes": target_bytes,
            "documents": documents,
            "bson_bytes": total,
        },
        upsert=True,
    )
    return Dataset(name, target_bytes, documents, total, False, round(seconds, 1))


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

    oplog = _OplogTimer()
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


class _OplogTimer(monitoring.CommandListener):
    """Sums the time of commands on local.oplog.rs: SecantusDB answers them by scanning its whole oplog
    (seconds each), which says why the dump stage of a small database can take as long as a large one's."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._pending: set[int] = set()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        # find names the collection under its own key, getMore under "collection".
        collection = event.command.get("collection" if event.command_name == "getMore" else event.command_name)
        if event.database_name == "local" and collection == "oplog.rs":
            self._pending.add(event.request_id)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.request_id in self._pending:
            self._pending.discard(event.request_id)
            self.seconds += event.duration_micros / 1e6

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._pending.discard(event.request_id)


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
    env = {**os.environ, **MOTO_ENV}
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        env.pop(name, None)  # the dummy moto credentials only, never a profile of the machine
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    done = sample_tree(target.argv(), env=env, what=f"backup of {target.database}", interval_s=interval_s)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.splitlines()[-25:])
        raise RuntimeError(f"backup child for {target.database} exited with {done.returncode}:\n{tail}")
    report = _last_json_line(done.stdout, target.database)
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


@dataclass(frozen=True)
class TreeRun:
    """A child process run to its end while the RSS of its process tree was sampled (bytes, seconds)."""

    returncode: int
    wall_s: float  # the whole child process, start-up included
    peak_tree: int  # the largest root + descendants seen in one sample
    peak_root: int
    peak_descendants: int
    samples: int
    stdout: str
    stderr: str


def sample_tree(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    what: str,
    cwd: Path = PROJECT_ROOT,
    interval_s: float = SAMPLE_INTERVAL_S,
    timeout_s: float = CHILD_TIMEOUT_S,
    on_sample: Callable[[psutil.Process], None] | None = None,
) -> TreeRun:
    """Runs `argv` to its end, sampling the RSS of its process tree every `interval_s`.

    `on_sample` gets the root process at every sample, for a caller that watches more than memory (the
    comparative benchmark probes disk use there). `what` names the child in a timeout error.
    """
    peak_tree = peak_root = peak_other = 0
    samples = 0
    # Files, not pipes: nothing reads them while sampling, and a chatty child must never block on a full pipe.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=out, stderr=err)
        try:
            root = psutil.Process(proc.pid)
            # Popen returns once the child has exec'd: this is its own program (for a python child, what
            # sys.executable resolves to), which a descendant shows only between its fork and its exec.
            root_exe = _exe_of(root)
            next_tick = started
            while proc.poll() is None:
                if time.perf_counter() - started > timeout_s:
                    raise TimeoutError(f"{what} still running after {timeout_s:.0f} s")
                root_rss, other_rss = _tree_rss(root, root_exe)
                if root_rss:
                    samples += 1
                    peak_root = max(peak_root, root_rss)
                    peak_other = max(peak_other, other_rss)
                    peak_tree = max(peak_tree, root_rss + other_rss)
                    if on_sample is not None:
                        on_sample(root)
                next_tick += interval_s
                time.sleep(max(0.0, next_tick - time.perf_counter()))
        finally:
            if proc.poll() is None:  # our own child, by its PID: a timeout or Ctrl-C must not orphan it
                proc.kill()
                proc.wait()
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return TreeRun(proc.returncode, wall, peak_tree, peak_root, peak_other, samples, stdout, stderr)


def _exe_of(proc: psutil.Process) -> str:
    try:
        return proc.exe()
    except psutil.Error:  # already gone: the sampling loop will not run
        return ""


def _tree_rss(root: psutil.Process, root_exe: str) -> tuple[int, int]:
    """(RSS of the root, summed RSS of its descendants) in bytes; (0, 0) once the root is gone."""
    try:
        python_rss = root.memory_info().rss
        descendants = root.children(recursive=True)
    except psutil.Error:  # exited (or a zombie) between poll() and here
        return 0, 0
    other = 0
    for proc in descendants:
        with contextlib.suppress(psutil.Error):  # gpg finished between listing and reading it
            # Between fork and exec a child still shows python's pages (shared, not new memory): counting
            # them would double the tree for one sample. Such a child still has python's executable.
            if proc.exe() != root_exe:
                other += proc.memory_info().rss
    return python_rss, other


def _last_json_line(stdout: str, database: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"backup child for {database} printed no JSON report; its stdout:\n{stdout[-2000:]}")


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


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Writes a benchmark's results document as indented JSON, creating bench/results/ when needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


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


def parse_sizes(text: str, *, at_least: int = 2) -> list[int]:
    """`--sizes` of the benchmarks: comma-separated whole MB, at least `at_least` of them, spanning 8x."""
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes: comma-separated whole MB, got {text!r}") from None
    if len(sizes) < at_least or sizes[0] < 1 or sizes[-1] < MIN_SIZE_RATIO * sizes[0]:
        raise argparse.ArgumentTypeError(
            f"--sizes: at least {at_least} sizes >= 1 MB, the largest at least {MIN_SIZE_RATIO}x the smallest, "
            f"got {text!r}"
        )
    return sizes


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
