"""The comparative benchmark's children: each runs in a process of its own, measured by the parent, and
prints one JSON line (`python -m bench.compare --child KIND --params JSON`). Our one-database child is
bench.backup_memory's."""

from __future__ import annotations

import json
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import monitoring

from bench.compare.settings import ZSTD_LEVEL, ZSTD_THREADS
from bench.datasets import COLLECTION, SEED, make_document
from bench.harness import MOTO_ENV, CommandTimer, OplogTimer


def child_argv(kind: str, params: dict[str, Any]) -> list[str]:
    """The command line of the child `kind` with its parameters."""
    return [sys.executable, "-m", "bench.compare", "--child", kind, "--params", json.dumps(params)]


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

    oplog, stats = OplogTimer(), CommandTimer("collStats")
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
        cpu = _CpuMeter(params.get("server_pid"))
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
        spent = cpu.spent()
        storage.delete(outcome.receipt.key)  # moto keeps objects in memory
        runs.append(
            {
                "seconds": round(seconds, 3),
                "raw_bytes": outcome.raw_bytes,
                "stored_bytes": outcome.receipt.size,
                "stage_seconds": outcome.stage_seconds,
                **spent,
            }
        )
    pipe_runs = [_pipe_cli(params, documents) for _ in range(params["runs"])] if params.get("s3cmd_config") else []
    return {"documents": len(documents), "bson_bytes": total, "runs": runs, "pipe_runs": pipe_runs}


def _pipe_cli(params: dict[str, Any], documents: Sequence[bytes]) -> dict[str, Any]:
    """The same stages as stock command-line tools, fed the same archive bytes from memory:
    `zstd -3 -T2 | gpg --compress-algo none -e | s3cmd put - s3://...` (a multipart upload of 8 MiB parts)."""
    import shlex
    import subprocess
    from pathlib import Path

    archive = b"".join(bytes(chunk) for chunk in _GeneratedArchive(documents, "generated").chunks())
    key = f"{params['prefix']}cli-{uuid.uuid4().hex[:8]}.archive.zst.gpg"
    gpg = ["gpg", "--homedir", params["gnupghome"], "--batch", "--quiet", "--trust-model", "always"]
    gpg += ["--compress-algo", "none", "--recipient", params["fingerprint"], "--encrypt"]
    s3cmd = [str(Path(sys.executable).parent / "s3cmd"), "-c", params["s3cmd_config"], "--no-progress", "--quiet"]
    s3cmd += ["put", "-", f"s3://{params['bucket']}/{key}", "--multipart-chunk-size-mb=8"]
    cpu = _CpuMeter(params.get("server_pid"))
    script = f"set -o pipefail; zstd -{ZSTD_LEVEL} -T{ZSTD_THREADS} -q -c | {shlex.join(gpg)} | {shlex.join(s3cmd)}"
    started = time.perf_counter()
    subprocess.run(["bash", "-c", script], input=archive, check=True, stdout=subprocess.DEVNULL, timeout=3600)
    seconds = time.perf_counter() - started
    spent = cpu.spent()
    from mongobackup.s3 import S3Storage, s3_client

    storage = S3Storage(
        s3_client(endpoint_url=params["endpoint"], region=MOTO_ENV["AWS_DEFAULT_REGION"]), params["bucket"]
    )
    info = storage.head(key)
    storage.delete(key)
    return {
        "seconds": round(seconds, 3),
        "raw_bytes": len(archive),
        "stored_bytes": info.size if info else 0,
        **spent,
    }


class _RunQueueMeter:
    """Thread-seconds that this process's threads and its children's (gpg; the pipe's zstd, gpg and s3cmd)
    spent runnable but waiting for a CPU (Linux /proc/PID/task/TID/schedstat, second field), sampled every
    50 ms from a thread of its own: a thread that ends between two samples loses at most its last 50 ms (the
    threads that matter, zstd's workers, the copy threads, gpg, live the whole run). The children are looked
    up every 5th sample only: psutil scans all of /proc for them, and the meter must not load the cores it
    measures (about 0.1 ms a sample, 2.5 ms with the scan). Wall above CPU with a large wait is the machine's
    other load; with none, the stages wait on each other."""

    def __init__(self, interval_s: float = 0.05):
        import os
        import threading

        self._pid = os.getpid()
        self._interval = interval_s
        self._first: dict[tuple[int, int], int] = {}
        self._last: dict[tuple[int, int], int] = {}
        self._stop = threading.Event()
        self._children: list[int] = []
        self._samples = 0
        self._sample()
        self._first = dict(self._last)
        self._thread = threading.Thread(target=self._loop, name="runqueue-meter", daemon=True)
        self._thread.start()

    def _pids(self) -> list[int]:
        import psutil

        if self._samples % 5 == 0:
            try:
                self._children = [c.pid for c in psutil.Process(self._pid).children(recursive=True)]
            except psutil.Error:
                self._children = []
        self._samples += 1
        return [self._pid, *self._children]

    def _sample(self) -> None:
        import os

        for pid in self._pids():
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/schedstat") as stat:
                        waited = int(stat.read().split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                self._last[(pid, int(tid))] = waited

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def waited_s(self) -> float:
        self._stop.set()
        self._thread.join()
        self._sample()
        return sum(ns - self._first.get(key, 0) for key, ns in self._last.items()) / 1e9


class _CpuMeter:
    """CPU seconds (user + system) spent from now on by this process with its finished children (gpg, the
    command-line tools) and by the S3 server's process `server_pid` (moto or SeaweedFS, which takes CPU for
    every byte on the same cores), when given; and the thread-seconds ours waited for a CPU (_RunQueueMeter)."""

    def __init__(self, server_pid: int | None):
        import psutil

        self._server = psutil.Process(server_pid) if server_pid else None
        self._ours = self._own()
        self._theirs = self._server_cpu()
        self._waits = _RunQueueMeter()

    @staticmethod
    def _own() -> float:
        import resource

        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def _server_cpu(self) -> float | None:
        if self._server is None:
            return None
        times = self._server.cpu_times()
        return times.user + times.system

    def spent(self) -> dict[str, float]:
        result = {"cpu_s": round(self._own() - self._ours, 3), "runqueue_wait_s": round(self._waits.waited_s(), 3)}
        server = self._server_cpu()
        if server is not None and self._theirs is not None:
            result["server_cpu_s"] = round(server - self._theirs, 3)
        return result


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
            RestoreOptions(
                target_database=params["target_database"],
                verify=params["verify"],
                read_back=params.get("read_back", False),
            ),
            manifest=manifest,
        )
        seconds = time.perf_counter() - started
    finally:
        client.close()
    return {
        "restore_s": round(seconds, 3),
        "swap_s": round(result.swap_s, 3),
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
