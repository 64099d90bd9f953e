"""The comparative benchmark's report on fixed numbers, without any service: medians and ratios, the table,
the targets' verdicts and the results document are what the numbers say, not what a run happened to give."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bench.compare.report import (
    SUBJECTS,
    Measure,
    Summary,
    check_targets,
    format_table,
    markdown_table,
    pipeline_note,
    restore_note,
    results_document,
    results_text,
    summarize,
    time_notes,
)
from bench.datasets import Dataset
from bench.harness import MB

MACHINE = {
    "nproc": 2,
    "cpu_model": "Test CPU",
    "memory_gib": 8.0,
    "python": "3.11.2",
    "load_average_start": [0.5, 0.4, 0.3],
    "load_average_end": [0.7, 0.5, 0.3],
    "oplog_max_entries": 100,
    "zstd": "level 3, 2 threads",
    "git": "abc1234",
}
STAGES = {"dump": 1.0, "compress": 0.25, "upload": 0.5}


def runs(
    subject: str, size_mb: int, walls: list[float], *, extra: dict[str, Any] | None = None, **fields: Any
) -> list[Measure]:
    """One measure per wall, each of the whole size's data (so MB/s = size / wall)."""
    return [
        Measure(subject, size_mb, n, wall, size_mb * MB, extra=dict(extra or {}), **fields)
        for n, wall in enumerate(walls, start=1)
    ]


def measures() -> list[Measure]:
    ours = {"temp_disk_bytes": 0, "stored_bytes": 4 * MB}
    return [
        *runs("floor", 8, [1.0, 0.5, 2.0], extra={"collstats_s": 0.1}),
        *runs("floor", 64, [8.0, 8.0, 8.0], extra={"collstats_s": 0.5}),
        *runs("ours_db", 8, [2.0, 1.5, 4.0], extra={"oplog_query_s": 0.2, "stage_seconds": STAGES}, **ours),
        *runs("ours_db", 64, [9.6, 9.6, 9.6], extra={"oplog_query_s": 0.4, "stage_seconds": STAGES}, **ours),
        *runs("mongodump", 8, [4.0, 4.0, 4.0], stored_bytes=5 * MB),
        *runs("mongodump", 64, [16.0, 16.0, 16.0], stored_bytes=40 * MB),
        *runs("old_pipeline", 8, [5.0, 5.0, 5.0], temp_disk_bytes=12 * MB),
        *runs("old_pipeline", 64, [20.0, 20.0, 20.0], temp_disk_bytes=98 * MB),
        *runs("restore_ours", 8, [3.0], temp_disk_bytes=0),
        *runs("restore_ours", 64, [10.0], temp_disk_bytes=0),
        *runs("mongorestore", 8, [2.0]),
        *runs("mongorestore", 64, [12.0]),
        *runs("pipeline_alone", 8, [0.1]),
        *runs("pipeline_alone", 64, [0.4]),
        *runs("pipe_cli", 8, [0.2]),
        *runs("pipe_cli", 64, [0.32]),
    ]


def with_rss(items: list[Measure]) -> list[Measure]:
    """Peak RSS of ours: 100/110/105 MB at 8 MB (worst 110), 118 MB at 64 MB (a spread of 8 MB)."""
    peaks = {(8, 1): 100.0, (8, 2): 110.0, (8, 3): 105.0, (64, 1): 118.0, (64, 2): 118.0, (64, 3): 118.0}
    for m in items:
        if m.subject == "ours_db":
            m.peak_rss_mb = peaks[(m.size_mb, m.run)]
    return items


@pytest.fixture
def summaries() -> list[Summary]:
    return summarize(with_rss(measures()))


def by(summaries: list[Summary], subject: str, size: int) -> Summary:
    (found,) = [s for s in summaries if (s.subject, s.size_mb) == (subject, size)]
    return found


def test_medians_worst_cases_and_ratios(summaries: list[Summary]) -> None:
    ours = by(summaries, "ours_db", 8)
    assert (ours.runs, ours.wall_s, ours.mb_per_s) == (3, 2.0, 4.0)  # median wall; median of 4, 5.33, 2 MB/s
    assert ours.peak_rss_mb == 110.0 and ours.temp_disk_mb == 0 and ours.stored_mb == 4.0  # RSS: the worst run
    assert ours.ratios == {"floor": 2.0, "mongodump": 0.5, "old": 0.4}
    assert ours.details["oplog_query_s"] == 0.2 and ours.details["stage:dump"] == 1.0
    assert by(summaries, "ours_db", 64).ratios == {"floor": 1.2, "mongodump": 0.6, "old": 0.48}
    assert by(summaries, "restore_ours", 8).ratios == {"mongorestore": 1.5}
    assert by(summaries, "floor", 8).ratios == {}  # a reference has no ratio of its own
    # Sizes in order, and within a size the subjects in the table's order.
    assert [(s.size_mb, s.subject) for s in summaries][:6] == [
        (8, "floor"),
        (8, "mongodump"),
        (8, "old_pipeline"),
        (8, "ours_db"),
        (8, "pipeline_alone"),
        (8, "pipe_cli"),
    ]
    assert by(summaries, "pipeline_alone", 8).ratios == {"pipe": 0.5}


def test_the_table_has_one_row_per_size_and_subject(summaries: list[Summary]) -> None:
    lines = format_table(summaries).splitlines()
    assert [c.strip() for c in lines[0].split(" | ")] == [
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
    ]
    rows = {tuple(c.strip() for c in line.split(" | "))[:2]: line for line in lines[2:] if line}
    ours = [c.strip() for c in rows[("8", SUBJECTS["ours_db"])].split(" | ")]
    assert ours == [
        "8",
        SUBJECTS["ours_db"],
        "3",
        "2.00",
        "4.0",
        "110.0",
        "0.0",
        "4.0",
        "2.00x",
        "0.50x",
        "0.40x",
        "",
        "",
    ]
    restore = [c.strip() for c in rows[("64", SUBJECTS["restore_ours"])].split(" | ")]
    assert restore == ["64", SUBJECTS["restore_ours"], "1", "10.00", "6.4", "", "0.0", "", "", "", "", "0.83x", ""]
    assert len(rows) == len(summaries) == 16
    assert lines.count("") == 1  # a blank line between the two sizes
    markdown = markdown_table(summaries).splitlines()
    assert markdown[1] == "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    assert (
        f"| 8 | {SUBJECTS['ours_db']} | 3 | 2.00 | 4.0 | 110.0 | 0.0 | 4.0 | 2.00x | 0.50x | 0.40x |  |  |" in markdown
    )


def test_each_target_is_judged_on_every_size(summaries: list[Summary]) -> None:
    lines = [t.line() for t in check_targets(summaries)]
    assert lines == [
        "MISSED       backup wall <= 1.25x the floor: ours (1 db) / floor: 2.00 at 8 MB, 1.20 at 64 MB",
        "MET          backup wall <= stock mongodump: ours (1 db) / mongodump: 0.50 at 8 MB, 0.60 at 64 MB",
        "MET          peak RSS < 200 MB and flat within 20 MB: ours (1 db, python + gpg, worst run): "
        "110.0 at 8 MB, 118.0 at 64 MB; spread 8.0 MB",
        f"MET          zero temp disk: 4 rows of ours (backups, flow, restores); largest 0.00 MB "
        f"({SUBJECTS['ours_db']} at 8 MB)",
        "MISSED       restore wall <= 1.0x stock mongorestore: ours (verify on) / mongorestore: 1.50 at 8 MB, "
        "0.83 at 64 MB; verify off: -; --read-back: - (mongorestore's decrypt+decompress prep not included)",
        "MISSED       compress+encrypt+upload >= 150 MB/s: MB/s: 80.0 at 8 MB, 160.0 at 64 MB",
        "MISSED       compress+encrypt+upload at least as fast as the command-line pipe: ours / pipe wall: "
        "0.50 at 8 MB, 1.25 at 64 MB; the pipe's MB/s: 40.0 at 8 MB, 200.0 at 64 MB",
    ]
    unmeasured = [t.line() for t in check_targets([by(summaries, "floor", 8)])]
    assert all(line.startswith("NOT MEASURED") for line in unmeasured)


def test_the_pipeline_note_gives_each_side_its_cpu_and_the_s3_server_s() -> None:
    ours = Summary("pipeline_alone", 64, 3, 0.5, 128.0, None, None, 32.0, details={"cpu_s": 0.8, "server_cpu_s": 0.3})
    ours.details.update({"stage:dump": 0.05, "stage:compress": 0.2, "stage:upload": 0.1})
    pipe = Summary("pipe_cli", 64, 3, 0.6, 106.7, None, None, 32.0, details={"cpu_s": 1.1, "server_cpu_s": 0.35})
    assert pipeline_note(64, ours, pipe) == (
        "64 MB, zstd+gpg+S3 alone: ours 128.0 MB/s in 0.50 s, CPU 0.8 s + S3 server 0.3 s (stage s "
        "source/compress/upload 0.05/0.20/0.10); the command-line pipe 106.7 MB/s in 0.60 s, CPU 1.1 s + S3 "
        "server 0.3 s"
    )
    assert pipeline_note(64, ours, None).endswith("0.05/0.20/0.10)")
    # The thread-seconds spent runnable but off-CPU: the machine's other load, told apart from stages waiting.
    ours.details["runqueue_wait_s"] = 0.7
    assert "CPU 0.8 s + S3 server 0.3 s, waited for a CPU 0.7 thread-s (stage s" in pipeline_note(64, ours, None)


def test_the_header_names_the_pipeline_rows_s3_store() -> None:
    assert "S3 store" not in results_text([], [], MACHINE, [8], 1, 1.0)
    text = results_text([], [], MACHINE | {"pipeline_s3_store": "seaweedfs (weed mini)"}, [8], 1, 1.0)
    assert "pipeline rows' S3 store: seaweedfs (weed mini)" in text


def test_notes_text_and_results_document(summaries: list[Summary]) -> None:
    notes = time_notes(summaries)
    assert notes == [
        "8 MB, ours (1 db): wall 2.00 s (stage s dump/compress/upload 1.00/0.25/0.50); collStats 0.00 s + oplog "
        "queries 0.20 s are SecantusDB scans; without them 1.80 s = 1.80x the floor (1.00 s)",
        "64 MB, ours (1 db): wall 9.60 s (stage s dump/compress/upload 1.00/0.25/0.50); collStats 0.00 s + oplog "
        "queries 0.40 s are SecantusDB scans; without them 9.20 s = 1.15x the floor (8.00 s)",
        "8 MB, zstd+gpg+S3 alone: ours 80.0 MB/s in 0.10 s; the command-line pipe 40.0 MB/s in 0.20 s",
        "64 MB, zstd+gpg+S3 alone: ours 160.0 MB/s in 0.40 s; the command-line pipe 200.0 MB/s in 0.32 s",
        restore_note(8, by(summaries, "restore_ours", 8), by(summaries, "mongorestore", 8)),
        restore_note(64, by(summaries, "restore_ours", 64), by(summaries, "mongorestore", 64)),
    ]
    targets = check_targets(summaries)
    text = results_text(summaries, targets, MACHINE, [8, 64], 3, 42.0)
    assert "machine: 2 cores (Test CPU), 8.0 GiB; load average at start 0.5, at end 0.7" in text
    assert format_table(summaries) in text and notes[0] in text and targets[0].line() in text

    items = with_rss(measures())
    dataset = Dataset("bench_8mb", 8 * MB, 3000, 8 * MB + 5, False, 1.5)
    document = results_document(
        items,
        summaries,
        targets,
        machine=MACHINE,
        sizes=[8, 64],
        runs=3,
        total=42.04,
        phases={"backups": 30.123},
        datasets=[dataset],
        finished_at=datetime(2026, 12, 2, 10, 0, tzinfo=UTC),
    )
    loaded = json.loads(json.dumps(document))  # all of it is JSON
    assert loaded["benchmark"] == "compare" and loaded["finished_at"] == "2026-12-02T10:00:00+00:00"
    assert (loaded["sizes_mb"], loaded["runs"], loaded["total_seconds"], loaded["mb"]) == ([8, 64], 3, 42.0, MB)
    assert loaded["phase_seconds"] == {"backups": 30.1} and loaded["subjects"] == SUBJECTS
    ours = next(s for s in loaded["summaries"] if (s["subject"], s["size_mb"]) == ("ours_db", 8))
    assert ours["wall_s"] == 2.0 and ours["ratios"] == {"floor": 2.0, "mongodump": 0.5, "old": 0.4}
    assert [t["met"] for t in loaded["targets"]] == [False, True, True, True, False, False, False]
    assert loaded["targets"][0]["line"] == targets[0].line()
    assert len(loaded["measures"]) == len(items) and loaded["measures"][0]["mb_per_s"] == 8.0
    assert loaded["datasets"] == [
        {
            "name": "bench_8mb",
            "target_bytes": 8 * MB,
            "documents": 3000,
            "bson_bytes": 8 * MB + 5,
            "reused": False,
            "seconds": 1.5,
        }
    ]


def test_the_restore_note_takes_the_move_into_place_apart() -> None:
    ours = Summary("restore_ours", 64, 3, 10.0, 6.4, 90.0, 0.0, None, details={"swap_s": 2.5})
    stock = Summary("mongorestore", 64, 3, 8.0, 8.0, 180.0, None, None)
    note = restore_note(64, ours, stock)
    assert note.startswith("64 MB, restore (verify on): 10.00 s, of which moving the verified staging collections")
    assert "into place took 2.50 s" in note and "without it 7.50 s = 0.94x stock mongorestore (8.00 s)" in note
