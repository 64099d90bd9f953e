"""The comparative benchmark's fixed settings: sizes, the oplog cap, zstd, the bucket and where results go."""

from __future__ import annotations

from bench.harness import PROJECT_ROOT

DEFAULT_SIZES = (19, 50, 152)  # the sizes issue 12 measured: 8x apart
DEFAULT_RUNS = 3
#: The groups of rows, in the order a whole run measures them (`--only` picks some).
GROUPS = ("backup", "pipeline", "restore", "flow")
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
