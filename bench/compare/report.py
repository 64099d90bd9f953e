"""What a run of the comparative benchmark measured, and what it says: summaries per subject and size, the
plain-text and markdown tables, the issue's targets, the notes on where the time goes, and the results
document. Pure: numbers in, text and dicts out; no service is needed (see tests/test_bench_report.py).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from bench.compare.settings import INSTANCE_PARTS
from bench.datasets import Dataset
from bench.harness import MB

#: The issue's targets.
TARGET_FLOOR_RATIO = 1.25
TARGET_MONGODUMP_RATIO = 1.0
TARGET_PEAK_MB = 200.0
TARGET_FLAT_MB = 20.0
TARGET_RESTORE_RATIO = 1.0
TARGET_PIPELINE_MB_S = 150.0


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
    "pipe_cli": "tools: zstd -3 -T2 | gpg | s3cmd put (no MongoDB)",
    "restore_ours": "restore: ours (verify on)",
    "restore_ours_noverify": "restore: ours (verify off)",
    "restore_ours_readback": "restore: ours (--read-back)",  # the drill's verification, the old default
    "mongorestore_prep": "restore prep: S3>gpg>zstd>file",
    "mongorestore": "restore: stock mongorestore",
}
#: Wall-time ratios shown in the table: subject -> {column: reference subject}.
RATIOS: dict[str, dict[str, str]] = {
    "dump_alone": {"floor": "floor"},
    "ours_db": {"floor": "floor", "mongodump": "mongodump", "old": "old_pipeline"},
    "ours_instance": {"floor": "floor_instance"},
    "ours_flow": {"floor": "floor_instance"},
    "pipeline_alone": {"pipe": "pipe_cli"},
    "restore_ours": {"mongorestore": "mongorestore"},
    "restore_ours_noverify": {"mongorestore": "mongorestore"},
    "restore_ours_readback": {"mongorestore": "mongorestore"},
}
RATIO_COLUMNS = ("floor", "mongodump", "old", "mongorestore", "pipe")


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


def progress_line(m: Measure) -> str:
    parts = [f"{m.size_mb} MB run {m.run}: {SUBJECTS[m.subject]}: {m.wall_s:.2f} s, {m.mb_per_s:.1f} MB/s"]
    if m.peak_rss_mb is not None:
        parts.append(f"peak RSS {m.peak_rss_mb:.1f} MB")
    if m.temp_disk_bytes is not None:
        parts.append(f"temp disk {m.temp_disk_bytes / MB:.1f} MB")
    if m.stored_bytes is not None:
        parts.append(f"stored {m.stored_bytes / MB:.1f} MB")
    return ", ".join(parts) + f" (load {m.extra.get('load1', '?')})"


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
    "÷ pipe",
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
        if s.subject
        in ("ours_db", "ours_instance", "ours_flow", "restore_ours", "restore_ours_noverify", "restore_ours_readback")
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
    _, text_read = per_size("restore_ours_readback", lambda s: s.ratios.get("mongorestore"), ".2f")
    verdicts.append(
        TargetVerdict(
            "restore wall <= 1.0x stock mongorestore",
            all(v <= TARGET_RESTORE_RATIO for v in values) if values else None,
            f"ours (verify on) / mongorestore: {text or '-'}; verify off: {text_off or '-'}; --read-back: "
            f"{text_read or '-'} (mongorestore's decrypt+decompress prep not included)",
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
    ratios, text = per_size("pipeline_alone", lambda s: s.ratios.get("pipe"), ".2f")
    _, pipe_text = per_size("pipe_cli", lambda s: s.mb_per_s, ".1f")
    verdicts.append(
        TargetVerdict(
            "compress+encrypt+upload at least as fast as the command-line pipe",
            all(v <= 1.0 for v in ratios) if ratios else None,
            f"ours / pipe wall: {text or '-'}; the pipe's MB/s: {pipe_text or '-'}",
        )
    )
    return verdicts


def header_text(machine: dict[str, Any], sizes: Sequence[int], runs: int, total: float) -> str:
    return (
        f"machine: {machine['nproc']} cores ({machine['cpu_model']}), {machine['memory_gib']} GiB; "
        f"load average at start {machine['load_average_start'][0]}, at end "
        f"{machine.get('load_average_end', ['?'])[0]}; python {machine['python']}; {machine.get('gpg', '')}\n"
        f"code: {machine.get('git', '?')}\n"
        f"sizes {', '.join(map(str, sizes))} MB (MB = 2^20 bytes of BSON), median of {runs} runs (flow: 1 run); "
        f"zstd {machine['zstd']}; SecantusDB oplog capped at {machine['oplog_max_entries']} entries; "
        f"wine start-up {machine.get('wine_startup_s', '?')} s per stock-tool run; whole run {total:.0f} s"
        + (f"\npipeline rows' S3 store: {machine['pipeline_s3_store']}" if machine.get("pipeline_s3_store") else "")
    )


def results_markdown(
    summaries: Sequence[Summary],
    targets: Sequence[TargetVerdict],
    machine: dict[str, Any],
    sizes: Sequence[int],
    runs: int,
    total: float,
    finished_at: datetime,
    *,
    extra_notes: Sequence[str] = (),
) -> str:
    """bench/RESULTS.md: the latest table, the machine it ran on and the targets (written by the CLI)."""
    notes = [*time_notes(summaries), *extra_notes]
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


def results_text(
    summaries: Sequence[Summary],
    targets: Sequence[TargetVerdict],
    machine: dict[str, Any],
    sizes: Sequence[int],
    runs: int,
    total: float,
    *,
    extra_notes: Sequence[str] = (),
) -> str:
    """What the CLI prints at the end: the header, the table, the notes and one line per target."""
    return "\n".join(
        [
            "",
            header_text(machine, sizes, runs, total),
            format_table(summaries),
            "",
            *time_notes(summaries),
            *extra_notes,
            "",
            *(verdict.line() for verdict in targets),
        ]
    )


def results_document(
    measures: Sequence[Measure],
    summaries: Sequence[Summary],
    targets: Sequence[TargetVerdict],
    *,
    machine: dict[str, Any],
    sizes: Sequence[int],
    runs: int,
    total: float,
    phases: dict[str, float],
    datasets: Sequence[Dataset],
    finished_at: datetime,
) -> dict[str, Any]:
    """bench/results/compare.json: every measure, summary and target, and what the run ran on."""
    return {
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
        "datasets": [asdict(d) for d in datasets],
    }


def pipeline_note(size: int, ours: Summary, pipe: Summary | None) -> str:
    """The pipeline row at one size: MB/s beside the command-line pipe's, and the CPU each took, theirs and
    the S3 server's (which runs on the same cores: its share is the machine's, not the pipeline's; which server
    it was is in the header, `pipeline_s3_store`)."""

    def cpu(summary: Summary) -> str:
        own, server = summary.details.get("cpu_s"), summary.details.get("server_cpu_s")
        if own is None:
            return ""
        text = f", CPU {own:.1f} s" + (f" + S3 server {server:.1f} s" if server is not None else "")
        waited = summary.details.get("runqueue_wait_s")
        return text + (f", waited for a CPU {waited:.1f} thread-s" if waited is not None else "")

    note = f"{size} MB, zstd+gpg+S3 alone: ours {ours.mb_per_s:.1f} MB/s in {ours.wall_s:.2f} s{cpu(ours)}"
    if any(key.startswith("stage:") for key in ours.details):
        stages = "/".join(f"{ours.details.get(f'stage:{n}', 0.0):.2f}" for n in ("dump", "compress", "upload"))
        note += f" (stage s source/compress/upload {stages})"
    if pipe is not None:
        note += f"; the command-line pipe {pipe.mb_per_s:.1f} MB/s in {pipe.wall_s:.2f} s{cpu(pipe)}"
    return note


def restore_note(size: int, ours: Summary, stock: Summary) -> str:
    """Ours (default verification) against mongorestore, and the share of the move into place: one
    renameCollection per collection, which MongoDB does in its catalog and SecantusDB by copying the data."""
    swap = ours.details.get("swap_s", 0.0)
    net = ours.wall_s - swap
    return (
        f"{size} MB, restore (verify on): {ours.wall_s:.2f} s, of which moving the verified staging collections "
        f"into place took {swap:.2f} s (renameCollection: a copy of the data on SecantusDB, a catalog change on "
        f"MongoDB); without it {net:.2f} s = {net / stock.wall_s:.2f}x stock mongorestore ({stock.wall_s:.2f} s), "
        "which writes straight into the target"
    )


def time_notes(summaries: Sequence[Summary]) -> list[str]:
    """Facts from the runs that explain the ratios, per size: where ours spends its wall time, and what it
    would be without the metadata reads SecantusDB answers with a scan (MongoDB answers them from metadata /
    one end of the oplog): collStats, as far as our dump still sends it (timed by the dump-alone row; since
    issue 12 it sends none), and the oplog queries (timed inside our child)."""
    by = {(s.subject, s.size_mb): s for s in summaries}
    notes = []
    for size in sorted({s.size_mb for s in summaries}):
        ours, floor, dump = by.get(("ours_db", size)), by.get(("floor", size)), by.get(("dump_alone", size))
        if ours is None or floor is None:
            continue
        collstats = dump.details.get("collstats_s", 0.0) if dump is not None else 0.0
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
        ours, pipe = by.get(("pipeline_alone", size)), by.get(("pipe_cli", size))
        if ours is not None:
            notes.append(pipeline_note(size, ours, pipe))
    for size in sorted({s.size_mb for s in summaries}):
        ours, stock = by.get(("restore_ours", size)), by.get(("mongorestore", size))
        if ours is not None and stock is not None:
            notes.append(restore_note(size, ours, stock))
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
