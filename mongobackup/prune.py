"""Prune: delete the backups the tier policy expires, for stores that do not enforce lifecycle rules.

The same `TierPolicy` that generates the S3 lifecycle rules decides here, and a backup expires when S3 would
expire it: its tier's `retention_days` after its time, rounded up to the next midnight UTC (S3's rounding).
The time is the scheduled time in the key, which the backup flow writes, rather than the object's
LastModified: a backup's age is the age of its schedule slot, and a copied or restored bucket keeps it.

Two guarantees:
- The newest committed backup of every (instance, database) is never deleted, expired or not: a database
  whose backups stopped (decommissioned, or a broken schedule nobody noticed) keeps its last good copy.
  "Committed" is `inventory`'s rule (manifest and object); before relying on it, prune reads that backup's
  manifest and checks the object's size against it, stepping back to the next one when it fails, so that a
  manifest whose object is gone or was replaced can never stand in for the last intact backup.
- A committed backup is deleted manifest first, then object. An interrupted prune can leave an object
  without its manifest (uncommitted, invisible to restore and status, and deleted by the next prune because
  it is expired too) but never a manifest that promises a missing object.

Objects without a manifest (a run that died between upload and commit) are deleted once they are expired,
as S3's rule would; younger ones are left alone, since a backup may be committing right now.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from mongobackup.errors import StorageError, VerificationError
from mongobackup.inventory import Inventory, Pair, StoredBackup, load_manifest
from mongobackup.storage import Storage
from mongobackup.tiers import TierPolicy


class Verdict(StrEnum):
    KEEP = "keep"
    DELETE = "delete"
    #: Expired by the policy, kept because it is the newest committed backup of its database.
    KEEP_NEWEST = "keep-newest"


@dataclass(frozen=True)
class PruneDecision:
    """PruneDecision is what prune does to one backup, and why."""

    backup: StoredBackup
    verdict: Verdict
    expires_at: datetime

    def line(self, now: datetime) -> str:
        age_days = (now - self.backup.location.taken_at).total_seconds() / 86400
        what = ""
        if self.backup.orphaned:
            what = " (orphaned manifest: no object)"
        elif not self.backup.committed:
            what = " (uncommitted: no manifest)"
        return (
            f"{self.verdict.value:<11} {self.backup.location.stem}{what}: {age_days:.1f} days old, "
            f"expires {self.expires_at.isoformat()}"
        )


@dataclass(frozen=True)
class PruneReport:
    """PruneReport is every decision of one prune, and the keys it deleted (none in a dry run)."""

    now: datetime
    decisions: tuple[PruneDecision, ...]
    deleted_keys: tuple[str, ...]
    dry_run: bool

    def with_verdict(self, verdict: Verdict) -> list[PruneDecision]:
        return [d for d in self.decisions if d.verdict == verdict]

    def lines(self) -> list[str]:
        """The decisions worth reading: deletions and protected newest backups (not the many keeps)."""
        shown = [d.line(self.now) for d in self.decisions if d.verdict != Verdict.KEEP]
        kept = len(self.with_verdict(Verdict.KEEP))
        doing = "would delete" if self.dry_run else "deleted"
        summary = (
            f"prune at {self.now.isoformat()}: {doing} {len(self.with_verdict(Verdict.DELETE))} backups, "
            f"kept {kept} within retention and {len(self.with_verdict(Verdict.KEEP_NEWEST))} expired but "
            "newest of their database"
        )
        return [summary, *shown]


def expires_at(taken_at: datetime, retention_days: int) -> datetime:
    """When S3 would expire a backup: `retention_days` after `taken_at`, rounded up to midnight UTC."""
    due = taken_at.astimezone(UTC) + timedelta(days=retention_days)
    midnight = due.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight if midnight == due else midnight + timedelta(days=1)


#: Whether a committed backup is what its manifest says (read the manifest, compare the object's size).
Confirm = Callable[[StoredBackup], bool]


def decide(
    inventory: Inventory, policy: TierPolicy, now: datetime, confirm: Confirm = lambda backup: True
) -> list[PruneDecision]:
    """The verdict on every backup of the inventory at `now`; deletes nothing.

    The protected backup of each (instance, database) is its newest committed one that `confirm` accepts;
    when it accepts none, the newest committed one (nothing is deleted on a doubt about the newest).
    """
    if now.tzinfo is None:
        raise ValueError(f"prune needs an aware `now`, got naive {now.isoformat()}")
    due = {
        b.location: expires_at(b.location.taken_at, policy.retention_days[b.location.tier]) for b in inventory.backups
    }
    newest = {backup.location for backup in _protected(inventory, confirm, lambda b: now >= due[b.location])}
    return [
        PruneDecision(backup, _verdict(now < due[backup.location], backup.location in newest), due[backup.location])
        for backup in inventory.backups
    ]


def _protected(inventory: Inventory, confirm: Confirm, expired: Callable[[StoredBackup], bool]) -> list[StoredBackup]:
    by_pair: dict[Pair, list[StoredBackup]] = {}
    for backup in inventory.backups:
        by_pair.setdefault(backup.pair, []).append(backup)
    protected = []
    for backups in by_pair.values():
        newest_first = sorted((b for b in backups if b.committed), key=lambda b: b.order, reverse=True)
        if not newest_first:
            continue
        if not any(expired(b) for b in backups):  # nothing of this database goes: no manifest needs reading
            protected.append(newest_first[0])
            continue
        protected.append(next((b for b in newest_first if confirm(b)), newest_first[0]))
    return protected


def manifest_confirms(storage: Storage) -> Confirm:
    """A Confirm over the bucket: the manifest reads, describes the object beside it and records its size.

    A transient read failure is raised (prune must not guess); a permanent one means "not confirmed".
    """

    def confirm(backup: StoredBackup) -> bool:
        try:
            load_manifest(storage, backup.location, object_size=backup.object_size)
        except VerificationError:
            return False
        except StorageError as exc:
            if exc.transient:
                raise
            return False
        return True

    return confirm


def _verdict(within_retention: bool, newest: bool) -> Verdict:
    if within_retention:
        return Verdict.KEEP
    return Verdict.KEEP_NEWEST if newest else Verdict.DELETE


def keys_to_delete(backup: StoredBackup) -> list[str]:
    """The keys of a backup in the order they must go: the manifest (the commit) first, then the object."""
    keys = [backup.manifest_key] if backup.has_manifest else []
    return keys + ([backup.object_key] if backup.object_size is not None else [])


def prune(
    storage: Storage,
    inventory: Inventory,
    policy: TierPolicy,
    now: datetime,
    *,
    dry_run: bool = False,
    log: Callable[[str], None] = lambda line: None,
) -> PruneReport:
    """Deletes every backup `decide` condemns, manifest first; a dry run only reports.

    Stops at the first failed delete (the StorageError names the key): what was deleted stays deleted and
    consistent, and the next run picks up the rest.
    """
    decisions = decide(inventory, policy, now, manifest_confirms(storage))
    deleted: list[str] = []
    for decision in decisions:
        if decision.verdict != Verdict.DELETE:
            continue
        log(("would delete " if dry_run else "deleting ") + decision.backup.location.stem)
        if dry_run:
            continue
        for key in keys_to_delete(decision.backup):
            storage.delete(key)
            deleted.append(key)
    return PruneReport(now, tuple(decisions), tuple(deleted), dry_run)
