"""Prefect tasks of the retention flow: the bucket's lifecycle rules and settings, and prune.

Each body calls plain functions of `mongobackup.lifecycle`, `mongobackup.prune`, `mongobackup.uploads` and
`mongobackup.pitr.retention`. Retries (transient faults only) are safe: applying reads and merges again, and a
retried prune or sweep scans again and deletes what is left.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mongobackup import uploads
from mongobackup.inventory import scan
from mongobackup.lifecycle import (
    BucketSetting,
    LifecycleDiff,
    LockMode,
    apply_lifecycle,
    diff_lifecycle,
    enable_object_lock,
    enable_versioning,
)
from mongobackup.pitr.retention import SegmentPruneReport, oplog_rules, prune_plan_segments
from mongobackup.prune import PruneReport, prune

if TYPE_CHECKING:  # the flow builds the resources and hands them in: tasks never import flows
    from flows.resources import RunResources


@task(name="bucket-settings", cache_policy=NO_CACHE)
def bucket_settings(
    resources: RunResources,
    versioning: bool,
    object_lock_days: int | None,
    object_lock_mode: LockMode,
    dry_run: bool,
) -> list[BucketSetting]:
    """Versioning and Object Lock as asked; Object Lock implies versioning, which S3 requires for it."""
    storage, plan = resources.storage, resources.plan
    settings = []
    if versioning or object_lock_days is not None:
        settings.append(enable_versioning(storage, dry_run=dry_run))
    if object_lock_days is not None:
        settings.append(enable_object_lock(storage, plan.tiers, object_lock_days, object_lock_mode, dry_run=dry_run))
    for setting in settings:
        for line in setting.lines():
            get_run_logger().info("%s", line)
    return settings


@task(name="lifecycle", cache_policy=NO_CACHE)
def lifecycle(resources: RunResources, dry_run: bool) -> LifecycleDiff:
    """The policy's lifecycle rules merged into the bucket's (or only the diff, in a dry run)."""
    storage, plan = resources.storage, resources.plan
    diff = (diff_lifecycle if dry_run else apply_lifecycle)(storage, plan.tiers, plan.storage.prefix, oplog_rules(plan))
    for line in diff.lines():
        get_run_logger().info("%s", line)
    return diff


@task(name="abort-stale-uploads", cache_policy=NO_CACHE)
def abort_stale_uploads(resources: RunResources, dry_run: bool) -> list[str]:
    """Aborts (or, in a dry run, lists) open uploads of ours older than storage.abort_uploads_after_h."""
    lines: list[str] = []
    plan = resources.plan
    uploads.abort_stale_uploads(
        resources.storage,
        plan.storage.prefix,
        datetime.now(UTC),
        timedelta(hours=plan.storage.abort_uploads_after_h),
        dry_run=dry_run,
        log=lines.append,
    )
    for line in lines:
        get_run_logger().info("%s", line)
    return lines


@task(name="prune", cache_policy=NO_CACHE)
def prune_expired(resources: RunResources, now: datetime, dry_run: bool) -> PruneReport:
    """Scans the bucket and deletes the backups the policy expires at `now`, manifest first."""
    logger = get_run_logger()
    storage, plan = resources.storage, resources.plan
    inventory = scan(storage, plan.storage.prefix)
    if inventory.foreign:
        logger.warning(
            "%d keys under the tier prefixes are not backups of ours and are left alone, e.g. %s",
            len(inventory.foreign),
            inventory.foreign[0],
        )
    report = prune(storage, inventory, plan.tiers, now, dry_run=dry_run, log=logger.info)
    for line in report.lines():
        logger.info("%s", line)
    return report


@task(name="prune-oplog", cache_policy=NO_CACHE)
def prune_oplog(resources: RunResources, now: datetime, dry_run: bool) -> SegmentPruneReport | None:
    """Deletes archived oplog segments no kept base backup needs (None: the plan archives no oplog)."""
    logger = get_run_logger()
    storage, plan = resources.storage, resources.plan
    report = prune_plan_segments(
        storage, scan(storage, plan.storage.prefix), plan, now, dry_run=dry_run, log=logger.info
    )
    for line in report.lines() if report else []:
        logger.info("%s", line)
    return report
