"""Prefect task of the fire drill's point-in-time part: pick a database with a window, drill it, report it.

The core is `mongobackup.pitr.drill.drill_point`; this picks the database (at random among those of the plan
with a restorable window), supplies the plan's resources, and writes the result as an `instance_restore_drill`
point tagged `tier=pitr`, beside the drills of the newest backups.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import TYPE_CHECKING

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mongobackup import metrics
from mongobackup.drill import scratch_database_name
from mongobackup.dump import open_client
from mongobackup.inventory import scan
from mongobackup.metrics import Event
from mongobackup.pitr.chain import scan_archive
from mongobackup.pitr.drill import PointDrill, drill_point
from mongobackup.pitr.point import bases, windows

if TYPE_CHECKING:  # the flow builds the resources and hands them in: tasks never import flows
    from flows.resources import RunResources

#: The `tier` tag of the point-in-time drill's event: its results sit beside the tiers' in the dashboards.
PITR_TIER = "pitr"


def candidates(resources: RunResources, instances: list[str] | None, rng: random.Random) -> list[tuple[str, str]]:
    """Every (instance, database) with a committed backup in the bucket, in random order."""
    storage, plan = resources.storage, resources.plan
    pairs = sorted(p for p in scan(storage, plan.storage.prefix).pairs() if not instances or p[0] in instances)
    rng.shuffle(pairs)
    return pairs


@task(name="drill-point-in-time", cache_policy=NO_CACHE)
def drill_point_in_time(resources: RunResources, run_id: str, instances: list[str] | None, seed: int) -> PointDrill:
    """Restores one database, chosen at random among those with a window, to a random second of it."""
    logger = get_run_logger()
    storage, plan = resources.storage, resources.plan
    rng = random.Random(seed)
    gpg, passphrase = resources.decryption()
    for instance, database in candidates(resources, instances, rng):
        archive = scan_archive(storage, plan.storage.prefix, instance)
        if not windows(archive, bases(storage, plan.storage.prefix, instance, database)):
            continue
        with open_client(resources.scratch_uri()) as client:
            drill = drill_point(
                storage,
                gpg,
                client,
                prefix=plan.storage.prefix,
                instance=instance,
                database=database,
                scratch_database=scratch_database_name(database, f"pitr{run_id}"),
                rng=rng,
                passphrase=passphrase,
            )
        logger.info("point-in-time drill: %s", drill.describe())
        return drill
    return PointDrill("*", "*", problems=["no database of the plan has a point-in-time window to drill"])


def point_drill_event(drill: PointDrill, when: datetime) -> Event:
    tags = {metrics.INSTANCE: drill.instance, metrics.TIER: PITR_TIER}
    if drill.database != "*":
        tags[metrics.DATABASE] = drill.database
    fields: dict[str, metrics.FieldValue] = {
        metrics.VALUE: drill.passed,
        metrics.DOCS: drill.documents,
        metrics.DURATION_S: round(drill.seconds, 3),
    }
    return Event(metrics.INSTANCE_RESTORE_DRILL.name, tags, fields, when)


@task(name="notify-point-drill", cache_policy=NO_CACHE)
def notify_point_drill(resources: RunResources, drill: PointDrill, when: datetime) -> int:
    sink = resources.event_sink
    if sink is None:
        return 0
    sink.write([point_drill_event(drill, when)])
    return 1
