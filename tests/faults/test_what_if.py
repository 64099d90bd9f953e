"""A watchdog run with `at` is a what-if: it judges as of that time and writes no `instance_backup_stale` event
(and does not end Failed, which is the second alarm) unless asked with `emit` / `--emit`. A what-if 40 h
ahead used to write real alarms that a `time > now() - 2h` query showed at once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from flows.watchdog import main as watchdog_main
from flows.watchdog import watchdog
from tests.helpers import influx_points
from tests.planfiles import write_plan


def stale_points(services, instance: str) -> list[dict]:
    # The points of a what-if lie in the future: ask for a range around now.
    return influx_points(
        services, "instance_backup_stale", f"\"instance\" = '{instance}' AND time > now() - 7d AND time < now() + 7d"
    )


def test_a_what_if_writes_no_alarm_unless_asked(services, bucket, prefect, aws_env, tmp_path, capsys):
    instance = f"rs-whatif-{uuid.uuid4().hex[:8]}"  # no backup at all: RED at any time
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": instance, "uri": "mongodb://127.0.0.1:1"}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        encryption={"passphrase_env": "UNUSED"},
        influx_url=services.url("influxdb"),
    )
    later = (datetime.now(UTC) + timedelta(hours=40)).isoformat()

    what_if = watchdog(plan_path=str(plan), at=later, return_state=True)
    assert what_if.is_completed(), what_if.message
    assert "what-if" in what_if.message and f"{instance}/*" in what_if.message and "no events" in what_if.message
    assert watchdog_main(["--plan", str(plan), "--at", later]) == 0
    assert "no events" in capsys.readouterr().out
    assert stale_points(services, instance) == []

    asked = watchdog(plan_path=str(plan), at=later, emit=True, return_state=True)
    assert asked.is_failed() and f"{instance}/*" in asked.message
    assert len(stale_points(services, instance)) == 1
    even_later = (datetime.now(UTC) + timedelta(hours=41)).isoformat()  # one time, one tag set: one point
    assert watchdog_main(["--plan", str(plan), "--at", even_later, "--emit"]) == 1
    assert len(stale_points(services, instance)) == 2
