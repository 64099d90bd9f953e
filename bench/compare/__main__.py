"""The comparative benchmark's command line: `python -m bench.compare [--sizes 19,50,152] [--runs 3] [--keep-data]`;
`--only GROUP[,GROUP]` measures some groups of rows alone (backup, pipeline, restore, flow) at any sizes and
publishes nothing: the same rows as the whole run, e.g. `--only restore --sizes 24 --runs 1` while working on one;
`--child KIND --params JSON` is how the benchmark starts a measured child of its own."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import bench.compare
from bench.compare.children import CHILDREN
from bench.compare.settings import DEFAULT_RUNS, DEFAULT_SIZES, GROUPS, KEEP_RUN_DIR, MIN_SIZES
from bench.flow_runs import DEFAULT_COLD_COUNTS, DEFAULT_COUNTS
from bench.flow_runs import parse_counts as _counts
from bench.harness import PROJECT_ROOT, parse_sizes


def _sizes(text: str) -> list[int]:
    return parse_sizes(text, at_least=MIN_SIZES)


def _any_sizes(text: str) -> list[int]:
    """--sizes of `--only`: any whole MB, no span required."""
    return parse_sizes(text, at_least=1, span=False)


def _groups(text: str) -> list[str]:
    groups = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown or not groups:
        raise argparse.ArgumentTypeError(f"--only: comma-separated of {', '.join(GROUPS)}, got {text!r}")
    return [g for g in GROUPS if g in groups]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare", description=(bench.compare.__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--sizes",
        default=list(DEFAULT_SIZES),
        help="database sizes in MB (2**20 bytes of BSON), comma-separated (default: 19,50,152)",
    )
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="runs per figure (default: 3)")
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help=f"keep the services' state in {KEEP_RUN_DIR.relative_to(PROJECT_ROOT)} and reuse the databases an "
        "earlier run generated",
    )
    parser.add_argument(
        "--flow-counts",
        type=_counts,
        default=list(DEFAULT_COUNTS),
        help="tiny databases per flow run against the running Prefect server (default 1,10,50)",
    )
    parser.add_argument(
        "--cold-counts",
        type=_counts,
        default=list(DEFAULT_COLD_COUNTS),
        help="tiny databases per flow run with no server running (default 1,10; '' for none)",
    )
    parser.add_argument(
        "--only",
        type=_groups,
        help=f"measure only these groups of rows, comma-separated of {', '.join(GROUPS)}; any number of sizes, "
        "nothing published (pipeline alone: zstd+gpg+S3 beside the command-line pipe, with its profile, on "
        "--pipeline-store; restore alone: ours with verification on and off, stock mongorestore)",
    )
    parser.add_argument(
        "--pipeline-store",
        choices=("auto", "seaweedfs", "moto"),
        default="auto",
        help="the S3 server of the pipeline rows (ours and the command-line pipe alike): SeaweedFS when installed "
        "(auto, the default; moto with the reason printed when it cannot start), or the one named",
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if isinstance(args.sizes, str):  # checked here: --only takes a single size, the whole run at least three
        try:
            args.sizes = _any_sizes(args.sizes) if args.only else _sizes(args.sizes)
        except argparse.ArgumentTypeError as exc:
            parser.error(str(exc))
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
    from bench.compare.run import run_benchmark  # not for a child: it needs none of it

    only = args.only or list(GROUPS)
    return run_benchmark(
        args.sizes, args.runs, args.keep_data, args.flow_counts, args.cold_counts, only, args.pipeline_store
    )


if __name__ == "__main__":
    sys.exit(main())
