"""One whole comparative benchmark: services up, data generated, every subject measured round-robin over
sizes and runs, services down, then the table, targets, JSON, chart and RESULTS.md written."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from pymongo import MongoClient

from bench.compare.backups import measure_backups, measure_flow, measure_pipeline_alone, profile_pipeline
from bench.compare.chart import draw_chart
from bench.compare.profile import PipelineProfile
from bench.compare.report import (
    Measure,
    check_targets,
    progress_line,
    results_document,
    results_markdown,
    results_text,
    summarize,
)
from bench.compare.restores import measure_restores, prepare_restore_source
from bench.compare.settings import (
    BUCKET,
    GROUPS,
    KEEP_RUN_DIR,
    OPLOG_MAX_ENTRIES,
    PUBLISHED_MD,
    PUBLISHED_PNG,
    RESULTS_JSON,
    RESULTS_PNG,
    ZSTD_LEVEL,
    ZSTD_THREADS,
)
from bench.compare.workspace import Bench, delete_prefix, prepare_size
from bench.datasets import ensure_dataset
from bench.flow_runs import (
    DEFAULT_COLD_COUNTS,
    DEFAULT_COUNTS,
    TINY_BYTES,
    FlowRun,
    measure_flow_run,
    memory_verdict,
    plan_document,
)
from bench.flow_runs import cases as flow_cases
from bench.flow_runs import format_table as flow_table
from bench.harness import PROJECT_ROOT, write_json
from devservices import MongoTools


def run_benchmark(
    sizes: Sequence[int],
    runs: int,
    keep_data: bool,
    flow_counts: Sequence[int] = DEFAULT_COUNTS,
    cold_counts: Sequence[int] = DEFAULT_COLD_COUNTS,
    only: Sequence[str] = GROUPS,
    pipeline_store: str = "auto",
) -> int:
    """`only`: the groups of rows to measure (settings.GROUPS); a partial run is printed and written to
    bench/results/ but not published to bench/RESULTS.md, whose table must stay whole. `pipeline_store`: the
    S3 server of the pipeline rows (`pipeline_bench`)."""
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
    flow_runs: list[FlowRun] = []
    profile = PipelineProfile(unavailable="the benchmark stopped before the pipeline rows")
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
            server_pid=_server_pid(services, "moto"),
        )
        with contextlib.suppress(Exception):  # already there from an earlier --keep-data run
            bench.s3().create_bucket(Bucket=BUCKET)
        tools.prepare()
        machine["wine_startup_s"] = _wine_startup(tools)
        client: MongoClient = MongoClient(bench.source_uri)
        try:
            clock = time.perf_counter()
            # The pipeline rows generate their own documents in their child: no database for them alone.
            data = [
                prepare_size(client, size, reuse=keep_data, progress=lambda line: print(line, flush=True))
                for size in (sizes if set(only) - {"pipeline"} else [])
            ]
            tiny_cases = flow_cases(flow_counts, cold_counts, [], 0) if "flow" in only else []
            for name in sorted({d for case in tiny_cases for d in case.databases}):
                ensure_dataset(client, name, TINY_BYTES, reuse=keep_data, progress=lambda line: None)
            phases["generate"] = time.perf_counter() - clock
        finally:
            client.close()

        clock = time.perf_counter()
        for run in range(1, runs + 1 if "backup" in only else 1):  # round-robin: the same load for every row
            for size_data in data:
                measures += measure_backups(bench, size_data, run=run, progress=_print)
        phases["backups"] = time.perf_counter() - clock

        clock = time.perf_counter()
        if "pipeline" in only:
            pipe_bench, machine["pipeline_s3_store"] = pipeline_bench(services, bench, pipeline_store)
            _print(f"pipeline rows' S3 store: {machine['pipeline_s3_store']}")
        for size in sizes if "pipeline" in only else []:
            for measure in measure_pipeline_alone(pipe_bench, size, runs=runs):
                _print(progress_line(measure))
                measures.append(measure)
        if "pipeline" in only:
            profile = profile_pipeline(pipe_bench, max(sizes))
            _print(profile.line())
        else:
            profile = PipelineProfile(unavailable="not measured in this partial run (--only)")
        phases["pipeline_alone"] = time.perf_counter() - clock

        clock = time.perf_counter()
        sources = [prepare_restore_source(bench, d.single, d.size_mb) for d in data] if "restore" in only else []
        for run in range(1, runs + 1):
            for source in sources:
                measures += measure_restores(bench, source, run=run, read_back=True, progress=_print)
        for source in sources:
            delete_prefix(bench, source.key.rsplit("/", 1)[0] + "/")
        phases["restores"] = time.perf_counter() - clock

        # Prefect only now, and stopped right after: its server would load the CPU under every other row.
        clock = time.perf_counter()
        if "flow" in only:
            print("starting a Prefect server for the flow runs", flush=True)
            services.start(["prefect"])
            bench.prefect_url = services.url("prefect")
        try:
            for size_data in data if "flow" in only else []:
                measure = measure_flow(bench, size_data)
                _print(progress_line(measure))
                measures.append(measure)
            # The fixed cost of a run and its memory by number of databases (bench.flow_runs' cases).
            for case in tiny_cases:
                plan = plan_document(
                    case,
                    uri=bench.source_uri,
                    endpoint=bench.endpoint,
                    fingerprint=key.fingerprint,
                    gnupghome=str(key.home),
                    prefix=f"flow-runs/{uuid.uuid4().hex[:6]}/",
                    bucket=BUCKET,
                )
                flow_run = measure_flow_run(
                    case, work=work, storage=bench.storage(), prefect_url=bench.prefect_url, plan=plan
                )
                _print(f"flow run, {case.label}: {flow_run.wall_s:.1f} s, peak RSS {flow_run.peak_rss_tree_mb:.1f} MB")
                flow_runs.append(flow_run)
        finally:
            if "flow" in only:
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
    print(results_text(summaries, targets, machine, sizes, runs, total, extra_notes=[profile.line()]))
    flow_verdict = memory_verdict(flow_runs)
    flow_text = f"Flow runs by number of databases (one run each):\n{flow_table(flow_runs)}\n{flow_verdict.line()}"
    if flow_runs:
        print("\n" + flow_text)
    finished_at = datetime.now(UTC)
    datasets = [d for size_data in data for d in (size_data.single, *size_data.parts)]
    document = results_document(
        measures,
        summaries,
        targets,
        machine=machine,
        sizes=sizes,
        runs=runs,
        total=total,
        phases=phases,
        datasets=datasets,
        finished_at=finished_at,
    )
    document["pipeline_profile"] = asdict(profile) | {"size_mb": max(sizes), "line": profile.line()}
    document["flow_runs"] = [asdict(r) | {"fixed_per_database_s": round(r.fixed_per_database_s, 3)} for r in flow_runs]
    document["flow_memory_verdict"] = asdict(flow_verdict) | {"line": flow_verdict.line()}
    write_json(RESULTS_JSON, document)
    draw_chart(summaries, RESULTS_PNG, title=f"bench.compare on {machine['cpu_model']} x{machine['nproc']}")
    markdown = results_markdown(
        summaries, targets, machine, sizes, runs, total, finished_at, extra_notes=[profile.line()]
    )
    if flow_runs:
        markdown += f"\n## Flow runs by number of databases\n\n```\n{flow_text}\n```\n"
    if list(only) != list(GROUPS):
        print(f"\nwritten: {_rel(RESULTS_JSON)}, {_rel(RESULTS_PNG)}; a partial run (--only): not published")
        return 0
    PUBLISHED_MD.write_text(markdown)
    shutil.copyfile(RESULTS_PNG, PUBLISHED_PNG)
    print(
        f"\nwritten: {_rel(RESULTS_JSON)}, {_rel(RESULTS_PNG)}; published: {_rel(PUBLISHED_MD)}, "
        f"{_rel(PUBLISHED_PNG)}; whole benchmark {total:.0f} s"
    )
    return 0


def pipeline_bench(services: Any, bench: Bench, wanted: str) -> tuple[Bench, str]:
    """The pipeline rows' Bench and a line saying which S3 store it is. SeaweedFS (`auto`, the default, when
    its `weed` binary is installed): a real S3 implementation rather than moto's model of one. Measured, it is
    no cheaper per byte on loopback (0.4-0.5 CPU-s per 64 MB against moto's 0.3-0.4; bench/README.md): either
    takes a third of the CPU a run needs on the same 2 cores, where a production store takes none. Both sides
    (ours and the command-line pipe) store to the same one. Falls back to moto with the reason when SeaweedFS
    cannot start (`wanted == "seaweedfs"` raises instead)."""
    from devservices import ServiceError

    if wanted == "moto":
        return bench, "moto (--pipeline-store moto)"
    try:
        services.start(["seaweedfs"])
    except ServiceError as exc:
        if wanted == "seaweedfs":
            raise
        return bench, f"moto, SeaweedFS did not start: {str(exc).splitlines()[0]}"
    store = replace(
        bench,
        endpoint=services.url("seaweedfs"),
        server_pid=_server_pid(services, "seaweedfs"),
        s3_store="seaweedfs",
    )
    with contextlib.suppress(Exception):  # already there from an earlier --keep-data run
        store.s3().create_bucket(Bucket=bench.bucket)
    return store, "seaweedfs (weed mini, a Go S3 server on disk; the other rows: moto)"


def _server_pid(services: Any, name: str) -> int | None:
    """The PID a service's state folder records (moto's: whose CPU the pipeline rows report)."""
    from devservices.process import recorded_process

    proc = recorded_process(services.state_dir(name) / "pid")
    return proc.pid if proc is not None else None


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
