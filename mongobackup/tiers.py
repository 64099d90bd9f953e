"""Retention tiers: which tier a backup belongs to, and how long each tier is kept.

This module is the single source of truth for tiers. The object keys put the tier first (`daily/...`) so that
S3 lifecycle rules can expire each tier by prefix; those rules are generated from the same `TierPolicy`, so
a tier's name, prefix, retention and Glacier transition are spelled here and nowhere else.

The tier of a run is decided from the run's *scheduled* time, converted into the policy's timezone:

    yearly     1 January
    quarterly  1 April, 1 July, 1 October
    monthly    the 1st of every other month
    weekly     the configured weekday (Monday by default)
    daily      every other day

The first rule that matches wins (`PRECEDENCE`), so 1 January 2024, a Monday, is yearly and not weekly.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from typing import Literal

import pendulum
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mongobackup.glacier import GLACIER, TRANSITION_CLASSES


class Tier(StrEnum):
    """A retention tier; its value is the key prefix segment and the `tier` tag of events.

    Members are declared from the shortest-lived to the longest-lived; `PRECEDENCE` is the order in which the
    rules are tried.
    """

    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"


#: The order in which the tier rules are tried; the first match wins.
PRECEDENCE: tuple[Tier, ...] = (Tier.YEARLY, Tier.QUARTERLY, Tier.MONTHLY, Tier.WEEKLY, Tier.DAILY)

#: Months whose 1st is a quarterly backup (1 January is yearly, which outranks quarterly).
QUARTER_MONTHS = frozenset({4, 7, 10})

#: Tiers that stay in STANDARD unless the plan says otherwise: a daily backup lives a few days and Glacier
#: bills 90 days minimum.
GLACIER_EXEMPT = frozenset({Tier.DAILY})

Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[Weekday, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

DEFAULT_RETENTION_DAYS: dict[Tier, int] = {
    Tier.DAILY: 9,
    Tier.WEEKLY: 40,
    Tier.MONTHLY: 365,
    Tier.QUARTERLY: 2190,
    Tier.YEARLY: 43800,
}


def prefix_for(tier: Tier) -> str:
    """The key prefix segment of a tier, e.g. `daily/`: lifecycle rules filter on `<storage prefix><this>`."""
    return f"{Tier(tier).value}/"


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> pendulum.Timezone:
    # Loading a zone reads the tz database; a policy asks for the same one for every backup of a run.
    return pendulum.timezone(name)  # type: ignore[return-value]  # a name never yields a FixedTimezone


class TierPolicy(BaseModel):
    """The `tiers:` section of a backup plan: how a run's tier is chosen and how long each tier is kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: An IANA zone name (Europe/London). No default on purpose: the tier flips at local midnight, and a
    #: silent UTC default would put every backup near midnight in the wrong tier for most users.
    timezone: str
    weekly_day: Weekday = "monday"
    #: Days each tier is kept before S3 expires it; every tier must be listed.
    retention_days: dict[Tier, int] = Field(default_factory=lambda: dict(DEFAULT_RETENTION_DAYS))
    #: Days after which a backup of any tier but daily moves to Glacier. None: never (an S3 stand-in such as
    #: SeaweedFS or MinIO without a Glacier class).
    glacier_after_days: int | None = Field(default=9, ge=0)
    #: The storage class a tier moves to after glacier_after_days, where it differs from the default (GLACIER,
    #: i.e. Glacier Flexible Retrieval; none for daily): GLACIER_IR, DEEP_ARCHIVE, STANDARD_IA, or none.
    transition_class: dict[Tier, str] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        try:
            _zone(name)
        except Exception:  # pendulum raises InvalidTimezone, zoneinfo KeyError/ValueError for odd keys
            raise ValueError(f"unknown timezone {name!r}: give an IANA name such as Europe/London or UTC") from None
        return name

    @field_validator("weekly_day", mode="before")
    @classmethod
    def _lowercase_day(cls, value: object) -> object:
        # "Monday" and "monday" mean the same to a person writing YAML.
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("retention_days")
    @classmethod
    def _every_tier_positive(cls, days: dict[Tier, int]) -> dict[Tier, int]:
        # Lifecycle rules are generated per tier: a tier without a retention would keep its backups forever.
        missing = [t.value for t in Tier if t not in days]
        if missing:
            raise ValueError(f"every tier needs a retention; missing: {', '.join(missing)}")
        bad = [f"{t.value}={days[t]}" for t in Tier if days[t] < 1]
        if bad:
            raise ValueError(f"retention must be at least 1 day: {', '.join(bad)}")
        return {t: days[t] for t in Tier}  # a canonical order, whatever order the YAML used

    @field_validator("transition_class")
    @classmethod
    def _known_classes(cls, classes: dict[Tier, str]) -> dict[Tier, str]:
        normal = {tier: str(name).strip().upper() for tier, name in classes.items()}
        bad = [f"{t.value}={name}" for t, name in normal.items() if name != "NONE" and name not in TRANSITION_CLASSES]
        if bad:
            raise ValueError(f"unknown storage class {', '.join(bad)}: use none or {', '.join(TRANSITION_CLASSES)}")
        return {tier: ("none" if name == "NONE" else name) for tier, name in normal.items()}

    @model_validator(mode="after")
    def _glacier_before_expiry(self) -> TierPolicy:
        # S3 refuses a lifecycle rule whose transition is not before its expiration.
        if self.glacier_after_days is None:
            return self
        too_short = [
            f"{t.value} ({self.retention_days[t]})"
            for t in self.glacier_tiers()
            if self.retention_days[t] <= self.glacier_after_days
        ]
        if too_short:
            raise ValueError(
                f"glacier_after_days ({self.glacier_after_days}) must be less than the retention of "
                f"every tier but daily: {', '.join(too_short)}"
            )
        infrequent = [t.value for t in self.glacier_tiers() if self.storage_class_after(t) == "STANDARD_IA"]
        if infrequent and self.glacier_after_days < 30:
            # S3 refuses a transition to STANDARD_IA before 30 days.
            raise ValueError(
                f"transition_class STANDARD_IA ({', '.join(infrequent)}) needs glacier_after_days of 30 or more, "
                f"not {self.glacier_after_days}"
            )
        return self

    def tiers(self) -> Iterator[Tier]:
        """Every tier, shortest-lived first: what lifecycle rules are generated for."""
        return iter(Tier)

    def glacier_tiers(self) -> list[Tier]:
        """The tiers that move to another storage class after `glacier_after_days` (by default all but daily)."""
        return [t for t in Tier if self.storage_class_after(t) is not None]

    def storage_class_after(self, tier: Tier) -> str | None:
        """The class a backup of `tier` moves to (GLACIER unless the plan says otherwise), or None if it stays."""
        default = "none" if tier in GLACIER_EXEMPT else GLACIER
        name = self.transition_class.get(tier, default)
        return None if name == "none" else name

    def transition_days(self, tier: Tier) -> int | None:
        """Days before a backup of `tier` changes storage class, or None if it never does."""
        if self.glacier_after_days is None or self.storage_class_after(tier) is None:
            return None
        return self.glacier_after_days

    def local_time(self, when: datetime) -> datetime:
        """`when` in the policy's timezone; rejects naive datetimes, whose instant is unknowable."""
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(
                f"tier_for needs an aware datetime (with a timezone), got naive {when.isoformat()}; "
                "use the flow run's scheduled time or e.g. datetime.now(UTC)"
            )
        # astimezone with pendulum's Timezone (a ZoneInfo) is the instant-to-local conversion pendulum's own
        # in_timezone() performs, without wrapping every result in a pendulum.DateTime (5x cheaper).
        return when.astimezone(_zone(self.timezone))

    def tier_for(self, when: datetime) -> Tier:
        """The tier of a backup scheduled at the aware instant `when`; the rules are tried in PRECEDENCE order."""
        local = self.local_time(when)
        matches = {
            Tier.YEARLY: local.day == 1 and local.month == 1,
            Tier.QUARTERLY: local.day == 1 and local.month in QUARTER_MONTHS,
            Tier.MONTHLY: local.day == 1,
            Tier.WEEKLY: WEEKDAYS[local.weekday()] == self.weekly_day,
            Tier.DAILY: True,
        }
        return next(tier for tier in PRECEDENCE if matches[tier])
