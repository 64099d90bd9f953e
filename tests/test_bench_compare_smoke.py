"""The comparative benchmark's non-wine measuring paths on one 1 MB size, so the benchmark cannot silently rot.

It checks only that each row comes out with positive numbers (and that ours wrote no temp file); how fast or
how lean anything is, is the benchmark's business (`python -m bench.compare`), never a test's.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from pymongo import MongoClient

from bench.compare.backups import measure_backups, measure_pipeline_alone, profile_pipeline
from bench.compare.chart import draw_chart
from bench.compare.profile import STAGES
from bench.compare.report import SUBJECTS, check_targets, format_table, markdown_table, summarize
from bench.compare.workspace import Bench, drop_size, prepare_size
from devservices import GpgKey, LocalServices

SUBJECTS_HERE = ("floor", "dump_alone", "floor_instance", "ours_db", "ours_instance")


def test_compare_rows_at_one_megabyte(
    services: LocalServices, bucket: str, gpg_key: GpgKey, aws_env: dict[str, str], tmp_path: Path
) -> None:
    uri = services.mongo_uri("mongo-a")
    bench = Bench(source_uri=uri, endpoint=services.url("moto"), bucket=bucket, key=gpg_key, work=tmp_path)
    client: MongoClient = MongoClient(uri)
    # Not bench_<S>mb: the shared server is not ours alone.
    prefix = f"bench_cmp_smoke_{uuid.uuid4().hex[:8]}"
    data = prepare_size(client, 1, reuse=False, prefix=prefix, progress=lambda line: None)
    try:
        measures = measure_backups(bench, data, run=1, subjects=SUBJECTS_HERE, progress=lambda line: None)
        measures += measure_pipeline_alone(bench, 1, runs=1)
        profile = profile_pipeline(bench, 1)
    finally:
        drop_size(client, data)
        client.close()

    summaries = summarize(measures)
    by = {s.subject: s for s in summaries}
    assert set(by) == {*SUBJECTS_HERE, "pipeline_alone", "pipe_cli"}
    for summary in summaries:
        assert summary.size_mb == 1 and summary.runs == 1
        assert summary.wall_s > 0 and summary.mb_per_s > 0, summary
    for subject in ("ours_db", "ours_instance"):
        ours = by[subject]
        assert ours.peak_rss_mb is not None and ours.peak_rss_mb > 0
        assert ours.stored_mb is not None and ours.stored_mb > 0
        assert ours.temp_disk_mb == 0  # the streamed backup's promise, not a timing
        assert ours.ratios["floor"] > 0
    assert by["pipeline_alone"].stored_mb is not None and by["pipeline_alone"].stored_mb > 0
    # The command-line pipe stored the same archive: zstd's and gpg's framing differ, not the size class.
    assert by["pipe_cli"].stored_mb is not None and by["pipe_cli"].stored_mb > 0
    assert by["pipeline_alone"].ratios["pipe"] > 0
    assert by["pipeline_alone"].details["cpu_s"] > 0 and by["pipe_cli"].details["cpu_s"] > 0
    # The profile is optional (py-spy may be refused ptrace): either its shares by stage or why there are none.
    assert profile.unavailable or (set(profile.shares) == set(STAGES) and profile.seconds > 0), profile
    assert profile.line().startswith("pipeline profile")
    assert by["dump_alone"].ratios["floor"] > 0

    table = format_table(summaries)
    for subject in by:
        assert SUBJECTS[subject] in table
    assert SUBJECTS["ours_db"] in markdown_table(summaries)
    lines = [t.line() for t in check_targets(summaries)]
    assert len(lines) == 7 and any(line.startswith("NOT MEASURED") for line in lines)  # no wine rows here
    chart = tmp_path / "compare.png"
    draw_chart(summaries, chart, title="smoke")
    assert chart.stat().st_size > 0
    json.dumps([s.details for s in summaries])  # what the results file holds must be JSON
