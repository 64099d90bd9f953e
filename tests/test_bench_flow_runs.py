"""bench.flow_runs' pure parts on fixed numbers: the cases it runs, the table, the memory verdict, the record."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bench.flow_runs import FLAT_WITHIN_MB, TINY_BYTES, FlowRun, cases, format_table, memory_verdict, recorded_document


def run(label: str, databases: int, peak: float, *, server: bool = True, wall: float = 20.0) -> FlowRun:
    return FlowRun(label, databases, 0.1 * databases, server, wall, 2.0, peak, peak - 5.0, 5.0, 1.0)


RUNS = [
    run("1 tiny", 1, 146.0),
    run("10 tiny", 10, 150.0, wall=40.0),
    run("50 tiny", 50, 159.0, wall=102.0),
    run("3 large", 3, 190.0),
    run("1 tiny, no server", 1, 260.0, server=False),
]


def test_cases_share_their_tiny_databases_and_put_the_cold_runs_last():
    planned = cases([1, 10], [1], ["big_1", "big_2"], 64)
    assert [c.label for c in planned] == ["1 tiny", "10 tiny", "2 large", "1 tiny, no server"]
    assert planned[1].databases[0] == planned[0].databases[0] == "flow_tiny_001"
    assert planned[1].data_bytes == 10 * TINY_BYTES and not planned[-1].server


def test_table_gives_the_rest_of_the_wall_per_database():
    lines = format_table(RUNS).splitlines()
    assert [c.strip() for c in lines[0].split(" | ")][:8] == [
        "case",
        "dbs",
        "data MB",
        "server",
        "wall s",
        "transfers s",
        "rest s",
        "rest s per db",
    ]
    fifty = [c.strip() for c in lines[4].split(" | ")]
    assert fifty[:9] == ["50 tiny", "50", "5.0", "running", "102.0", "2.0", "100.0", "2.00", "159.0"]
    assert [c.strip() for c in lines[-1].split(" | ")][3] == "temporary"


def test_flatness_is_judged_on_the_tiny_runs_against_a_server_and_the_peak_on_all():
    verdict = memory_verdict(RUNS)
    assert (verdict.fewest, verdict.most, verdict.peak_fewest_mb, verdict.peak_most_mb) == (1, 50, 146.0, 159.0)
    assert verdict.met and verdict.peak_mb == 190.0  # a run with Prefect's temporary server is not a worker's
    assert "+13.0 MB" in verdict.line() and "MET" in verdict.line()
    grown = memory_verdict([run("1 tiny", 1, 146.0), run("50 tiny", 50, 146.0 + FLAT_WITHIN_MB + 1)])
    assert grown.met is False and "MISSED" in grown.line()
    assert memory_verdict([run("1 tiny", 1, 146.0)]).met is None


def test_the_record_holds_the_largest_peak():
    verdict = memory_verdict(RUNS)
    document = json.loads(
        json.dumps(recorded_document(RUNS, verdict, measured_at=datetime(2026, 12, 2, tzinfo=UTC), git="abc"))
    )
    assert document["peak_rss_tree_mb"] == 190.0 and len(document["runs"]) == len(RUNS)
    assert document["measured_at"] == "2026-12-02T00:00:00+00:00" and document["git"] == "abc"


def test_the_plan_backs_up_the_case_into_the_given_bucket():
    from bench.flow_runs import FlowCase, plan_document

    case = FlowCase("2 tiny", ("a", "b"), 2 * TINY_BYTES, True, max_parallel=1)
    plan = plan_document(case, uri="mongodb://x", endpoint="http://s3", fingerprint="F", gnupghome="/g", prefix="p/")
    assert plan["instances"][0]["databases"] == ["a", "b"] and plan["storage"]["bucket"] == "bench-flow-runs"
    other = plan_document(
        case, uri="mongodb://x", endpoint="http://s3", fingerprint="F", gnupghome="/g", prefix="p/", bucket="cmp"
    )
    assert other["storage"]["bucket"] == "cmp" and other["storage"]["prefix"] == "p/"
