"""Benchmark: backup and restore side by side with the stock tools and the old pipeline (issue 6).

    .venv/bin/python -m bench.compare [--sizes 8,24,64] [--runs 3] [--keep-data]

One run on one machine: it starts its own SecantusDB servers (`mongo-a` the source, `mongo-b` the restore
target), moto and, for the one flow run per size, a Prefect server; generates each size's data once (one
database of S MB, and an "instance" of three databases of S/3 MB), then measures per size, each figure the
median of --runs runs taken round-robin across sizes and subjects (so background load spreads evenly):

- floor: a raw pymongo scan (RawBSONDocument, no processing) of the same data;
- stock `mongodump --archive --gzip` (under wine) to a file;
- the old pipeline: mongodump to a folder, `gpg --encrypt` per file (gpg's defaults), `s3cmd put`;
- ours: the core (`transfer_database` + `verify_upload`, backup_memory's child) for one database, our own
  child for the instance (transfer, verify, manifest commit per database), and one run of the Prefect flow;
- our zstd -> gpg -> S3 path alone on generated BSON (transfer_database over an in-memory archive source);
- restore: `restore_backup` (with and without read-back verification) and the stock mongorestore from the
  same backup, which first has to be decrypted and decompressed to a file (timed as its own row).

Wall, MB/s (of the data's BSON), peak RSS of the process tree, temp disk (files the tree wrote: its own
TMPDIR plus anything else it held open for writing) and stored bytes go to one table, bench/results/
compare.json and compare.png; the CLI also publishes the table and chart as bench/RESULTS.md and
bench/compare.png. It checks the issue's targets and says MET or MISSED; it asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient, monitoring

from bench.backup_memory import (
    COLLECTION,
    MB,
    META_DATABASE,
    MOTO_ENV,
    PROJECT_ROOT,
    SEED,
    BackupTarget,
    Dataset,
    TreeRun,
    _last_json_line,
    _OplogTimer,
    ensure_dataset,
    make_document,
    parse_sizes,
    sample_tree,
    write_json,
)
from devservices import GpgKey, MongoTools

DEFAULT_SIZES = (8, 24, 64)
DEFAULT_RUNS = 3
MIN_SIZES = 3
#: The instance row: this many databases of size/INSTANCE_PARTS each.
INSTANCE_PARTS = 3
#: The capped oplog of the benchmark's SecantusDB servers. SecantusDB answers the dump's two oplog queries
#: (newest entry; entries of the dump window) by scanning its whole oplog, where MongoDB reads one end of it:
#: with the default 100,000 entries that scan grows with all the data the benchmark ever inserted, not with
#: the database being backed up. A small cap (SecantusDB prunes lazily, to about twice the cap) keeps most of
#: the stand-in's artifact out of the comparison; the queries still run and their time is reported. Nothing
#: writes to the source while a backup runs, so the dump's oplog window never needs more.
OPLOG_MAX_ENTRIES = 100
#: As the demo plan and backup_memory: zstd level 3 with 2 worker threads.
ZSTD_LEVEL, ZSTD_THREADS = 3, 2
BUCKET = "bench-compare"

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
RESULTS_JSON = RESULTS_DIR / "compare.json"
RESULTS_PNG = RESULTS_DIR / "compare.png"
#: bench/results/ is gitignored: the latest table and chart are copied here to be committed.
PUBLISHED_MD = PROJECT_ROOT / "bench" / "RESULTS.md"
PUBLISHED_PNG = PROJECT_ROOT / "bench" / "compare.png"
KEEP_RUN_DIR = PROJECT_ROOT / ".run" / "bench-compare"

#: The issue's targets.
TARGET_FLOOR_RATIO = 1.25
TARGET_MONGODUMP_RATIO = 1.0
TARGET_PEAK_MB = 200.0
TARGET_FLAT_MB = 20.0
TARGET_RESTORE_RATIO = 1.0
TARGET_PIPELINE_MB_S = 150.0

RAW = CodecOptions(document_class=RawBSONDocument)
_WRITE_MODES = frozenset({"w", "a", "r+", "a+", "w+"})

#: Every subject, in table order: key -> label.
SUBJECTS: dict[str, str] = {
    "floor": "floor: raw pymongo scan",
    "dump_alone": "ours: dump alone (no zstd/gpg/S3)",
    "mongodump": "stock mongodump --archive --gzip",
    "old_pipeline": "old: mongodump dir + gpg + s3cmd",
    "ours_db": "ours: 1 database (core)",
    "floor_instance": f"floor: instance of {INSTANCE_PARTS} dbs",
    "ours_instance": f"ours: instance of {INSTANCE_PARTS} dbs (core)",
    "ours_flow": f"ours: backup flow, {INSTANCE_PARTS} dbs (1 run)",
    "pipeline_alone": "ours: zstd+gpg+S3 alone (no MongoDB)",
    "restore_ours": "restore: ours (verify on)",
    "restore_ours_noverify": "restore: ours (verify off)",
    "mongorestore_prep": "restore prep: S3>gpg>zstd>file",
    "mongorestore": "restore: stock mongorestore",
}
BACKUP_SUBJECTS = ("floor", "dump_alone", "floor_instance", "mongodump", "old_pipeline", "ours_db", "ours_instance")
WINE_SUBJECTS = frozenset({"mongodump", "old_pipeline", "mongorestore"})
#: Wall-time ratios shown in the table: subject -> {column: reference subject}.
RATIOS: dict[str, dict[str, str]] = {
    "dump_alone": {"floor": "floor"},
    "ours_db": {"floor": "floor", "mongodump": "mongodump", "old": "old_pipeline"},
    "ours_instance": {"floor": "floor_instance"},
    "ours_flow": {"floor": "floor_instance"},
    "restore_ours": {"mongorestore": "mongorestore"},
    "restore_ours_noverify": {"mongorestore": "mongorestore"},
}
RATIO_COLUMNS = ("floor", "mongodump", "old", "mongorestore")


# --- what is measured ------------------------------------------------------------------------------------------


@dataclass
class Measure:
    """One run of one subject at one size."""

    subject: str
    size_mb: int
    run: int
    wall_s: float
    data_bytes: int  # what the MB/s are of: the data's BSON (pipeline alone: the archive fed to zstd)
    peak_rss_mb: float | None = None  # process tree; None where the subject runs in the benchmark itself
    temp_disk_bytes: int | None = None
    stored_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mb_per_s(self) -> float:
        return self.data_bytes / MB / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True)
class Summary:
    """A subject at one size over its runs: median wall and MB/s; worst (largest) RSS and temp disk."""

    subject: str
    size_mb: int
    runs: int
    wall_s: float
    mb_per_s: float
    peak_rss_mb: float | None
    temp_disk_mb: float | None
    stored_mb: float | None
    ratios: dict[str, float] = field(default_factory=dict)  # ours wall / reference wall, by RATIO_COLUMNS
    #: Medians of the runs' numeric extras (oplog_query_s, collstats_s, process_wall_s ...) and of their stage
    #: seconds as "stage:<name>": what the notes under the table explain the ratios with.
    details: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return SUBJECTS[self.subject]


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


# --- disk use of a child's process tree ----------------------------------------------------------------------


class DiskProbe:
    """The peak bytes on disk a process tree is responsible for, sampled with its RSS (sample_tree's hook).

    Counted: every file under the watched folders (the child's TMPDIR, the old pipeline's work folder) and
    any other regular file a process of the tree holds open for writing. Not counted: its stdout/stderr
    (the harness's capture files), `ignore`d folders (the GnuPG home: gpg's own state, not backup data)
    and byte-code caches.
    """

    def __init__(self, watch: Sequence[Path] = (), ignore: Sequence[Path] = ()):
        self.watch = [Path(p).resolve() for p in watch]
        self.ignore = [Path(p).resolve() for p in ignore]
        self.peak = 0
        self.written: dict[str, int] = {}  # every file seen, with its largest size

    def __call__(self, root: psutil.Process) -> None:
        sizes: dict[str, int] = {}
        for folder in self.watch:
            sizes.update(_files_under(folder))
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            procs = [root]
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                for opened in proc.open_files():
                    if opened.fd in (1, 2) or opened.mode not in _WRITE_MODES or self._skipped(opened.path):
                        continue
                    with contextlib.suppress(OSError):  # /proc/<pid>/fd/<n> still sizes a deleted file
                        sizes[opened.path] = os.stat(f"/proc/{proc.pid}/fd/{opened.fd}").st_size
        for path, size in sizes.items():
            self.written[path] = max(self.written.get(path, 0), size)
        self.peak = max(self.peak, sum(sizes.values()))

    def _skipped(self, path: str) -> bool:
        if "__pycache__" in path:
            return True
        resolved = Path(path)
        return any(resolved.is_relative_to(p) for p in (*self.watch, *self.ignore))


def _files_under(folder: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for parent, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(parent, name)
            with contextlib.suppress(OSError):  # removed between listing and stat
                sizes[path] = os.stat(path).st_size
    return sizes


def child_env(tmpdir: Path, **extra: str) -> dict[str, str]:
    """Our environment for a child: the dummy moto credentials only, the project importable, its own TMPDIR
    (so any temp file it makes lands where the DiskProbe looks)."""
    env = {**os.environ, **MOTO_ENV, "TMPDIR": str(tmpdir), **extra}
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _checked(done: TreeRun, what: str) -> TreeRun:
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).splitlines()[-25:])
        raise RuntimeError(f"{what} exited with {done.returncode}:\n{tail}")
    return done


def _child_argv(kind: str, params: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "bench.compare", "--child", kind, "--params", json.dumps(params)]


def _load1() -> float:
    return round(os.getloadavg()[0], 2)


# --- the children (each runs in its own process, prints one JSON line) -----------------------------------------


class _CommandTimer(monitoring.CommandListener):
    """Sums the time of one command (collStats): SecantusDB answers it with a scan of the collection."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.seconds = 0.0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.command_name == self.command:
            self.seconds += event.duration_micros / 1e6

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _child_instance(params: dict[str, Any]) -> dict[str, Any]:
    """Backs up the instance's databases one after another as the flow does per instance (max_parallel 1):
    transfer, verify and manifest commit per database, minus Prefect."""
    from mongobackup.backup import (
        Compression,
        back_up_database,
        tool_version,
    )
    from mongobackup.crypto import EncryptionKeys, Gpg
    from mongobackup.dump import DatabaseDump, open_client
    from mongobackup.keys import BackupLocation
    from mongobackup.s3 import S3Storage, s3_client
    from mongobackup.tiers import Tier

    oplog, stats = _OplogTimer(), _CommandTimer("collStats")
    monitoring.register(oplog)  # before the client exists: pymongo copies the listeners when it is created
    monitoring.register(stats)
    client = open_client(params["uri"])
    storage = S3Storage(
        s3_client(endpoint_url=params["endpoint"], region=MOTO_ENV["AWS_DEFAULT_REGION"]), params["bucket"]
    )
    gpg = Gpg(params["gnupghome"])
    keys = EncryptionKeys((params["fingerprint"],))
    taken_at = datetime.now(UTC)
    run_id = uuid.uuid4().hex[:8]
    totals = {"documents": 0, "raw_bytes": 0, "stored_bytes": 0}
    stages: dict[str, float] = {}
    started = time.perf_counter()
    try:
        for database in params["databases"]:
            location = BackupLocation(
                prefix=params["prefix"],
                tier=Tier.DAILY,
                instance="bench",
                database=database,
                taken_at=taken_at,
                run_id=run_id,
            )
            dump = DatabaseDump(client, location.instance, database, tool_version=tool_version())
            manifest = back_up_database(
                dump=dump,
                location=location,
                storage=storage,
                gpg=gpg,
                keys=keys,
                compression=Compression(level=ZSTD_LEVEL, threads=ZSTD_THREADS),
            )
            totals["documents"] += manifest.documents
            totals["raw_bytes"] += manifest.sizes.raw_bytes
            totals["stored_bytes"] += manifest.sizes.encrypted_bytes
            for stage, seconds in manifest.stage_seconds.items():
                stages[stage] = round(stages.get(stage, 0.0) + seconds, 3)
        seconds = time.perf_counter() - started
    finally:
        client.close()
    return {
        **totals,
        "backup_s": round(seconds, 3),
        "stage_seconds": stages,
        "oplog_query_s": round(oplog.seconds, 3),
        "collstats_s": round(stats.seconds, 3),
    }


class _GeneratedArchive:
    """An ArchiveSource over documents held in memory: the archive a dump of them would stream, no MongoDB."""

    def __init__(self, documents: Sequence[bytes], database: str):
        from mongobackup.dump import DumpSummary

        self.documents = documents
        self.database = database
        self.summary = DumpSummary(server_version="generated")

    def chunks(self) -> Iterator[bytes]:
        from mongobackup.archive import ARCHIVE_VERSION, ArchiveHeader, ArchiveWriter, NamespaceMetadata

        writer = ArchiveWriter(
            ArchiveHeader(
                concurrent_collections=1, version=ARCHIVE_VERSION, server_version="generated", tool_version="bench"
            )
        )
        yield writer.prelude([NamespaceMetadata(self.database, COLLECTION, "", 0, "collection")])
        yield from writer.documents(self.database, COLLECTION, self.documents)
        yield writer.end_namespace(self.database, COLLECTION)
        yield writer.finish()
        self.summary.complete = True


def _child_pipeline(params: dict[str, Any]) -> dict[str, Any]:
    """Our zstd -> gpg -> S3 multipart path alone: transfer_database over generated documents held in memory
    (generated before the clock starts), `runs` times."""
    from mongobackup.backup import Compression, transfer_database
    from mongobackup.crypto import EncryptionKeys, Gpg
    from mongobackup.keys import BackupLocation
    from mongobackup.s3 import S3Storage, s3_client
    from mongobackup.tiers import Tier

    rng = random.Random(f"{SEED}-pipeline-{params['size_bytes']}")
    documents: list[bytes] = []
    total = 0
    while total < params["size_bytes"]:
        documents.append(make_document(rng, len(documents)))
        total += len(documents[-1])
    storage = S3Storage(
        s3_client(endpoint_url=params["endpoint"], region=MOTO_ENV["AWS_DEFAULT_REGION"]), params["bucket"]
    )
    gpg = Gpg(params["gnupghome"])
    keys = EncryptionKeys((params["fingerprint"],))
    runs = []
    for _ in range(params["runs"]):
        location = BackupLocation(
            prefix=params["prefix"],
            tier=Tier.DAILY,
            instance="generated",
            database="generated",
            taken_at=datetime.now(UTC),
            run_id=uuid.uuid4().hex[:8],
        )
        started = time.perf_counter()
        outcome = transfer_database(
            dump=_GeneratedArchive(documents, "generated"),
            location=location,
            storage=storage,
            gpg=gpg,
            keys=keys,
            compression=Compression(level=ZSTD_LEVEL, threads=ZSTD_THREADS),
        )
        seconds = time.perf_counter() - started
        storage.delete(outcome.receipt.key)  # moto keeps objects in memory
        runs.append(
            {
                "seconds": round(seconds, 3),
                "raw_bytes": outcome.raw_bytes,
                "stored_bytes": outcome.receipt.size,
                "stage_seconds": outcome.stage_seconds,
            }
        )
    return {"documents": len(documents), "bson_bytes": total, "runs": runs}


def _child_restore(params: dict[str, Any]) -> dict[str, Any]:
    """One restore_backup of a committed backup into a fresh database, timed around the call."""
    from mongobackup.crypto import Gpg
    from mongobackup.dump import open_client
    from mongobackup.manifest import BackupManifest
    from mongobackup.restore import RestoreOptions, restore_backup
    from mongobackup.s3 import S3Storage, s3_client

    storage = S3Storage(
        s3_client(endpoint_url=params["endpoint"], region=MOTO_ENV["AWS_DEFAULT_REGION"]), params["bucket"]
    )
    manifest = BackupManifest.from_json_dict(storage.get_json(params["manifest_key"]), key=params["manifest_key"])
    client = open_client(params["uri"])
    try:
        started = time.perf_counter()
        result = restore_backup(
            storage,
            params["key"],
            Gpg(params["gnupghome"]),
            client,
            RestoreOptions(target_database=params["target_database"], verify=params["verify"]),
            manifest=manifest,
        )
        seconds = time.perf_counter() - started
    finally:
        client.close()
    return {
        "restore_s": round(seconds, 3),
        "documents": result.documents,
        "archive_bytes": result.archive_bytes,
        "object_bytes": result.object_bytes,
        "verdict": result.verdict.summary(),
        "ok": result.verdict.ok,
    }


CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "instance": _child_instance,
    "pipeline": _child_pipeline,
    "restore": _child_restore,
}


# --- measurements (in the benchmark's process; each subject's work in a child where memory counts) --------------


def measure_floor(bench: Bench, datasets: Sequence[Dataset], *, subject: str, size_mb: int, run: int) -> Measure:
    """A raw scan: every document of the datasets as RawBSONDocument, nothing done with it but its length."""
    client: MongoClient = MongoClient(bench.source_uri)
    try:
        client.admin.command("ping")  # the connection is made before the clock starts
        load = _load1()
        started = time.perf_counter()
        documents = scanned = 0
        for dataset in datasets:
            for document in client.get_database(dataset.name, codec_options=RAW)[COLLECTION].find({}):
                documents += 1
                scanned += len(document.raw)
        wall = time.perf_counter() - started
        # What our dump's collStats costs on this server (MongoDB reads it from metadata; SecantusDB scans).
        stats_started = time.perf_counter()
        for dataset in datasets:
            client[dataset.name].command("collStats", COLLECTION)
        collstats = time.perf_counter() - stats_started
    finally:
        client.close()
    expected = sum(d.bson_bytes for d in datasets)
    if scanned != expected:
        raise RuntimeError(f"floor scan read {scanned} bytes of BSON, the datasets hold {expected}")
    return Measure(
        subject,
        size_mb,
        run,
        round(wall, 3),
        scanned,
        extra={"documents": documents, "collstats_s": round(collstats, 3), "load1": load},
    )


def measure_dump_alone(bench: Bench, dataset: Dataset, *, size_mb: int, run: int) -> Measure:
    """Our dump stage alone, in this process: DatabaseDump's archive stream drained and dropped, no zstd, gpg
    or S3. Between the floor and the whole backup, it says which side the time goes to."""
    from mongobackup.backup import tool_version
    from mongobackup.dump import DatabaseDump

    oplog, stats = _OplogTimer(), _CommandTimer("collStats")
    # Listeners on this client only: registered globally they would also slow every later floor scan.
    client: MongoClient = MongoClient(
        bench.source_uri, readPreference="primaryPreferred", event_listeners=[oplog, stats]
    )
    try:
        client.admin.command("ping")
        load = _load1()
        started = time.perf_counter()
        archive = 0
        for chunk in DatabaseDump(client, "bench", dataset.name, tool_version=tool_version()).chunks():
            archive += len(chunk)
        wall = time.perf_counter() - started
    finally:
        client.close()
    return Measure(
        "dump_alone",
        size_mb,
        run,
        round(wall, 3),
        dataset.bson_bytes,
        extra={
            "archive_bytes": archive,
            "oplog_query_s": round(oplog.seconds, 3),
            "collstats_s": round(stats.seconds, 3),
            "load1": load,
        },
    )


def measure_mongodump(bench: Bench, dataset: Dataset, *, size_mb: int, run: int) -> Measure:
    """Stock `mongodump --archive=FILE --gzip` of one database under wine; the wall includes wine's start-up."""
    tools = _tools(bench)
    out = bench.scratch("mongodump") / "dump.archive.gz"
    argv = tools.argv("mongodump", f"--uri={bench.source_uri}", f"--db={dataset.name}", f"--archive={out}", "--gzip")
    load = _load1()
    done = _checked(sample_tree(argv, env=tools.env(), what=f"mongodump of {dataset.name}"), "mongodump")
    stored = out.stat().st_size
    shutil.rmtree(out.parent)
    return Measure(
        "mongodump",
        size_mb,
        run,
        round(done.wall_s, 3),
        dataset.bson_bytes,
        peak_rss_mb=round(done.peak_tree / MB, 1),
        stored_bytes=stored,
        extra={"samples": done.samples, "load1": load},
    )


def measure_old_pipeline(bench: Bench, dataset: Dataset, *, size_mb: int, run: int) -> Measure:
    """The team's old backup: mongodump to a folder, then gpg over each file (gpg's defaults, so zlib
    compression), then s3cmd uploads the .gpg files; the folder is removed at the end. One bash script, so
    the process tree (bash, wine's mongodump, gpg, s3cmd) and the folder are sampled as one."""
    tools = _tools(bench)
    work = bench.scratch("old-pipeline")
    config = _s3cmd_config(bench)
    dump_dir = work / "dump"
    prefix = f"old/{size_mb}mb/{run}-{uuid.uuid4().hex[:6]}/"
    mongodump = shlex.join(
        tools.argv("mongodump", f"--uri={bench.source_uri}", f"--db={dataset.name}", f"--out={dump_dir}")
    )
    gpg = shlex.join(
        [
            "gpg",
            "--homedir",
            str(bench.key.home),
            "--batch",
            "--yes",
            "--quiet",
            "--trust-model",
            "always",
            "--recipient",
            bench.key.fingerprint,
            "--encrypt",
        ]
    )
    s3cmd = shlex.join([str(Path(sys.executable).parent / "s3cmd"), "-c", str(config), "--no-progress", "--quiet"])
    folder = shlex.quote(str(dump_dir / dataset.name))
    script = "\n".join(
        [
            "set -euo pipefail",
            mongodump,
            f'for f in {folder}/*; do {gpg} --output "$f.gpg" "$f"; done',
            f"{s3cmd} put {folder}/*.gpg s3://{bench.bucket}/{prefix}",
            f"rm -rf {shlex.quote(str(dump_dir))}",
        ]
    )
    probe = DiskProbe([work], ignore=[bench.key.home])
    load = _load1()
    done = _checked(
        sample_tree(["bash", "-c", script], env=tools.env(), what="the old pipeline", on_sample=probe),
        "the old pipeline",
    )
    stored = _delete_prefix(bench, prefix)
    shutil.rmtree(work)
    return Measure(
        "old_pipeline",
        size_mb,
        run,
        round(done.wall_s, 3),
        dataset.bson_bytes,
        peak_rss_mb=round(done.peak_tree / MB, 1),
        temp_disk_bytes=probe.peak,
        stored_bytes=stored,
        extra={"samples": done.samples, "load1": load},
    )


def measure_ours_db(bench: Bench, dataset: Dataset, *, size_mb: int, run: int) -> Measure:
    """Our core path on one database, in backup_memory's child (transfer_database + verify_upload)."""
    tmpdir = bench.scratch("ours-tmp")
    target = BackupTarget(
        uri=bench.source_uri,
        database=dataset.name,
        bucket=bench.bucket,
        endpoint=bench.endpoint,
        gnupghome=str(bench.key.home),
        fingerprint=bench.key.fingerprint,
    )
    probe = DiskProbe([tmpdir], ignore=[bench.key.home])
    load = _load1()
    done = _checked(
        sample_tree(target.argv(), env=child_env(tmpdir), what=f"backup of {dataset.name}", on_sample=probe),
        f"backup child for {dataset.name}",
    )
    report = _last_json_line(done.stdout, dataset.name)
    shutil.rmtree(tmpdir)
    return Measure(
        "ours_db",
        size_mb,
        run,
        report["backup_s"],
        dataset.bson_bytes,
        peak_rss_mb=round(done.peak_tree / MB, 1),
        temp_disk_bytes=probe.peak,
        stored_bytes=report["stored_bytes"],
        extra={
            "process_wall_s": round(done.wall_s, 3),
            "raw_bytes": report["raw_bytes"],
            "stage_seconds": report["stage_seconds"],
            "oplog_query_s": report.get("oplog_query_s"),
            "peak_rss_python_mb": round(done.peak_root / MB, 1),
            "peak_rss_gpg_mb": round(done.peak_descendants / MB, 1),
            "files_written": probe.written,
            "samples": done.samples,
            "load1": load,
        },
    )


def measure_ours_instance(bench: Bench, data: SizeData, *, run: int) -> Measure:
    """Our core path over the instance's databases, in this module's `instance` child."""
    tmpdir = bench.scratch("instance-tmp")
    prefix = f"instance/{data.size_mb}mb/{run}-{uuid.uuid4().hex[:6]}/"
    params = {
        "uri": bench.source_uri,
        "databases": [d.name for d in data.parts],
        "bucket": bench.bucket,
        "endpoint": bench.endpoint,
        "gnupghome": str(bench.key.home),
        "fingerprint": bench.key.fingerprint,
        "prefix": prefix,
    }
    probe = DiskProbe([tmpdir], ignore=[bench.key.home])
    load = _load1()
    done = _checked(
        sample_tree(
            _child_argv("instance", params),
            env=child_env(tmpdir),
            what=f"instance backup at {data.size_mb} MB",
            on_sample=probe,
        ),
        "instance child",
    )
    report = _last_json_line(done.stdout, f"instance at {data.size_mb} MB")
    _delete_prefix(bench, prefix)
    shutil.rmtree(tmpdir)
    return Measure(
        "ours_instance",
        data.size_mb,
        run,
        report["backup_s"],
        data.instance_bytes,
        peak_rss_mb=round(done.peak_tree / MB, 1),
        temp_disk_bytes=probe.peak,
        stored_bytes=report["stored_bytes"],
        extra={
            "process_wall_s": round(done.wall_s, 3),
            "raw_bytes": report["raw_bytes"],
            "stage_seconds": report["stage_seconds"],
            "oplog_query_s": report["oplog_query_s"],
            "collstats_s": report["collstats_s"],
            "files_written": probe.written,
            "samples": done.samples,
            "load1": load,
        },
    )


def measure_flow(bench: Bench, data: SizeData) -> Measure:
    """One run of the Prefect `backup` flow (`python -m flows.backup --plan`) over the instance's databases,
    reporting to the benchmark's Prefect server. The wall is the whole process: Prefect's start-up included."""
    if bench.prefect_url is None:
        raise RuntimeError("the flow row needs a Prefect server (Bench.prefect_url)")
    import yaml

    tmpdir = bench.scratch("flow-tmp")
    prefect_home = bench.scratch("flow-prefect-home")
    prefix = f"flow/{data.size_mb}mb-{uuid.uuid4().hex[:6]}/"
    plan = {
        "instances": [{"name": "bench", "uri": bench.source_uri, "databases": [d.name for d in data.parts]}],
        "storage": {
            "bucket": bench.bucket,
            "prefix": prefix,
            "endpoint_url": bench.endpoint,
            "region": MOTO_ENV["AWS_DEFAULT_REGION"],
        },
        "encryption": {"recipients": [bench.key.fingerprint], "gnupghome": str(bench.key.home)},
        "compression": {"level": ZSTD_LEVEL, "threads": ZSTD_THREADS},
        "tiers": {"timezone": "UTC"},
        "retries": {"attempts": 0, "backoff_s": 0},
    }
    plan_path = bench.scratch("flow-plan") / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(plan, sort_keys=False))
    env = child_env(tmpdir, PREFECT_API_URL=bench.prefect_url, PREFECT_HOME=str(prefect_home))
    # PREFECT_HOME is Prefect's own state (profiles, logs), reported apart from temp disk below.
    probe = DiskProbe([tmpdir], ignore=[bench.key.home, prefect_home])
    load = _load1()
    done = _checked(
        sample_tree(
            [sys.executable, "-m", "flows.backup", "--plan", str(plan_path)],
            env=env,
            what=f"backup flow at {data.size_mb} MB",
            on_sample=probe,
        ),
        "backup flow",
    )
    storage = bench.storage()
    manifests = [storage.get_json(o.key) for o in storage.list_keys(prefix) if o.key.endswith(".manifest.json")]
    transfer_s = sum(
        (datetime.fromisoformat(m["finished_at"]) - datetime.fromisoformat(m["started_at"])).total_seconds()
        for m in manifests
    )
    stored = sum(m["sizes"]["encrypted_bytes"] for m in manifests)
    if len(manifests) != len(data.parts):
        raise RuntimeError(
            f"the flow committed {len(manifests)} backups, expected {len(data.parts)}:\n{done.stdout[-2000:]}"
        )
    _delete_prefix(bench, prefix)
    prefect_state = sum(_files_under(prefect_home).values())
    for folder in (tmpdir, prefect_home, plan_path.parent):
        shutil.rmtree(folder, ignore_errors=True)
    return Measure(
        "ours_flow",
        data.size_mb,
        1,
        round(done.wall_s, 3),
        data.instance_bytes,
        peak_rss_mb=round(done.peak_tree / MB, 1),
        temp_disk_bytes=probe.peak,
        stored_bytes=stored,
        extra={
            "transfer_s_from_manifests": round(transfer_s, 3),
            "files_written": probe.written,
            "prefect_home_bytes": prefect_state,
            "samples": done.samples,
            "load1": load,
        },
    )


def measure_pipeline_alone(bench: Bench, size_mb: int, *, runs: int) -> list[Measure]:
    """zstd -> gpg -> S3 on `size_mb` of generated BSON, `runs` times in one child (data generated once)."""
    tmpdir = bench.scratch("pipeline-tmp")
    params = {
        "size_bytes": size_mb * MB,
        "runs": runs,
        "bucket": bench.bucket,
        "endpoint": bench.endpoint,
        "gnupghome": str(bench.key.home),
        "fingerprint": bench.key.fingerprint,
        "prefix": f"pipeline/{size_mb}mb/",
    }
    load = _load1()
    done = _checked(
        sample_tree(_child_argv("pipeline", params), env=child_env(tmpdir), what=f"pipeline alone at {size_mb} MB"),
        "pipeline child",
    )
    report = _last_json_line(done.stdout, f"pipeline at {size_mb} MB")
    shutil.rmtree(tmpdir)
    return [
        Measure(
            "pipeline_alone",
            size_mb,
            n,
            r["seconds"],
            r["raw_bytes"],
            stored_bytes=r["stored_bytes"],
            # The child holds the generated documents in memory: its RSS says nothing about the pipeline.
            extra={
                "stage_seconds": r["stage_seconds"],
                "child_peak_rss_mb": round(done.peak_tree / MB, 1),
                "load1": load,
            },
        )
        for n, r in enumerate(report["runs"], start=1)
    ]


@dataclass(frozen=True)
class RestoreSource:
    """A committed backup of one size's database, restored by both restorers."""

    size_mb: int
    dataset: Dataset
    key: str
    manifest_key: str
    stored_bytes: int


def prepare_restore_source(bench: Bench, dataset: Dataset, size_mb: int) -> RestoreSource:
    """Backs the dataset up once with the core (transfer, verify, commit), here: it is not what is measured."""
    from mongobackup.backup import (
        Compression,
        back_up_database,
        tool_version,
    )
    from mongobackup.crypto import EncryptionKeys, Gpg
    from mongobackup.dump import DatabaseDump, open_client
    from mongobackup.keys import BackupLocation
    from mongobackup.tiers import Tier

    storage = bench.storage()
    client = open_client(bench.source_uri)
    try:
        when = datetime.now(UTC)
        location = BackupLocation(
            prefix="restore-source/",
            tier=Tier.DAILY,
            instance="bench",
            database=dataset.name,
            taken_at=when,
            run_id=uuid.uuid4().hex[:8],
        )
        manifest = back_up_database(
            dump=DatabaseDump(client, "bench", dataset.name, tool_version=tool_version()),
            location=location,
            storage=storage,
            gpg=Gpg(str(bench.key.home)),
            keys=EncryptionKeys((bench.key.fingerprint,)),
            compression=Compression(level=ZSTD_LEVEL, threads=ZSTD_THREADS),
        )
    finally:
        client.close()
    return RestoreSource(size_mb, dataset, manifest.object_key, location.manifest_key, manifest.sizes.encrypted_bytes)


def measure_restore_ours(bench: Bench, source: RestoreSource, *, run: int, verify: bool) -> Measure:
    """restore_backup (S3 -> gpg -> zstd -> archive reader -> insert threads) into a fresh database."""
    target = f"restored_{source.size_mb}mb_{'v' if verify else 'n'}{run}_{uuid.uuid4().hex[:4]}"
    tmpdir = bench.scratch("restore-tmp")
    params = {
        "uri": _restore_uri(bench),
        "bucket": bench.bucket,
        "endpoint": bench.endpoint,
        "gnupghome": str(bench.key.home),
        "key": source.key,
        "manifest_key": source.manifest_key,
        "target_database": target,
        "verify": verify,
    }
    probe = DiskProbe([tmpdir], ignore=[bench.key.home])
    load = _load1()
    try:
        done = _checked(
            sample_tree(
                _child_argv("restore", params), env=child_env(tmpdir), what=f"restore into {target}", on_sample=probe
            ),
            "restore child",
        )
        report = _last_json_line(done.stdout, target)
        _check_restored(bench, target, source.dataset)
    finally:
        _drop_restored(bench, target)
        shutil.rmtree(tmpdir)
    subject = "restore_ours" if verify else "restore_ours_noverify"
    return Measure(
        subject,
        source.size_mb,
        run,
        report["restore_s"],
        source.dataset.bson_bytes,
        peak_rss_mb=round(done.peak_tree / MB, 1),
        temp_disk_bytes=probe.peak,
        extra={
            "process_wall_s": round(done.wall_s, 3),
            "archive_bytes": report["archive_bytes"],
            "verdict": report["verdict"],
            "peak_rss_python_mb": round(done.peak_root / MB, 1),
            "peak_rss_gpg_mb": round(done.peak_descendants / MB, 1),
            "load1": load,
        },
    )


def measure_mongorestore_prep(bench: Bench, source: RestoreSource, *, run: int) -> tuple[Measure, Path]:
    """What mongorestore needs first: the stored object decrypted and decompressed to an archive file
    (S3 -> gpg -> zstd -> file, streamed by our own stages). Returns the measure and the file."""
    from mongobackup.crypto import Gpg
    from mongobackup.streams import CHUNK_SIZE, zstd_decompressing_reader

    out = bench.scratch("mongorestore-archive") / "restore.archive"
    storage = bench.storage()
    load = _load1()
    started = time.perf_counter()
    body = storage.open_read(source.key)
    decrypted = Gpg(str(bench.key.home)).decrypting_reader(body, name=storage.where(source.key))
    try:
        plain = zstd_decompressing_reader(decrypted)  # type: ignore[arg-type]
        with out.open("wb") as sink:
            while chunk := plain.read(CHUNK_SIZE):
                sink.write(chunk)
    finally:
        decrypted.close()
    wall = time.perf_counter() - started
    size = out.stat().st_size
    return Measure(
        "mongorestore_prep",
        source.size_mb,
        run,
        round(wall, 3),
        source.dataset.bson_bytes,
        temp_disk_bytes=size,
        extra={"archive_bytes": size, "load1": load},
    ), out


def measure_mongorestore(bench: Bench, source: RestoreSource, archive: Path, *, run: int) -> Measure:
    """Stock `mongorestore --archive=FILE` under wine into a fresh database (--nsFrom/--nsTo)."""
    tools = _tools(bench)
    target = f"mongorestored_{source.size_mb}mb_{run}_{uuid.uuid4().hex[:4]}"
    argv = tools.argv(
        "mongorestore",
        f"--uri={_restore_uri(bench)}",
        f"--archive={archive}",
        f"--nsFrom={source.dataset.name}.*",
        f"--nsTo={target}.*",
    )
    load = _load1()
    try:
        done = _checked(sample_tree(argv, env=tools.env(), what=f"mongorestore into {target}"), "mongorestore")
        _check_restored(bench, target, source.dataset)
    finally:
        _drop_restored(bench, target)
    return Measure(
        "mongorestore",
        source.size_mb,
        run,
        round(done.wall_s, 3),
        source.dataset.bson_bytes,
        peak_rss_mb=round(done.peak_tree / MB, 1),
        extra={"samples": done.samples, "load1": load},
    )


def _tools(bench: Bench) -> MongoTools:
    if bench.tools is None:
        raise RuntimeError("this subject needs the real mongo tools under wine (Bench.tools)")
    return bench.tools


def _restore_uri(bench: Bench) -> str:
    return bench.restore_uri or bench.source_uri


def _check_restored(bench: Bench, database: str, dataset: Dataset) -> None:
    client: MongoClient = MongoClient(_restore_uri(bench))
    try:
        count = client[database][COLLECTION].count_documents({})
    finally:
        client.close()
    if count != dataset.documents:
        raise RuntimeError(
            f"{database} holds {count} documents after the restore, {dataset.name} has {dataset.documents}"
        )


def _drop_restored(bench: Bench, database: str) -> None:
    client: MongoClient = MongoClient(_restore_uri(bench))
    try:
        client.drop_database(database)
    finally:
        client.close()


def _delete_prefix(bench: Bench, prefix: str) -> int:
    """Deletes every object under `prefix` (moto keeps them in memory); returns the bytes of the backup
    objects among them (manifests not counted)."""
    storage = bench.storage()
    stored = 0
    for info in list(storage.list_keys(prefix)):
        if not info.key.endswith(".json"):
            stored += info.size
        storage.delete(info.key)
    return stored


def _s3cmd_config(bench: Bench) -> Path:
    """s3cmd's config for moto: path-style on the loopback port, plain HTTP, SigV4, the dummy keys."""
    path = bench.work / "s3cmd.cfg"
    if not path.exists():
        host = bench.endpoint.removeprefix("http://").rstrip("/")
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


# --- one benchmark --------------------------------------------------------------------------------------------


def measure_backups(
    bench: Bench,
    data: SizeData,
    *,
    run: int,
    subjects: Sequence[str] = BACKUP_SUBJECTS,
    progress: Callable[[str], None] = print,
) -> list[Measure]:
    """One run of each backup subject at one size."""
    measures: list[Measure] = []
    for subject in subjects:
        if subject == "floor":
            measure = measure_floor(bench, [data.single], subject="floor", size_mb=data.size_mb, run=run)
        elif subject == "floor_instance":
            measure = measure_floor(bench, data.parts, subject="floor_instance", size_mb=data.size_mb, run=run)
        elif subject == "dump_alone":
            measure = measure_dump_alone(bench, data.single, size_mb=data.size_mb, run=run)
        elif subject == "mongodump":
            measure = measure_mongodump(bench, data.single, size_mb=data.size_mb, run=run)
        elif subject == "old_pipeline":
            measure = measure_old_pipeline(bench, data.single, size_mb=data.size_mb, run=run)
        elif subject == "ours_db":
            measure = measure_ours_db(bench, data.single, size_mb=data.size_mb, run=run)
        elif subject == "ours_instance":
            measure = measure_ours_instance(bench, data, run=run)
        else:
            raise ValueError(f"not a backup subject: {subject!r}")
        progress(_line(measure))
        measures.append(measure)
    return measures


def measure_restores(
    bench: Bench, source: RestoreSource, *, run: int, wine: bool = True, progress: Callable[[str], None] = print
) -> list[Measure]:
    """One run of each restore subject at one size."""
    measures = [
        measure_restore_ours(bench, source, run=run, verify=True),
        measure_restore_ours(bench, source, run=run, verify=False),
    ]
    if wine:
        prep, archive = measure_mongorestore_prep(bench, source, run=run)
        try:
            measures += [prep, measure_mongorestore(bench, source, archive, run=run)]
        finally:
            shutil.rmtree(archive.parent)
    for measure in measures:
        progress(_line(measure))
    return measures


def _line(m: Measure) -> str:
    parts = [f"{m.size_mb} MB run {m.run}: {SUBJECTS[m.subject]}: {m.wall_s:.2f} s, {m.mb_per_s:.1f} MB/s"]
    if m.peak_rss_mb is not None:
        parts.append(f"peak RSS {m.peak_rss_mb:.1f} MB")
    if m.temp_disk_bytes is not None:
        parts.append(f"temp disk {m.temp_disk_bytes / MB:.1f} MB")
    if m.stored_bytes is not None:
        parts.append(f"stored {m.stored_bytes / MB:.1f} MB")
    return ", ".join(parts) + f" (load {m.extra.get('load1', '?')})"


def run_benchmark(sizes: Sequence[int], runs: int, keep_data: bool) -> int:
    from devservices import LocalServices, create_gpg_key, remove_gpg_home

    began = time.perf_counter()
    tempfile.gettempdir()  # fixed now: the children's TMPDIR must not become ours
    machine = machine_info()
    run_dir = KEEP_RUN_DIR if keep_data else Path(tempfile.mkdtemp(prefix="bench-compare-"))
    services = LocalServices(run_dir)
    for name in ("mongo-a", "mongo-b"):  # read by secantusd-py from its working folder, the state folder
        services.state_dir(name).mkdir(parents=True, exist_ok=True)
        (services.state_dir(name) / "secantusd.toml").write_text(f"[oplog]\nmax_entries = {OPLOG_MAX_ENTRIES}\n")
    gpg_home = Path(tempfile.mkdtemp(prefix="gpg-cmp-", dir="/tmp"))
    work = Path(tempfile.mkdtemp(prefix="bench-compare-work-"))
    tools = MongoTools(run_dir / "wine")
    measures: list[Measure] = []
    phases: dict[str, float] = {}
    try:
        key = create_gpg_key("Backup Compare <compare@localhost>", home=gpg_home)
        print(f"services under {run_dir}: starting mongo-a, mongo-b, moto", flush=True)
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
        with contextlib.suppress(Exception):  # already there from an earlier --keep-data run
            bench.s3().create_bucket(Bucket=BUCKET)
        tools.prepare()
        machine["wine_startup_s"] = _wine_startup(tools)
        client: MongoClient = MongoClient(bench.source_uri)
        try:
            clock = time.perf_counter()
            data = [
                prepare_size(client, size, reuse=keep_data, progress=lambda line: print(line, flush=True))
                for size in sizes
            ]
            phases["generate"] = time.perf_counter() - clock
        finally:
            client.close()

        clock = time.perf_counter()
        for run in range(1, runs + 1):  # round-robin: every subject and size sees the same background load
            for size_data in data:
                measures += measure_backups(bench, size_data, run=run, progress=_print)
        phases["backups"] = time.perf_counter() - clock

        clock = time.perf_counter()
        for size in sizes:
            for measure in measure_pipeline_alone(bench, size, runs=runs):
                _print(_line(measure))
                measures.append(measure)
        phases["pipeline_alone"] = time.perf_counter() - clock

        clock = time.perf_counter()
        sources = [prepare_restore_source(bench, d.single, d.size_mb) for d in data]
        for run in range(1, runs + 1):
            for source in sources:
                measures += measure_restores(bench, source, run=run, progress=_print)
        for source in sources:
            _delete_prefix(bench, source.key.rsplit("/", 1)[0] + "/")
        phases["restores"] = time.perf_counter() - clock

        # Prefect only now, and stopped right after: its server would load the CPU under every other row.
        clock = time.perf_counter()
        print("starting a Prefect server for the flow runs", flush=True)
        services.start(["prefect"])
        bench.prefect_url = services.url("prefect")
        try:
            for size_data in data:
                measure = measure_flow(bench, size_data)
                _print(_line(measure))
                measures.append(measure)
        finally:
            services.stop(["prefect"])
        phases["flow"] = time.perf_counter() - clock
    finally:
        services.stop()
        tools.shutdown()
        remove_gpg_home(gpg_home)
        shutil.rmtree(work, ignore_errors=True)
        if not keep_data:
            shutil.rmtree(run_dir, ignore_errors=True)
    total = time.perf_counter() - began
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    machine["git_at_end"] = machine_info().get("git")  # the work tree is shared: did the code change meanwhile?
    summaries = summarize(measures)
    targets = check_targets(summaries)
    table = format_table(summaries)
    print()
    print(header_text(machine, sizes, runs, total))
    print(table)
    print()
    for note in time_notes(summaries):
        print(note)
    print()
    for verdict in targets:
        print(verdict.line())
    finished_at = datetime.now(UTC)
    document = {
        "benchmark": "compare",
        "finished_at": finished_at.isoformat(timespec="seconds"),
        "mb": MB,
        "sizes_mb": list(sizes),
        "runs": runs,
        "total_seconds": round(total, 1),
        "phase_seconds": {k: round(v, 1) for k, v in phases.items()},
        "machine": machine,
        "subjects": SUBJECTS,
        "summaries": [asdict(s) for s in summaries],
        "targets": [asdict(t) | {"line": t.line()} for t in targets],
        "measures": [asdict(m) | {"mb_per_s": round(m.mb_per_s, 2)} for m in measures],
        "datasets": [asdict(d) for sd in data for d in (sd.single, *sd.parts)],
    }
    write_json(RESULTS_JSON, document)
    draw_chart(summaries, RESULTS_PNG, title=f"bench.compare on {machine['cpu_model']} x{machine['nproc']}")
    PUBLISHED_MD.write_text(results_markdown(summaries, targets, machine, sizes, runs, total, finished_at))
    shutil.copyfile(RESULTS_PNG, PUBLISHED_PNG)
    print(
        f"\nwritten: {_rel(RESULTS_JSON)}, {_rel(RESULTS_PNG)}; published: {_rel(PUBLISHED_MD)}, "
        f"{_rel(PUBLISHED_PNG)}; whole benchmark {total:.0f} s"
    )
    return 0


def _print(line: str) -> None:
    print(line, flush=True)


def _rel(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT))


def _wine_startup(tools: MongoTools) -> float:
    """The median wall of `mongodump --version`: what wine adds to each stock-tool row."""
    walls = []
    for _ in range(3):
        started = time.perf_counter()
        tools.run("mongodump", "--version", stdout=subprocess.DEVNULL, timeout=120)
        walls.append(time.perf_counter() - started)
    return round(statistics.median(walls), 3)


# --- report ---------------------------------------------------------------------------------------------------


def summarize(measures: Sequence[Measure]) -> list[Summary]:
    """Per (subject, size): the median wall and MB/s over the runs, the worst RSS and temp disk, and the
    wall ratios of RATIOS against the reference subjects' medians at the same size."""
    groups: dict[tuple[str, int], list[Measure]] = {}
    for m in measures:
        groups.setdefault((m.subject, m.size_mb), []).append(m)
    walls = {key: statistics.median(m.wall_s for m in group) for key, group in groups.items()}
    order = list(SUBJECTS)
    summaries = []
    for (subject, size), group in sorted(groups.items(), key=lambda kv: (kv[0][1], order.index(kv[0][0]))):
        ratios = {
            column: round(walls[(subject, size)] / walls[(ref, size)], 2)
            for column, ref in RATIOS.get(subject, {}).items()
            if walls.get((ref, size))
        }
        rss = [m.peak_rss_mb for m in group if m.peak_rss_mb is not None]
        disk = [m.temp_disk_bytes for m in group if m.temp_disk_bytes is not None]
        stored = [m.stored_bytes for m in group if m.stored_bytes is not None]
        summaries.append(
            Summary(
                subject=subject,
                size_mb=size,
                runs=len(group),
                wall_s=round(walls[(subject, size)], 3),
                mb_per_s=round(statistics.median(m.mb_per_s for m in group), 2),
                peak_rss_mb=max(rss) if rss else None,
                temp_disk_mb=round(max(disk) / MB, 2) if disk else None,
                stored_mb=round(statistics.median(stored) / MB, 2) if stored else None,
                ratios=ratios,
                details=_median_details(group),
            )
        )
    return summaries


def _median_details(group: Sequence[Measure]) -> dict[str, float]:
    values: dict[str, list[float]] = {}
    for m in group:
        flat = {k: v for k, v in m.extra.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        flat.update({f"stage:{k}": v for k, v in (m.extra.get("stage_seconds") or {}).items()})
        for key, value in flat.items():
            values.setdefault(key, []).append(float(value))
    return {key: round(statistics.median(v), 3) for key, v in values.items()}


_TABLE_COLUMNS = (
    "size MB",
    "subject",
    "runs",
    "wall s",
    "MB/s",
    "peak RSS MB",
    "temp disk MB",
    "stored MB",
    "÷ floor",
    "÷ mongodump",
    "÷ old",
    "÷ mongorestore",
)


def _cells(s: Summary) -> tuple[str, ...]:
    def opt(value: float | None, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    return (
        str(s.size_mb),
        s.label,
        str(s.runs),
        f"{s.wall_s:.2f}",
        f"{s.mb_per_s:.1f}",
        opt(s.peak_rss_mb, ".1f"),
        opt(s.temp_disk_mb, ".1f"),
        opt(s.stored_mb, ".1f"),
        *(f"{s.ratios[c]:.2f}x" if c in s.ratios else "" for c in RATIO_COLUMNS),
    )


def format_table(summaries: Sequence[Summary]) -> str:
    """A plain-text table: one row per (size, subject); a blank line between sizes."""
    cells = [_TABLE_COLUMNS, *(_cells(s) for s in summaries)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(_TABLE_COLUMNS))]

    def render(row: Sequence[str]) -> str:
        return " | ".join(
            c.ljust(w) if i == 1 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    lines = [render(_TABLE_COLUMNS), "-+-".join("-" * w for w in widths)]
    previous = None
    for summary, row in zip(summaries, cells[1:], strict=True):
        if previous is not None and summary.size_mb != previous:
            lines.append("")
        previous = summary.size_mb
        lines.append(render(row))
    return "\n".join(lines)


def markdown_table(summaries: Sequence[Summary]) -> str:
    lines = [
        "| " + " | ".join(_TABLE_COLUMNS) + " |",
        "|" + "|".join("---" if i == 1 else "---:" for i in range(len(_TABLE_COLUMNS))) + "|",
    ]
    lines += ["| " + " | ".join(_cells(s)) + " |" for s in summaries]
    return "\n".join(lines)


@dataclass(frozen=True)
class TargetVerdict:
    """One of the issue's targets, judged on the summaries."""

    target: str
    met: bool | None  # None: not measured in this run
    detail: str

    def line(self) -> str:
        state = "NOT MEASURED" if self.met is None else ("MET" if self.met else "MISSED")
        return f"{state:12s} {self.target}: {self.detail}"


def check_targets(summaries: Sequence[Summary]) -> list[TargetVerdict]:
    """The issue's targets, each MET only when it holds at every size measured."""
    by = {(s.subject, s.size_mb): s for s in summaries}
    sizes = sorted({s.size_mb for s in summaries})

    def per_size(subject: str, value: Callable[[Summary], float | None], fmt: str) -> tuple[list[float], str]:
        values, texts = [], []
        for size in sizes:
            s = by.get((subject, size))
            v = value(s) if s is not None else None
            if v is not None:
                values.append(v)
                texts.append(f"{format(v, fmt)} at {size} MB")
        return values, ", ".join(texts)

    verdicts = []
    for column, limit, name in (
        ("floor", TARGET_FLOOR_RATIO, "backup wall <= 1.25x the floor"),
        ("mongodump", TARGET_MONGODUMP_RATIO, "backup wall <= stock mongodump"),
    ):
        values, text = per_size("ours_db", lambda s, c=column: s.ratios.get(c), ".2f")
        verdicts.append(
            TargetVerdict(
                name, all(v <= limit for v in values) if values else None, f"ours (1 db) / {column}: {text or '-'}"
            )
        )
    peaks, text = per_size("ours_db", lambda s: s.peak_rss_mb, ".1f")
    spread = max(peaks) - min(peaks) if peaks else 0.0
    verdicts.append(
        TargetVerdict(
            f"peak RSS < {TARGET_PEAK_MB:.0f} MB and flat within {TARGET_FLAT_MB:.0f} MB",
            (max(peaks) < TARGET_PEAK_MB and spread <= TARGET_FLAT_MB) if peaks else None,
            f"ours (1 db, python + gpg, worst run): {text or '-'}; spread {spread:.1f} MB",
        )
    )
    disks = [
        (s.label, s.size_mb, s.temp_disk_mb)
        for s in summaries
        if s.subject in ("ours_db", "ours_instance", "ours_flow", "restore_ours", "restore_ours_noverify")
        and s.temp_disk_mb is not None
    ]
    worst = max((d for d in disks), key=lambda d: d[2], default=None)
    verdicts.append(
        TargetVerdict(
            "zero temp disk",
            all(d[2] == 0 for d in disks) if disks else None,
            f"{len(disks)} rows of ours (backups, flow, restores); largest {worst[2]:.2f} MB ({worst[0]} at "
            f"{worst[1]} MB)"
            if worst
            else "-",
        )
    )
    values, text = per_size("restore_ours", lambda s: s.ratios.get("mongorestore"), ".2f")
    _, text_off = per_size("restore_ours_noverify", lambda s: s.ratios.get("mongorestore"), ".2f")
    verdicts.append(
        TargetVerdict(
            "restore wall <= 1.0x stock mongorestore",
            all(v <= TARGET_RESTORE_RATIO for v in values) if values else None,
            f"ours (verify on) / mongorestore: {text or '-'}; verify off: {text_off or '-'} "
            "(mongorestore's decrypt+decompress prep not included)",
        )
    )
    values, text = per_size("pipeline_alone", lambda s: s.mb_per_s, ".1f")
    verdicts.append(
        TargetVerdict(
            f"compress+encrypt+upload >= {TARGET_PIPELINE_MB_S:.0f} MB/s",
            all(v >= TARGET_PIPELINE_MB_S for v in values) if values else None,
            f"MB/s: {text or '-'}",
        )
    )
    return verdicts


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on, and what else ran: the table's header."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "oplog_max_entries": OPLOG_MAX_ENTRIES,
        "zstd": f"level {ZSTD_LEVEL}, {ZSTD_THREADS} threads",
    }
    with contextlib.suppress(Exception):
        info["gpg"] = subprocess.run(
            ["gpg", "--version"], capture_output=True, text=True, check=False, timeout=30
        ).stdout.splitlines()[0]
    with contextlib.suppress(Exception):
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        ).stdout.split()
        info["git"] = head + (" + uncommitted changes to " + ", ".join(dirty[1::2]) if dirty else "")
    return info


def header_text(machine: dict[str, Any], sizes: Sequence[int], runs: int, total: float) -> str:
    return (
        f"machine: {machine['nproc']} cores ({machine['cpu_model']}), {machine['memory_gib']} GiB; "
        f"load average at start {machine['load_average_start'][0]}, at end "
        f"{machine.get('load_average_end', ['?'])[0]}; python {machine['python']}; {machine.get('gpg', '')}\n"
        f"code: {machine.get('git', '?')}\n"
        f"sizes {', '.join(map(str, sizes))} MB (MB = 2^20 bytes of BSON), median of {runs} runs (flow: 1 run); "
        f"zstd {machine['zstd']}; SecantusDB oplog capped at {machine['oplog_max_entries']} entries; "
        f"wine start-up {machine.get('wine_startup_s', '?')} s per stock-tool run; whole run {total:.0f} s"
    )


def results_markdown(
    summaries: Sequence[Summary],
    targets: Sequence[TargetVerdict],
    machine: dict[str, Any],
    sizes: Sequence[int],
    runs: int,
    total: float,
    finished_at: datetime,
) -> str:
    """bench/RESULTS.md: the latest table, the machine it ran on and the targets (written by the CLI)."""
    notes = time_notes(summaries)
    return "\n".join(
        [
            "# Comparative benchmark: latest results",
            "",
            f"Written by `.venv/bin/python -m bench.compare --sizes {','.join(map(str, sizes))} --runs {runs}` on "
            f"{finished_at.strftime('%Y-%m-%d %H:%M UTC')}. What each column means, and why targets are missed: "
            "`bench/README.md`.",
            "",
            "```",
            header_text(machine, sizes, runs, total),
            "```",
            "",
            markdown_table(summaries),
            "",
            "Ratios are wall-time ratios of medians (lower is better for ours). `÷ floor` of the instance and "
            "flow rows is against the floor of the instance's three databases.",
            "",
            "## Targets",
            "",
            *(f"- {t.line()}" for t in targets),
            "",
            "## Where the time goes (measured in this run)",
            "",
            *(f"- {n}" for n in notes),
            "",
            "![chart](compare.png)",
            "",
        ]
    )


def time_notes(summaries: Sequence[Summary]) -> list[str]:
    """Facts from the runs that explain the ratios, per size: where ours spends its wall time, and what it
    would be without the two metadata reads SecantusDB answers with a scan (MongoDB answers both from
    metadata / one end of the oplog): collStats (timed by the floor row on the same data) and the oplog
    queries (timed inside our child)."""
    by = {(s.subject, s.size_mb): s for s in summaries}
    notes = []
    for size in sorted({s.size_mb for s in summaries}):
        ours, floor, dump = by.get(("ours_db", size)), by.get(("floor", size)), by.get(("dump_alone", size))
        if ours is None or floor is None:
            continue
        collstats = floor.details.get("collstats_s", 0.0)
        oplog = ours.details.get("oplog_query_s", 0.0)
        stages = "/".join(f"{ours.details.get(f'stage:{n}', 0.0):.2f}" for n in ("dump", "compress", "upload"))
        net = ours.wall_s - collstats - oplog
        note = (
            f"{size} MB, ours (1 db): wall {ours.wall_s:.2f} s (stage s dump/compress/upload {stages}); "
            f"collStats {collstats:.2f} s + oplog queries {oplog:.2f} s are SecantusDB scans; without them "
            f"{net:.2f} s = {net / floor.wall_s:.2f}x the floor ({floor.wall_s:.2f} s)"
        )
        if dump is not None:
            dump_net = dump.wall_s - dump.details.get("collstats_s", 0.0) - dump.details.get("oplog_query_s", 0.0)
            note += (
                f"; the dump alone takes {dump.wall_s:.2f} s ({dump_net:.2f} s without those scans = "
                f"{dump_net / floor.wall_s:.2f}x the floor), so running zstd+gpg+S3 beside it adds "
                f"{ours.wall_s - dump.wall_s:.2f} s"
            )
        notes.append(note)
    for size in sorted({s.size_mb for s in summaries}):
        flow, instance = by.get(("ours_flow", size)), by.get(("ours_instance", size))
        if flow is not None:
            inside = flow.details.get("transfer_s_from_manifests", 0.0)
            notes.append(
                f"{size} MB, backup flow: {flow.wall_s:.2f} s for the whole `python -m flows.backup` "
                f"process, of which the transfers took {inside:.2f} s"
                + (f" (core path for the same databases: {instance.wall_s:.2f} s)" if instance else "")
            )
    return notes


def draw_chart(summaries: Sequence[Summary], path: Path, *, title: str) -> None:
    """Six panels: backup MB/s, peak RSS, restore MB/s, wall ratios with targets, the pipeline alone, temp disk."""
    import matplotlib

    matplotlib.use("Agg")  # no display here, and none needed
    import matplotlib.pyplot as plt

    sizes = sorted({s.size_mb for s in summaries})
    by = {(s.subject, s.size_mb): s for s in summaries}
    x = list(range(len(sizes)))

    def series(
        ax: Any,
        subjects: Sequence[str],
        value: Callable[[Summary], float | None],
        *,
        label: Callable[[str], str] = lambda subject: SUBJECTS[subject],
    ) -> None:
        for subject in subjects:
            points = [(i, value(by[(subject, size)])) for i, size in enumerate(sizes) if (subject, size) in by]
            points = [(i, v) for i, v in points if v is not None]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label(subject))

    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    panels = axes.flatten()
    series(
        panels[0],
        ("floor", "dump_alone", "mongodump", "old_pipeline", "ours_db", "floor_instance", "ours_instance", "ours_flow"),
        lambda s: s.mb_per_s,
    )
    panels[0].set_title("backup throughput (MB/s of BSON, higher is better)")
    series(
        panels[1],
        ("ours_db", "ours_instance", "ours_flow", "old_pipeline", "mongodump", "restore_ours", "mongorestore"),
        lambda s: s.peak_rss_mb,
    )
    panels[1].axhline(TARGET_PEAK_MB, color="red", linestyle="--", label=f"target {TARGET_PEAK_MB:.0f} MB")
    panels[1].set_title("peak RSS of the process tree (MB)")
    # The prep (a file copy at 100-300 MB/s) would flatten the restores' lines: its disk use is in panel 6.
    series(panels[2], ("restore_ours", "restore_ours_noverify", "mongorestore"), lambda s: s.mb_per_s)
    panels[2].set_title("restore throughput (MB/s of BSON, higher is better)")
    for subject, column, name in (
        ("ours_db", "floor", "ours / floor"),
        ("ours_db", "mongodump", "ours / mongodump"),
        ("ours_db", "old", "ours / old pipeline"),
        ("restore_ours", "mongorestore", "restore ours / mongorestore"),
    ):
        points = [(i, by[(subject, size)].ratios.get(column)) for i, size in enumerate(sizes) if (subject, size) in by]
        points = [(i, v) for i, v in points if v is not None]
        if points:
            panels[3].plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    panels[3].axhline(TARGET_FLOOR_RATIO, color="red", linestyle="--", label="target 1.25x floor")
    panels[3].axhline(1.0, color="gray", linestyle=":", label="target 1.0x (mongodump, mongorestore)")
    panels[3].set_title("wall-time ratios (lower is better)")
    values = [by[("pipeline_alone", size)].mb_per_s if ("pipeline_alone", size) in by else 0.0 for size in sizes]
    panels[4].bar(x, values, color="tab:green", label=SUBJECTS["pipeline_alone"])
    panels[4].axhline(TARGET_PIPELINE_MB_S, color="red", linestyle="--", label=f"target {TARGET_PIPELINE_MB_S:.0f}")
    panels[4].set_title("zstd + gpg + S3 alone (MB/s)")
    width = 0.25
    for n, subject in enumerate(("old_pipeline", "ours_db", "mongorestore_prep")):
        heights = [by[(subject, size)].temp_disk_mb or 0.0 if (subject, size) in by else 0.0 for size in sizes]
        bars = panels[5].bar([i + (n - 1) * width for i in x], heights, width=width, label=SUBJECTS[subject])
        panels[5].bar_label(bars, fmt="%.1f", fontsize=7)  # ours is 0: a bar that cannot be seen needs its number
    panels[5].set_title("peak temp disk (MB)")
    for ax in panels:
        ax.set_xticks(x, [f"{s} MB" for s in sizes])
        ax.set_xlabel("database size")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- entry points --------------------------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    return parse_sizes(text, at_least=MIN_SIZES)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=list(DEFAULT_SIZES),
        help="database sizes in MB (2**20 bytes of BSON), comma-separated (default: 8,24,64)",
    )
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="runs per figure (default: 3)")
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help=f"keep the services' state in {_rel(KEEP_RUN_DIR)} and reuse the databases an earlier run generated",
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs: at least 1")
    if args.child and not args.params:
        parser.error("--child needs --params")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](json.loads(args.params))), flush=True)
        return 0
    return run_benchmark(args.sizes, args.runs, args.keep_data)


if __name__ == "__main__":
    sys.exit(main())
