"""When Prefect's own plumbing fails (its API unreachable, its temporary server not starting in time, its
sqlite file locked), a command line says it was Prefect, not the backup, and its exit status follows what
the flow itself did: 3 when the flow never said how it ended, the flow's own verdict when it did.

Seen in the field: `python -m flows.backup` without PREFECT_API_URL on a busy 2-core machine died with
"Timed out while attempting to connect to ephemeral Prefect API server" (the temporary server's import alone
took 55 s of wall time), exit 1, and the server's "database is locked" / "Application shutdown failed" as
the last words: indistinguishable from a failed backup.
"""

from __future__ import annotations

import socket

import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings
from prefect.states import Completed, Crashed, Failed

from flows.cli import EXIT_COMPLETED, EXIT_FAILED, EXIT_PREFECT, summary
from flows.watchdog import main as watchdog_main
from tests.planfiles import write_plan


@pytest.mark.parametrize(
    ("recorded", "returned", "code", "words"),
    [
        (Completed(message="2 backups stored"), Completed(message="2 backups stored"), EXIT_COMPLETED, "Completed"),
        (Failed(message="1 of 2 failed"), Failed(message="1 of 2 failed"), EXIT_FAILED, "Failed: 1 of 2 failed"),
        (Failed(message="boom in the body"), None, EXIT_FAILED, "Failed: boom in the body"),
        (Failed(message="bad parameter:\n\n  see the docs"), None, EXIT_FAILED, "Failed: bad parameter: see the docs"),
        (
            Crashed(message="API 500: database is locked"),
            Completed(message="2 backups stored and committed"),
            EXIT_COMPLETED,
            "Completed: 2 backups stored and committed (Prefect then failed, not the backup: it recorded the run "
            "as Crashed",
        ),
        (
            RuntimeError("httpx.ConnectError"),
            Failed(message="1 of 2 backups failed"),
            EXIT_FAILED,
            "Failed: 1 of 2 backups failed (Prefect then failed, not the backup: RuntimeError",
        ),
        (
            RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server."),
            None,
            EXIT_PREFECT,
            "backup: Prefect failed, not the backup, before the run said how it ended (RuntimeError: Timed out",
        ),
        (Crashed(message="Execution was cancelled"), None, EXIT_PREFECT, "Prefect failed, not the backup"),
    ],
)
def test_the_exit_status_follows_what_the_flow_did(recorded, returned, code, words):
    status, line = summary("backup", recorded, returned)
    assert status == code and words in line, line


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_prefect_api_is_reported_as_prefect_not_the_flow(services, aws_env, tmp_path, capsys):
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": "rs", "uri": "mongodb://127.0.0.1:1"}],
        bucket="b12",
        s3_endpoint=services.url("moto"),
        encryption={"passphrase_env": "UNUSED"},
    )
    dead = f"http://127.0.0.1:{closed_port()}/api"
    with temporary_settings({PREFECT_API_URL: dead, PREFECT_CLIENT_MAX_RETRIES: 0}):
        code = watchdog_main(["--plan", str(plan)])
    err = capsys.readouterr().err
    assert code == EXIT_PREFECT, err
    assert "watchdog: Prefect failed, not the watchdog" in err and "flows.status" in err, err
