"""Point-in-time recovery benchmark: how far behind the oplog archive runs under a steady write load.

    .venv/bin/python -m bench.pitr_lag [--duration-s 120] [--rate 50] [--segment-s 30] [--hour]

Starts its own SecantusDB (a no-op oplog entry every second; mongod writes one every 10 s), a second one as the
restore target, moto, a throwaway GnuPG key and a plan with a `pitr` section; takes a base backup; runs
`python -m flows.oplog` as a child while a writer inserts `--rate` documents a second for `--duration-s`
(`--hour`: 3600, the memory run, which leaves the restores out), then stops it with SIGTERM (it commits its open
segment). Measured:

- recovery point lag of each write: from its acknowledgement to the moment the segment holding its oplog
  entry (found by the write's `operationTime`) is committed in S3, seen by polling the bucket every 0.25 s;
  p50, p99 and max. Target: p99 below 60 s at `--segment-s 30`.
- the archiver's CPU (user + system seconds of its process tree over the wall time, in % of one core) and peak
  RSS of the tree, the peak RSS of the first and of the last quarter of the run, and of each tenth: flat memory
  means they are close however long the run.
- restore-to-point time against a plain restore of the same base backup (taken before the load) into a second
  SecantusDB: the difference is the replay of the archived oplog.

Prints one table; `bench/results/pitr_lag.json` (gitignored) holds the same numbers.
"""

from __future__ import annotations

import argparse
import bisect
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import yaml
from bson import Timestamp
from pymongo import MongoClient

from bench.harness import MB, PROJECT_ROOT, TreeRun, child_env, sample_tree, write_json
from devservices import LocalServices, create_gpg_key, remove_gpg_home
from mongobackup.backup import Compression, back_up_database, tool_version
from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.dump import DatabaseDump
from mongobackup.keys import BackupLocation
from mongobackup.pitr.chain import scan_archive
from mongobackup.pitr.keys import SEGMENT_MANIFEST_SUFFIX, SegmentLocation, instance_prefix
from mongobackup.pitr.point import plan_point_restore, restore_to_point
from mongobackup.restore import RestoreOptions, restore_backup
from mongobackup.s3 import S3Storage, s3_client
from mongobackup.tiers import Tier

INSTANCE = "rs-bench"
DATABASE = "bench_pitr"
RESULTS = PROJECT_ROOT / "bench" / "results" / "pitr_lag.json"
#: How long the archiver may outlive its load (start-up, the last segment's commit) before it counts as hung.
ARCHIVER_MARGIN_S = 600.0


@dataclass
class Observed:
    """What the pollers saw while the load ran."""

    writes: list[tuple[float, Timestamp]] = field(default_factory=list)  # (acknowledged at, oplog time)
    commits: dict[SegmentLocation, float] = field(default_factory=dict)  # segment -> first seen committed
    cpu_s: float = 0.0
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, tree RSS)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def write_load(client: MongoClient, rate: float, duration_s: float, observed: Observed) -> None:
    """`rate` inserts a second; each write's acknowledgement time and oplog time (its session's operationTime)."""
    collection = client[DATABASE]["load"]
    interval, started = 1.0 / rate, time.monotonic()
    n = 0
    with client.start_session(causal_consistency=True) as session:
        while time.monotonic() - started < duration_s:
            collection.insert_one({"_id": n, "payload": os.urandom(64).hex(), "at": time.time()}, session=session)
            observed.writes.append((time.time(), session.operation_time))
            n += 1
            time.sleep(max(0.0, started + n * interval - time.monotonic()))


def poll_commits(storage: S3Storage, stop: threading.Event, observed: Observed) -> None:
    """Records when each segment's manifest (its commit) first appears in the bucket."""
    below = instance_prefix("", INSTANCE)
    while not stop.is_set():
        now = time.time()
        for info in storage.list_keys(below):
            if info.key.endswith(SEGMENT_MANIFEST_SUFFIX):
                location = SegmentLocation.parse(info.key, "", INSTANCE)
                observed.commits.setdefault(location, now)
        stop.wait(0.25)


def lags(observed: Observed) -> list[float]:
    """Per write: seconds from its acknowledgement to the commit of the first segment that holds it."""
    segments = sorted(observed.commits.items(), key=lambda item: item[0].last)
    ends = [location.last for location, _ in segments]
    found = []
    for acknowledged, ts in observed.writes:
        index = bisect.bisect_left(ends, ts)
        if index < len(segments):
            found.append(max(0.0, segments[index][1] - acknowledged))
    return found


def tree_cpu(root: psutil.Process) -> float:
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def run_archiver(plan: Path, work: Path, rate: float, duration_s: float, storage: S3Storage, uri: str) -> dict:
    """The archiver as a child under load; the lag, CPU and memory figures."""
    observed = Observed()
    roots: list[psutil.Process] = []
    started = time.monotonic()

    def on_sample(root: psutil.Process) -> None:
        if not roots:
            roots.append(root)
        try:
            rss = root.memory_info().rss + sum(c.memory_info().rss for c in root.children(recursive=True))
            observed.cpu_s = max(observed.cpu_s, tree_cpu(root))
        except psutil.Error:
            return
        observed.rss.append((time.monotonic() - started, rss))

    argv = [sys.executable, "-m", "flows.oplog", "--plan", str(plan), "--instance", INSTANCE]
    result: list[TreeRun] = []
    child = threading.Thread(
        target=lambda: result.append(
            sample_tree(
                argv,
                env=child_env(work),
                what="the archiver",
                interval_s=0.2,
                on_sample=on_sample,
                timeout_s=duration_s + ARCHIVER_MARGIN_S,
            )
        )
    )
    stop = threading.Event()
    poller = threading.Thread(target=poll_commits, args=(storage, stop, observed))
    child.start()
    poller.start()
    while not roots:
        time.sleep(0.1)
    with MongoClient(uri) as client:
        time.sleep(5)  # the archiver's start-up (imports, first listing) is not what is measured
        load_started = time.monotonic()
        write_load(client, rate, duration_s, observed)
        load_s = time.monotonic() - load_started
    time.sleep(1)
    roots[0].send_signal(signal.SIGTERM)
    child.join()
    time.sleep(1)
    stop.set()
    poller.join()
    found = lags(observed)
    quarter = max(1, len(observed.rss) // 4)
    tenth = max(1, len(observed.rss) // 10)
    return {
        "writes": len(observed.writes),
        "writes_archived": len(found),
        "segments": len(observed.commits),
        "lag_p50_s": round(percentile(found, 50), 2) if found else None,
        "lag_p99_s": round(percentile(found, 99), 2) if found else None,
        "lag_max_s": round(max(found), 2) if found else None,
        "cpu_pct": round(100 * observed.cpu_s / (load_s + 7), 1),
        "peak_rss_mb": round(max(r for _, r in observed.rss) / MB, 1),
        "peak_rss_first_quarter_mb": round(max(r for _, r in observed.rss[:quarter]) / MB, 1),
        "peak_rss_last_quarter_mb": round(max(r for _, r in observed.rss[-quarter:]) / MB, 1),
        # The peak of each tenth of the run, in order: flat memory is a flat row of ten.
        "peak_rss_by_tenth_mb": [
            round(max(r for _, r in observed.rss[i : i + tenth]) / MB, 1) for i in range(0, tenth * 10, tenth)
        ],
        "archiver_exit": result[0].returncode if result else None,
    }


def restore_times(storage: S3Storage, home: Path, base_key: str, manifest: Any, target_uri: str) -> dict:
    """A plain restore of the base, then a restore of the same base to the newest restorable second."""
    gpg = Gpg(home)
    archive = scan_archive(storage, "", INSTANCE)
    newest = archive.chains()[-1].newest_complete_second
    point = datetime.fromtimestamp(newest, UTC)
    with MongoClient(target_uri) as target:
        started = time.perf_counter()
        restore_backup(storage, base_key, gpg, target, RestoreOptions(target_database="plain"), manifest=manifest)
        plain_s = time.perf_counter() - started
        chosen = plan_point_restore(storage, "", INSTANCE, DATABASE, point)
        started = time.perf_counter()
        result = restore_to_point(storage, gpg, target, chosen, RestoreOptions(target_database="at_point"))
        point_s = time.perf_counter() - started
        documents = target["at_point"]["load"].count_documents({})
    return {
        "plain_restore_s": round(plain_s, 2),
        "point_restore_s": round(point_s, 2),
        "point_segments": len(chosen.segments),
        "point_entries_replayed": result.oplog_applied,
        "point_documents": documents,
    }


def table(figures: dict) -> str:
    rows = [
        ("writes (archived)", f"{figures['writes']:,} ({figures['writes_archived']:,})"),
        ("segments committed", f"{figures['segments']}"),
        (
            "recovery point lag p50 / p99 / max",
            f"{figures['lag_p50_s']} / {figures['lag_p99_s']} / {figures['lag_max_s']} s",
        ),
        ("archiver CPU (tree, % of one core)", f"{figures['cpu_pct']} %"),
        ("archiver peak RSS (tree)", f"{figures['peak_rss_mb']} MB"),
        (
            "peak RSS first / last quarter",
            f"{figures['peak_rss_first_quarter_mb']} / {figures['peak_rss_last_quarter_mb']} MB",
        ),
        ("peak RSS by tenth of the run", " / ".join(f"{mb:g}" for mb in figures["peak_rss_by_tenth_mb"]) + " MB"),
    ]
    if "plain_restore_s" in figures:
        rows += [
            ("plain restore of the base", f"{figures['plain_restore_s']} s"),
            (
                "restore to the newest point (same base)",
                f"{figures['point_restore_s']} s ({figures['point_entries_replayed']:,} entries from "
                f"{figures['point_segments']} segments)",
            ),
        ]
    else:
        rows.append(("restores", "not measured (--hour: the memory run; the restores are the short run's)"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pitr_lag", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=120.0, help="seconds of write load (default 120)")
    parser.add_argument("--hour", action="store_true", help="an hour of load (memory flatness)")
    parser.add_argument("--rate", type=float, default=50.0, help="writes a second (default 50)")
    parser.add_argument("--segment-s", type=float, default=30.0, help="pitr.segment_s (default 30)")
    args = parser.parse_args(argv)
    duration = 3600.0 if args.hour else args.duration_s
    with tempfile.TemporaryDirectory(prefix="bench-pitr-") as folder:
        work = Path(folder)
        services = LocalServices(work / "services")
        key = create_gpg_key("PITR Bench <bench@pitr>")
        try:
            services.start(["mongo-pitr", "mongo-scratch", "moto"])
            figures = _run(services, key, work, duration, args.rate, args.segment_s, restores=not args.hour)
        finally:
            services.stop()
            remove_gpg_home(key.home)
    figures.update(duration_s=duration, rate=args.rate, segment_s=args.segment_s)
    print(table(figures))
    write_json(RESULTS, figures)
    target = figures["lag_p99_s"] is not None and figures["lag_p99_s"] < 60
    print(f"p99 lag below 60 s at segment_s {args.segment_s:g}: {'met' if target else 'MISSED'}")
    return 0


def _run(
    services: LocalServices, key: Any, work: Path, duration: float, rate: float, segment_s: float, *, restores: bool
) -> dict:
    os.environ.update({k: v for k, v in child_env().items() if k.startswith("AWS_")})
    bucket = f"bench-pitr-{uuid.uuid4().hex[:8]}"
    client = s3_client(endpoint_url=services.url("moto"), region="us-east-1")
    client.create_bucket(Bucket=bucket)
    storage = S3Storage(client, bucket)
    uri = services.mongo_uri("mongo-pitr")
    plan = work / "plan.yaml"
    plan.write_text(
        yaml.safe_dump(
            {
                "instances": [{"name": INSTANCE, "uri": uri}],
                "storage": {"bucket": bucket, "endpoint_url": services.url("moto"), "region": "us-east-1"},
                "encryption": {"public_key_files": [str(key.public_key_file)], "gnupghome": str(work / "gnupg")},
                "tiers": {"timezone": "UTC"},
                "pitr": {"segment_s": segment_s, "segment_mib": 16, "max_lag_s": max(120.0, 2 * segment_s)},
            }
        )
    )
    with MongoClient(uri) as source:
        source[DATABASE]["load"].insert_many([{"_id": f"seed-{n}", "payload": "x" * 200} for n in range(2000)])
        gpg = Gpg(work / "gnupg-base")
        fingerprints = tuple(gpg.import_key_files([key.public_key_file]))
        location = BackupLocation("", Tier.DAILY, INSTANCE, DATABASE, datetime.now(UTC), uuid.uuid4().hex[:8])
        manifest = back_up_database(
            dump=DatabaseDump(source, INSTANCE, DATABASE, tool_version=tool_version()),
            location=location,
            storage=storage,
            gpg=gpg,
            keys=EncryptionKeys(fingerprints),
            compression=Compression(),
        )
    figures = run_archiver(plan, work, rate, duration, storage, uri)
    if restores:  # an hour's oplog replays for a quarter of an hour: the memory run leaves the restores out
        target = services.mongo_uri("mongo-scratch")
        figures.update(restore_times(storage, key.home, location.object_key, manifest, target))
    return figures


if __name__ == "__main__":
    sys.exit(main())
