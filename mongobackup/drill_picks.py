"""Which archived backups the monthly drill restores, beside the newest backup of every database.

The newest backup of a database is almost always a daily one, in STANDARD. The backups a long retention policy
is for (weekly, monthly, quarterly, yearly) sit in Glacier after `glacier_after_days`, and only a restore proves
they thaw, decrypt and restore. So per tier with backups, the drill also restores one of them, picked by rule:

    weekly                       the oldest (deepest in Glacier, the next to expire)
    monthly, quarterly, yearly   the newest one old enough to be archived (older than glacier_after_days);
                                 the newest of the tier when none is

and in rotation over the (instance, database) pairs that have backups in that tier: month N of the drill picks
pair N mod count (pairs sorted by name), so over the months every database's archives are proven.

The thaw run, the day before the drill, must pick the very same backups: picks are made "as of" the drill's
time (the thaw run passes its time plus a day), the rotation counts months of that time in the plan's timezone,
and a backup that would expire within a day of it is never picked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from mongobackup.inventory import StoredBackup
from mongobackup.tiers import Tier, TierPolicy

#: Tiers the drill proves with an archived pick; daily is proven by the newest backups.
ARCHIVED_TIERS: tuple[Tier, ...] = (Tier.WEEKLY, Tier.MONTHLY, Tier.QUARTERLY, Tier.YEARLY)
#: A pick must outlive the drill by this much (lifecycle expires on a day boundary).
SAFETY = timedelta(days=1)


@dataclass(frozen=True)
class DrillPick:
    """DrillPick is one backup the drill restores, and why this one: `newest`, `oldest weekly`, ..."""

    backup: StoredBackup
    reason: str

    @property
    def tier(self) -> Tier:
        return self.backup.location.tier


def rotation_index(policy: TierPolicy, as_of: datetime) -> int:
    """The drill's month as a counter (year * 12 + month, in the plan's timezone): picks pair N mod count."""
    local = policy.local_time(as_of)
    return local.year * 12 + local.month - 1


def archived_picks(backups: Iterable[StoredBackup], policy: TierPolicy, as_of: datetime) -> list[DrillPick]:
    """One committed backup per archived tier that has any, by the rule and rotation above; tier order."""
    committed = [b for b in backups if b.committed and not _expires_soon(b, policy, as_of)]
    index = rotation_index(policy, as_of)
    picks = []
    for tier in ARCHIVED_TIERS:
        in_tier = [b for b in committed if b.location.tier == tier]
        pairs = sorted({b.pair for b in in_tier})
        if not pairs:
            continue
        pair = pairs[index % len(pairs)]
        picks.append(_pick(tier, [b for b in in_tier if b.pair == pair], policy, as_of))
    return picks


def _pick(tier: Tier, backups: Sequence[StoredBackup], policy: TierPolicy, as_of: datetime) -> DrillPick:
    ordered = sorted(backups, key=lambda b: b.order)
    if tier == Tier.WEEKLY:
        return DrillPick(ordered[0], "oldest weekly")
    after = policy.transition_days(tier)
    if after is not None:
        archived = [b for b in ordered if b.location.taken_at <= as_of - timedelta(days=after)]
        if archived:
            return DrillPick(archived[-1], f"newest archived {tier.value}")
    return DrillPick(ordered[-1], f"newest {tier.value}")


def _expires_soon(backup: StoredBackup, policy: TierPolicy, as_of: datetime) -> bool:
    location = backup.location
    return location.taken_at + timedelta(days=policy.retention_days[location.tier]) <= as_of + SAFETY
