"""What the tier policy costs: each tier's storage class checked against the classes' minimum billing, and the
bytes each tier holds now with their monthly storage cost. Shown by `python -m flows.retention --dry-run`.

Glacier Flexible Retrieval bills 90 days at least (Deep Archive 180, Glacier Instant Retrieval 90): a backup
that moves to GLACIER at 9 days and expires at 40 pays for 90 days of GLACIER, not 31. The lint says so per
tier, with what one GB of one backup costs over its life under the plan's setting and under the others (no
transition, GLACIER_IR, GLACIER, DEEP_ARCHIVE at the same day), and names the cheaper ones as the plan setting
that gives them. Costs come from the plan's price table (`prices:`, default AWS us-east-1 list prices).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mongobackup.glacier import DEEP_ARCHIVE, GLACIER, GLACIER_IR, MIN_BILLED_DAYS, STANDARD
from mongobackup.glacier_plan import GIB, PricePlan
from mongobackup.keys import OBJECT_SUFFIX
from mongobackup.storage import ObjectInfo, Storage
from mongobackup.tiers import Tier, TierPolicy, prefix_for

#: S3 bills storage per GB-month; a month here is 30 days.
DAYS_PER_MONTH = 30
#: Alternatives the lint prices for every tier: None is "no transition" (STANDARD until it expires).
ALTERNATIVES: tuple[str | None, ...] = (None, GLACIER_IR, GLACIER, DEEP_ARCHIVE)
#: An alternative is named as cheaper only when it saves more than this fraction (prices are estimates).
CHEAPER_BY = 0.02
_WHY = {GLACIER_IR: "reads without a thaw", GLACIER: "thaws take hours", DEEP_ARCHIVE: "thaws take up to 48 h"}


def lifetime_cost_per_gb(prices: PricePlan, retention_days: int, after_days: int | None, to_class: str | None) -> float:
    """What one GB of one backup costs from upload to expiry: STANDARD until `after_days`, then `to_class`,
    billed for at least its minimum duration."""
    if to_class is None or after_days is None:
        return prices.storage(STANDARD) * retention_days / DAYS_PER_MONTH
    billed = max(retention_days - after_days, MIN_BILLED_DAYS.get(to_class, 0))
    return (prices.storage(STANDARD) * after_days + prices.storage(to_class) * billed) / DAYS_PER_MONTH


@dataclass(frozen=True)
class TierLint:
    """TierLint is one tier's setting, its cost per GB over a backup's life, and what the lint found."""

    tier: Tier
    storage_class: str | None  # None: stays STANDARD
    after_days: int | None
    retention_days: int
    cost_per_gb: float
    #: (alternative class or None for "no transition", its cost per GB) for the other settings.
    alternatives: tuple[tuple[str | None, float], ...] = ()
    #: The minimum-billing finding, or "" when the tier keeps its backups long enough.
    finding: str = ""

    @property
    def cheaper(self) -> list[tuple[str | None, float]]:
        """Alternatives that save more than CHEAPER_BY, cheapest first."""
        found = [(c, cost) for c, cost in self.alternatives if cost < self.cost_per_gb * (1 - CHEAPER_BY)]
        return sorted(found, key=lambda item: item[1])

    @property
    def ok(self) -> bool:
        """No minimum-billing waste (a cheaper class that thaws slower is an option, not a fault)."""
        return not self.finding

    def setting(self) -> str:
        if self.storage_class is None or self.after_days is None:
            return f"STANDARD, expires at {self.retention_days} days"
        return f"{self.storage_class} after {self.after_days} days, expires at {self.retention_days} days"

    def lines(self, prices: PricePlan) -> list[str]:
        head = f"{self.tier.value:<9} {self.setting()}: {prices.money(self.cost_per_gb)} per GB of a backup"
        cheaper = self.cheaper
        if self.ok:
            return [f"  ok {head}"] + ([f"      option: {self._suggestion(cheaper[0])}"] if cheaper else [])
        others = "; ".join(f"{_name(c)} {prices.money(cost)}" + _why(c) for c, cost in self.alternatives)
        lines = [f"  ! {head}", f"      {self.finding}", f"      per GB over a backup's life instead: {others}"]
        if cheaper:
            lines.append(f"      cheaper: {self._suggestion(cheaper[0])}")
        else:
            lines.append("      still the cheapest of these at the plan's prices: keep it, or trade cost for speed")
        return lines

    def _suggestion(self, option: tuple[str | None, float]) -> str:
        best, cost = option
        saving = 1 - cost / self.cost_per_gb if self.cost_per_gb else 0.0
        return f"tiers.transition_class: {{{self.tier.value}: {_setting(best)}}} (-{saving:.0%}{_why(best, ', ')})"


def lint_policy(policy: TierPolicy, prices: PricePlan) -> list[TierLint]:
    """Each tier's storage-class setting priced and checked against minimum billing, shortest-lived first."""
    return [_lint_tier(policy, prices, tier) for tier in policy.tiers()]


def _lint_tier(policy: TierPolicy, prices: PricePlan, tier: Tier) -> TierLint:
    retention = policy.retention_days[tier]
    after = policy.transition_days(tier)
    to_class = policy.storage_class_after(tier) if after is not None else None
    cost = lifetime_cost_per_gb(prices, retention, after, to_class)
    finding = ""
    if to_class is not None and after is not None:
        minimum = MIN_BILLED_DAYS.get(to_class, 0)
        kept = retention - after
        if kept < minimum:
            finding = (
                f"moves to {to_class} at {after} days and expires at {retention}: {to_class} bills {minimum} "
                f"days minimum, so each backup pays for {minimum} days of {to_class}, not {kept}"
            )
    # Without glacier_after_days the store has no archive classes (SeaweedFS, MinIO): only "none" is possible.
    day = policy.glacier_after_days
    choices = [c for c in ALTERNATIVES if c != to_class and (c is None or day is not None)]
    alternatives = tuple((c, lifetime_cost_per_gb(prices, retention, day, c)) for c in choices)
    return TierLint(tier, to_class, after, retention, cost, alternatives, finding)


def _name(storage_class: str | None) -> str:
    return "no transition" if storage_class is None else storage_class


def _setting(storage_class: str | None) -> str:
    return "none" if storage_class is None else storage_class


def _why(storage_class: str | None, joint: str = "") -> str:
    if storage_class not in _WHY:
        return ""
    return f"{joint}{_WHY[storage_class]}" if joint else f" ({_WHY[storage_class]})"


# ---------------------------------------------------------------------------------------------------------
# What the bucket holds now


@dataclass
class TierBytes:
    """TierBytes is what one tier holds now: backups, bytes by storage class, and their monthly cost."""

    tier: Tier
    backups: int = 0
    by_class: dict[str, int] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(self.by_class.values())

    def monthly_cost(self, prices: PricePlan) -> float:
        return sum(prices.storage(cls) * size / GIB for cls, size in self.by_class.items())


def bytes_by_tier(listing: Iterable[tuple[Tier, ObjectInfo]]) -> list[TierBytes]:
    """Per tier, the objects of a listing (backup objects and manifests) by storage class; every tier listed."""
    tiers = {tier: TierBytes(tier) for tier in Tier}
    for tier, info in listing:
        row = tiers[tier]
        cls = info.storage_class or STANDARD
        row.by_class[cls] = row.by_class.get(cls, 0) + info.size
        row.backups += info.key.endswith(OBJECT_SUFFIX)
    return list(tiers.values())


def stored_by_tier(storage: Storage, prefix: str) -> list[TierBytes]:
    """What each tier prefix of the bucket holds now (one LIST per 1,000 keys; no object is read)."""
    return bytes_by_tier((tier, info) for tier in Tier for info in storage.list_keys(prefix + prefix_for(tier)))


def cost_lines(rows: Iterable[TierBytes], prices: PricePlan, where: str) -> list[str]:
    """The cost table of the retention dry run."""
    rows = list(rows)
    lines = [
        f"stored now in {where}, monthly storage at {prices.region} list prices of {prices.as_of} ({prices.currency}):",
        f"  {'TIER':<9} {'BACKUPS':>7} {'BYTES':>17} {'GiB':>10} {'MONTHLY':>10}  BY STORAGE CLASS",
    ]
    for row in rows:
        classes = ", ".join(f"{cls} {size / GIB:.3f} GiB" for cls, size in sorted(row.by_class.items())) or "-"
        lines.append(
            f"  {row.tier.value:<9} {row.backups:>7} {row.bytes:>17,} {row.bytes / GIB:>10.3f} "
            f"{prices.money(row.monthly_cost(prices)):>10}  {classes}"
        )
    total = sum(row.bytes for row in rows)
    cost = sum(row.monthly_cost(prices) for row in rows)
    backups = sum(row.backups for row in rows)
    lines.append(f"  {'total':<9} {backups:>7} {total:>17,} {total / GIB:>10.3f} {prices.money(cost):>10}")
    return lines


def lint_lines(policy: TierPolicy, prices: PricePlan) -> list[str]:
    """The lint of the retention dry run: one line per tier that is fine, a few per tier that is not."""
    head = (
        f"tier policy lint (what one GB of one backup costs from upload to expiry, at {prices.region} list prices "
        f"of {prices.as_of}, {prices.currency}):"
    )
    return [head] + [line for lint in lint_policy(policy, prices) for line in lint.lines(prices)]
