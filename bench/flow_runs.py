"""Benchmark: whole backup flow runs, by number of databases: peak memory of the process tree and fixed cost.

    python -m bench.flow_runs [--counts 1,10,50] [--large-mb 64] [--large-count 3] [--cold-counts 1,10]
                              [--keep-data] [--record]

Each case is one run of `python -m flows.backup --plan PLAN` in a child process whose process tree (python, the
gpg it spawns, and without a server Prefect's temporary one) is sampled every 20 ms:

- `N tiny`: N databases of TINY_BYTES each, reporting to a Prefect server that is already running, as a worker
  has it (`--counts`); the memory target is about these: 1 -> 50 databases within FLAT_WITHIN_MB.
- `N large`: `--large-count` databases of `--large-mb` MB each (the per-database buffers at their steady size).
- `N tiny, no server`: the same without PREFECT_API_URL, so the run starts Prefect's temporary server itself
  (`--cold-counts`): what a run costs where no server is running.

Per case: the wall of the whole process, the transfers' share (from the manifests), the rest per database
(the fixed cost of a run), and peak RSS. `--record` writes the largest peak to RECORDED_FILE, which is
committed: the Kubernetes job template's memory limit must stay above it (tests/test_k8s_template.py).
Results go to bench/results/flow_runs.json. It asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import MB, MOTO_ENV, PROJECT_ROOT, checked, child_env, load1, sample_tree, write_json

TINY_BYTES = 32 * 1024
DEFAULT_COUNTS = (1, 10, 50)
DEFAULT_COLD_COUNTS = (1, 10)
DEFAULT_LARGE_MB, DEFAULT_LARGE_COUNT = 64, 3
#: The memory target: the peak of a 50-database run within this of a 1-database run.
FLAT_WITHIN_MB = 30.0
RESULTS_FILE = PROJECT_ROOT / "bench" / "results" / "flow_runs.json"
#: The last recorded peak (committed, unlike bench/results/): what the job template's limit is checked against.
RECORDED_FILE = PROJECT_ROOT / "bench" / "recorded" / "flow_peak_rss.json"
KEEP_RUN_DIR = PROJECT_ROOT / ".run" / "bench-flow-runs"
BUCKET = "bench-flow-runs"


@dataclass(frozen=True)
class FlowCase:
    """One flow run to measure: which databases, and whether a Prefect server is already running."""

    label: str
    databases: tuple[str, ...]
    data_bytes: int
    server: bool
    max_parallel: int = 1


@dataclass(frozen=True)
class FlowRun:
    """One measured flow run."""

    label: str
    databases: int
    data_mb: float
    server: bool
    wall_s: float  # the whole `python -m flows.backup` process
    transfer_s: float  # the transfers, summed from the manifests
    peak_rss_tree_mb: float
    peak_rss_python_mb: float
    peak_rss_others_mb: float  # gpg, and without a server Prefect's temporary one
    load1: float

    @property
    def fixed_s(self) -> float:
        return max(0.0, self.wall_s - self.transfer_s)

    @property
    def fixed_per_database_s(self) -> float:
        return self.fixed_s / self.databases if self.databases else 0.0


# --- one case ---------------------------------------------------------------------------------------------------


def plan_document(
    case: FlowCase, *, uri: str, endpoint: str, fingerprint: str, gnupghome: str, prefix: str, bucket: str = BUCKET
) -> dict:
    """The plan a case's run backs up with: one instance, its databases listed, moto, public-key gpg."""
    return {
        "instances": [
            {"name": "bench", "uri": uri, "databases": list(case.databases), "max_parallel": case.max_parallel}
        ],
        "storage": {
            "bucket": bucket,
            "prefix": prefix,
            "endpoint_url": endpoint,
            "region": MOTO_ENV["AWS_DEFAULT_REGION"],
        },
        "encryption": {"recipients": [fingerprint], "gnupghome": gnupghome},
        "compression": {"level": 3, "threads": 2},
        "tiers": {"timezone": "UTC"},
        "retries": {"attempts": 0, "backoff_s": 0},
    }


def measure_flow_run(
    case: FlowCase, *, work: Path, storage: Any, prefect_url: str | None, plan: dict[str, Any]
) -> FlowRun:
    """Runs the case's flow in a child, sampling its process tree; reads its manifests back, then deletes them."""
    import yaml

    folder = work / f"flow-{uuid.uuid4().hex[:6]}"
    (folder / "prefect-home").mkdir(parents=True)
    (folder / "tmp").mkdir()
    plan_path = folder / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(plan, sort_keys=False))
    extra = {"PREFECT_HOME": str(folder / "prefect-home")}
    if case.server:
        if prefect_url is None:
            raise RuntimeError(f"case {case.label}: needs a running Prefect server")
        extra["PREFECT_API_URL"] = prefect_url
    env = child_env(folder / "tmp", **extra)
    if not case.server:
        env.pop("PREFECT_API_URL", None)
    load = load1()
    what = f"backup flow ({case.label})"
    done = checked(
        sample_tree([sys.executable, "-m", "flows.backup", "--plan", str(plan_path)], env=env, what=what), what
    )
    prefix = plan["storage"]["prefix"]
    manifests = [storage.get_json(o.key) for o in storage.list_keys(prefix) if o.key.endswith(".manifest.json")]
    if len(manifests) != len(case.databases):
        raise RuntimeError(f"{what} committed {len(manifests)} backups, expected {len(case.databases)}")
    transfer = sum(
        (datetime.fromisoformat(m["finished_at"]) - datetime.fromisoformat(m["started_at"])).total_seconds()
        for m in manifests
    )
    for item in list(storage.list_keys(prefix)):
        storage.delete(item.key)
    shutil.rmtree(folder, ignore_errors=True)
    return FlowRun(
        label=case.label,
        databases=len(case.databases),
        data_mb=round(case.data_bytes / MB, 2),
        server=case.server,
        wall_s=round(done.wall_s, 2),
        transfer_s=round(transfer, 2),
        peak_rss_tree_mb=round(done.peak_tree / MB, 1),
        peak_rss_python_mb=round(done.peak_root / MB, 1),
        peak_rss_others_mb=round(done.peak_descendants / MB, 1),
        load1=load,
    )


# --- report (pure) ----------------------------------------------------------------------------------------------

_COLUMNS = (
    "case",
    "dbs",
    "data MB",
    "server",
    "wall s",
    "transfers s",
    "rest s",
    "rest s per db",
    "peak RSS tree MB",
    "python MB",
    "others MB",
)


def table_rows(runs: Sequence[FlowRun]) -> list[tuple[str, ...]]:
    return [
        (
            r.label,
            str(r.databases),
            f"{r.data_mb:.1f}",
            "running" if r.server else "temporary",
            f"{r.wall_s:.1f}",
            f"{r.transfer_s:.1f}",
            f"{r.fixed_s:.1f}",
            f"{r.fixed_per_database_s:.2f}",
            f"{r.peak_rss_tree_mb:.1f}",
            f"{r.peak_rss_python_mb:.1f}",
            f"{r.peak_rss_others_mb:.1f}",
        )
        for r in runs
    ]


def format_table(runs: Sequence[FlowRun]) -> str:
    cells = [_COLUMNS, *table_rows(runs)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]
    lines = [" | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass(frozen=True)
class MemoryVerdict:
    fewest: int
    most: int
    peak_fewest_mb: float
    peak_most_mb: float
    #: The largest peak of any run against a running server: what the Kubernetes job template's limit must cover
    #: (a job started by a worker reports to the worker's server; it never starts a temporary one).
    peak_mb: float
    met: bool | None  # None: fewer than two tiny cases with a running server

    def line(self) -> str:
        if self.met is None:
            return (
                f"peak RSS (tree) of a run against a server {self.peak_mb:.1f} MB; flatness NOT MEASURED "
                "(fewer than two tiny cases)"
            )
        return (
            f"peak RSS (tree) {self.peak_fewest_mb:.1f} MB with {self.fewest} databases vs {self.peak_most_mb:.1f} MB "
            f"with {self.most}: {self.peak_most_mb - self.peak_fewest_mb:+.1f} MB (target: within "
            f"{FLAT_WITHIN_MB:.0f} MB): {'MET' if self.met else 'MISSED'}; "
            f"largest peak of a run against a server {self.peak_mb:.1f} MB"
        )


def memory_verdict(runs: Sequence[FlowRun]) -> MemoryVerdict:
    """Flatness over the tiny runs against a running server (the worker's case); the peak over every such run."""
    tiny = sorted((r for r in runs if r.server and r.label.endswith("tiny")), key=lambda r: r.databases)
    peak = max((r.peak_rss_tree_mb for r in runs if r.server), default=0.0)
    if len(tiny) < 2:
        return MemoryVerdict(0, 0, 0.0, 0.0, peak, None)
    first, last = tiny[0], tiny[-1]
    met = last.peak_rss_tree_mb - first.peak_rss_tree_mb <= FLAT_WITHIN_MB
    return MemoryVerdict(first.databases, last.databases, first.peak_rss_tree_mb, last.peak_rss_tree_mb, peak, met)


def recorded_document(runs: Sequence[FlowRun], verdict: MemoryVerdict, *, measured_at: datetime, git: str) -> dict:
    """RECORDED_FILE: the largest peak of a run against a server, and the runs it comes from."""
    return {
        "benchmark": "bench.flow_runs",
        "measured_at": measured_at.isoformat(timespec="seconds"),
        "git": git,
        "peak_rss_tree_mb": verdict.peak_mb,
        "verdict": verdict.line(),
        "runs": [asdict(r) for r in runs],
    }


# --- entry point ------------------------------------------------------------------------------------------------


def cases(counts: Sequence[int], cold_counts: Sequence[int], large: Sequence[str], large_bytes: int) -> list[FlowCase]:
    most = max([*counts, *cold_counts], default=0)
    tiny = [f"flow_tiny_{n:03d}" for n in range(1, most + 1)]
    out = [FlowCase(f"{n} tiny", tuple(tiny[:n]), n * TINY_BYTES, True) for n in counts]
    if large:
        out.append(FlowCase(f"{len(large)} large", tuple(large), len(large) * large_bytes, True))
    out += [FlowCase(f"{n} tiny, no server", tuple(tiny[:n]), n * TINY_BYTES, False) for n in cold_counts]
    return out


def run_benchmark(args: argparse.Namespace) -> int:
    from pymongo import MongoClient

    from bench.compare.run import machine_info
    from bench.datasets import ensure_dataset
    from devservices import LocalServices, create_gpg_key, remove_gpg_home

    began = time.perf_counter()
    run_dir = KEEP_RUN_DIR if args.keep_data else Path(tempfile.mkdtemp(prefix="bench-flow-runs-"))
    work = Path(tempfile.mkdtemp(prefix="bench-flow-work-"))
    gpg_home = Path(tempfile.mkdtemp(prefix="gpg-flow-", dir="/tmp"))
    services = LocalServices(run_dir)
    runs: list[FlowRun] = []
    try:
        key = create_gpg_key("Flow Bench <flow@localhost>", home=gpg_home)
        print(f"services under {run_dir}: starting mongo-a, moto, prefect", flush=True)
        services.start(["mongo-a", "moto", "prefect"])
        from bench.compare.workspace import Bench

        bench = Bench(
            source_uri=services.mongo_uri("mongo-a"), endpoint=services.url("moto"), bucket=BUCKET, key=key, work=work
        )
        bench.s3().create_bucket(Bucket=BUCKET)
        storage = bench.storage()
        large = [f"flow_large_{n}" for n in range(1, args.large_count + 1)] if args.large_mb else []
        todo = cases(args.counts, args.cold_counts, large, args.large_mb * MB)
        client: MongoClient = MongoClient(bench.source_uri)
        try:
            for name in sorted({d for case in todo for d in case.databases}):
                size = args.large_mb * MB if name.startswith("flow_large") else TINY_BYTES
                ensure_dataset(client, name, size, reuse=args.keep_data, progress=lambda line: None)
            print(f"{len({d for c in todo for d in c.databases})} databases ready", flush=True)
        finally:
            client.close()
        for case in todo:
            plan = plan_document(
                case,
                uri=bench.source_uri,
                endpoint=bench.endpoint,
                fingerprint=key.fingerprint,
                gnupghome=str(key.home),
                prefix=f"flow/{uuid.uuid4().hex[:6]}/",
            )
            run = measure_flow_run(case, work=work, storage=storage, prefect_url=services.url("prefect"), plan=plan)
            print(
                f"{case.label}: {run.wall_s:.1f} s (transfers {run.transfer_s:.1f} s), peak RSS tree "
                f"{run.peak_rss_tree_mb:.1f} MB (python {run.peak_rss_python_mb:.1f}) (load {run.load1})",
                flush=True,
            )
            runs.append(run)
    finally:
        services.stop()
        remove_gpg_home(gpg_home)
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep_data:
            shutil.rmtree(run_dir, ignore_errors=True)
    verdict = memory_verdict(runs)
    print()
    print(format_table(runs))
    print()
    print(verdict.line())
    machine = machine_info()
    total = time.perf_counter() - began
    write_json(
        RESULTS_FILE,
        {
            "benchmark": "flow_runs",
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine,
            "runs": [
                asdict(r) | {"fixed_s": round(r.fixed_s, 2), "fixed_per_database_s": round(r.fixed_per_database_s, 3)}
                for r in runs
            ],
            "verdict": asdict(verdict) | {"line": verdict.line()},
            "total_seconds": round(total, 1),
        },
    )
    if args.record:
        write_json(
            RECORDED_FILE, recorded_document(runs, verdict, measured_at=datetime.now(UTC), git=machine.get("git", "?"))
        )
        print(f"peak recorded in {RECORDED_FILE.relative_to(PROJECT_ROOT)}")
    print(f"results in {RESULTS_FILE.relative_to(PROJECT_ROOT)}; whole benchmark {total:.0f} s")
    return 0


def parse_counts(text: str) -> list[int]:
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated numbers of databases, got {text!r}") from None
    if any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError(f"numbers of databases are at least 1, got {text!r}")
    return counts


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.flow_runs", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--counts",
        type=parse_counts,
        default=list(DEFAULT_COUNTS),
        help="tiny databases per run, against a running Prefect server (default 1,10,50)",
    )
    parser.add_argument(
        "--cold-counts",
        type=parse_counts,
        default=list(DEFAULT_COLD_COUNTS),
        help="tiny databases per run with no server running (default 1,10; '' for none)",
    )
    parser.add_argument(
        "--large-mb", type=int, default=DEFAULT_LARGE_MB, help="MB per large database (default 64; 0: no large case)"
    )
    parser.add_argument(
        "--large-count", type=int, default=DEFAULT_LARGE_COUNT, help="large databases in their run (default 3)"
    )
    parser.add_argument(
        "--keep-data", action="store_true", help=f"keep the services' state in {KEEP_RUN_DIR.relative_to(PROJECT_ROOT)}"
    )
    parser.add_argument(
        "--record", action="store_true", help=f"write the largest peak to {RECORDED_FILE.relative_to(PROJECT_ROOT)}"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
