"""The backup run's report rows: state first, human sizes, a short cause; markdown that renders names as text."""

from __future__ import annotations

from flows.backup_report import WHOLE_INSTANCE, BackupRow, final_state, markdown, short_cause, table

PYMONGO = (
    "instance rs-down: unreachable: 127.0.0.1:9: [Errno 111] Connection refused (configured timeouts: "
    "socketTimeoutMS: 1000.0ms, connectTimeoutMS: 1000.0ms), Timeout: 1.0s, Topology Description: "
    "<TopologyDescription id: 6b0f, topology_type: Single, servers: [<ServerDescription ('127.0.0.1', 9)"
)


def rows() -> list[BackupRow]:
    return [
        BackupRow("rs-a", "shop", "daily", "daily/rs-a/shop/x.archive.zst.gpg", 9_048_576, 4000, 5.5, "Completed"),
        BackupRow("rs-down", WHOLE_INSTANCE, "daily", "", state="Failed", error=PYMONGO),
        BackupRow("rs-a", "my_*db*", "daily", "", state="Failed", error="StorageError: upload s3://b/k: 503"),
    ]


def test_columns_start_with_state_and_sizes_are_human():
    first, down, _ = table(rows())
    assert list(first)[:4] == ["state", "instance", "database", "size"] and list(first)[-1] == "key"
    assert first["size"] == "8.6 MiB" and down["size"] == ""


def test_the_cause_is_the_first_clause_without_driver_diagnostics():
    assert short_cause(PYMONGO) == "instance rs-down: unreachable: 127.0.0.1:9: [Errno 111] Connection refused"
    assert len(short_cause("x" * 500)) == 100


def test_markdown_shows_names_as_text_and_no_empty_backticks():
    text = markdown(rows(), "Backups of run r1 (tier daily)")
    assert "my\\_\\*db\\*" in text and "``" not in text
    assert "| Failed | rs-down | (all databases) |" in text


def test_the_final_state_names_each_failed_backup():
    state = final_state(rows())
    assert state.is_failed() and state.message == "2 of 3 backups failed: rs-down/*, rs-a/my_*db*"
