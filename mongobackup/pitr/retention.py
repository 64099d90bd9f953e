"""How long archived oplog is kept: a lifecycle rule from the tier policy, and prune where lifecycle is missing.

Point-in-time restores reach back as far as the daily tier keeps its backups, so segments are kept for the
daily tier's `retention_days` too: a daily base backup taken at t needs the segments written after t, and
each of those is younger than the base, so it outlives it. One lifecycle rule on `<prefix>oplog/` does that
on a store that enforces rules.

Prune (for stores that do not) deletes a segment only when both hold:
  - it is expired: older than the daily tier's days by its last entry's time (rounded up to midnight UTC,
    as S3 rounds), and
  - no kept base backup needs it: it ends before the consistent point of the newest committed backup of every
    database of its instance. Prune keeps the newest backup of a database however old (see prune.py); the
    segments after it are kept with it, so a database whose backups stopped keeps its window too.
A segment is deleted manifest first, then object, like a backup. Leftovers (an object never committed, a
manifest whose object is gone) go once expired; a gap marker goes once no segment before it is left.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from bson import Timestamp

from mongobackup.inventory import Inventory, load_manifest
from mongobackup.lifecycle import ABORT_INCOMPLETE_MULTIPART_DAYS, RULE_ID_PREFIX, Rule
from mongobackup.pitr.chain import OplogArchive, StoredSegment, scan_archive
from mongobackup.pitr.keys import OPLOG_PREFIX, gap_key, ts_datetime
from mongobackup.plan import BackupPlan
from mongobackup.prune import expires_at
from mongobackup.storage import Storage
from mongobackup.tiers import Tier, TierPolicy


def oplog_retention_days(policy: TierPolicy) -> int:
    return policy.retention_days[Tier.DAILY]


def oplog_rule(policy: TierPolicy, prefix: str = "") -> Rule:
    """The lifecycle rule of the archived oplog: expire after the daily tier's days, never to Glacier
    (a restore reads every segment after its base; Glacier would make that take hours)."""
    days = oplog_retention_days(policy)
    base = f"{RULE_ID_PREFIX}oplog"
    return {
        "ID": f"{base}:{prefix}" if prefix else base,
        "Filter": {"Prefix": prefix + OPLOG_PREFIX},
        "Status": "Enabled",
        "Expiration": {"Days": days},
        "NoncurrentVersionExpiration": {"NoncurrentDays": days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_INCOMPLETE_MULTIPART_DAYS},
    }


@dataclass(frozen=True)
class SegmentPruneReport:
    """What a prune of the archived oplog deleted (or would delete), and what it kept because a base needs it."""

    deleted: tuple[str, ...]
    kept_needed: int  # expired, kept because the newest base backup of some database needs it
    dry_run: bool

    def lines(self) -> list[str]:
        doing = "would delete" if self.dry_run else "deleted"
        return [
            f"oplog prune: {doing} {len(self.deleted)} keys; kept {self.kept_needed} expired segments a base "
            "backup still needs",
            *(f"  {key}" for key in self.deleted),
        ]


def needed_from(storage: Storage, inventory: Inventory, instance: str) -> Timestamp | None:
    """The oldest consistent point among the newest committed backups of the instance's databases: segments
    ending after it are needed. None when no backup of the instance has an oplog window."""
    points = []
    for (owner, _database), backup in inventory.newest_committed().items():
        if owner != instance:
            continue
        manifest = load_manifest(storage, backup.location, object_size=backup.object_size)
        if manifest.oplog is not None:
            points.append(Timestamp(*manifest.oplog.end))
    return min(points, default=None)


def condemned(
    archive: OplogArchive, policy: TierPolicy, now: datetime, needed: Timestamp | None
) -> tuple[list[str], int]:
    """The keys prune deletes from one instance's archive, in order, and how many expired segments it keeps."""
    days = oplog_retention_days(policy)

    def expired(segment: StoredSegment) -> bool:
        return expires_at(ts_datetime(segment.last), days) <= now

    keys: list[str] = []
    kept = 0
    remaining: list[StoredSegment] = []
    for segment in archive.segments:
        if not expired(segment):
            remaining.append(segment)
        elif needed is not None and segment.last >= needed:
            kept += 1
            remaining.append(segment)
        else:
            keys += [segment.location.manifest_key, segment.location.object_key]
    for leftover in archive.leftovers:
        if expired(leftover):
            keys += [leftover.location.manifest_key] if leftover.committed else []
            keys += [leftover.location.object_key] if leftover.object_size is not None else []
    oldest = min((s.first for s in remaining), default=None)
    keys += [gap_key(archive.prefix, archive.instance, gap) for gap in archive.gaps if oldest is None or gap <= oldest]
    return keys, kept


def prune_segments(
    storage: Storage,
    inventory: Inventory,
    policy: TierPolicy,
    instances: Sequence[str],
    now: datetime,
    *,
    dry_run: bool = False,
    log: Callable[[str], None] = lambda line: None,
) -> SegmentPruneReport:
    """Deletes what `condemned` finds in each instance's archive; stops at the first failed delete."""
    archives: Mapping[str, OplogArchive] = {i: scan_archive(storage, inventory.prefix, i) for i in instances}
    deleted: list[str] = []
    kept_total = 0
    for instance, archive in archives.items():
        keys, kept = condemned(archive, policy, now, needed_from(storage, inventory, instance))
        kept_total += kept
        for key in keys:
            log(("would delete " if dry_run else "deleting ") + key)
            if not dry_run:
                storage.delete(key)
            deleted.append(key)
    return SegmentPruneReport(tuple(deleted), kept_total, dry_run)


def oplog_rules(plan: BackupPlan) -> list[Rule]:
    """The plan's lifecycle rules for the archived oplog: one when it has a `pitr` section, else none."""
    return [] if plan.pitr is None else [oplog_rule(plan.tiers, plan.storage.prefix)]


def prune_plan_segments(
    storage: Storage,
    inventory: Inventory,
    plan: BackupPlan,
    now: datetime,
    *,
    dry_run: bool = False,
    log: Callable[[str], None] = lambda line: None,
) -> SegmentPruneReport | None:
    """`prune_segments` over the plan's instances; None when the plan archives no oplog."""
    if plan.pitr is None:
        return None
    return prune_segments(storage, inventory, plan.tiers, plan.instance_names, now, dry_run=dry_run, log=log)
