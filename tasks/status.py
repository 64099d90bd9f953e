"""Prefect tasks of the watchdog flow: read the status from the bucket, write `instance_backup_stale` events."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mongobackup.status import StatusReport, read_status, stale_events

if TYPE_CHECKING:  # the flow builds the resources and hands them in: tasks never import flows
    from flows.resources import RunResources


@task(name="read-status", cache_policy=NO_CACHE)
def read_backup_status(resources: RunResources, now: datetime, max_age_h: float | None) -> StatusReport:
    """The newest committed backup of each expected (instance, database), judged at `now`."""
    report = read_status(resources.storage, resources.plan, now, max_age_h)
    get_run_logger().info("status of s3://%s:\n%s", report.bucket, report.table())
    return report


@task(name="write-stale-events", cache_policy=NO_CACHE)
def write_stale_events(resources: RunResources, report: StatusReport) -> int:
    """One `instance_backup_stale` event per RED row and one `instance_oplog_lag` per RED recovery point; the
    number written (0 without a notify section)."""
    events = stale_events(report)
    sink = resources.event_sink
    if sink is None:
        get_run_logger().warning("plan has no notify section: %d stale backups are not written as events", len(events))
        return 0
    sink.write(events)
    return len(events)
