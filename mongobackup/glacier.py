"""S3's archive storage classes: which need a thaw before a read, how long a thaw takes, and how long they bill.

An object in GLACIER (Flexible Retrieval) or DEEP_ARCHIVE cannot be read: GetObject answers InvalidObjectState
until a `RestoreObject` request has made a temporary copy ("thawed" it) for a number of days. The other classes
(STANDARD, STANDARD_IA, GLACIER_IR, INTELLIGENT_TIERING's instant tiers ...) read at once. A HEAD answers the
state of a thaw in its `x-amz-restore` header:

    (absent)                                                   never asked, or the copy has expired
    ongoing-request="true"                                     asked, not ready yet
    ongoing-request="false", expiry-date="Fri, 04 Dec ... GMT"  readable until the expiry date

The times and minimum billing durations below are AWS's published figures for the storage classes; the prices
live in the plan (`mongobackup.glacier_plan.PricePlan`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Literal

Retrieval = Literal["expedited", "standard", "bulk"]
RETRIEVALS: tuple[Retrieval, ...] = ("expedited", "standard", "bulk")

#: A storage class name as S3 spells it; "none" in a plan means "no transition, stays STANDARD".
StorageClass = str
STANDARD = "STANDARD"
GLACIER = "GLACIER"
DEEP_ARCHIVE = "DEEP_ARCHIVE"
GLACIER_IR = "GLACIER_IR"

#: Classes whose objects must be thawed (RestoreObject) before they can be read.
ARCHIVED_CLASSES = frozenset({GLACIER, DEEP_ARCHIVE})

#: Classes a tier may move to (lifecycle transitions); GLACIER is Glacier Flexible Retrieval.
TRANSITION_CLASSES: tuple[StorageClass, ...] = ("STANDARD_IA", GLACIER_IR, GLACIER, DEEP_ARCHIVE)

#: Days each class bills at least: an object deleted (or expired) sooner pays for the rest anyway.
MIN_BILLED_DAYS: dict[StorageClass, int] = {
    STANDARD: 0,
    "STANDARD_IA": 30,
    GLACIER_IR: 90,
    GLACIER: 90,
    DEEP_ARCHIVE: 180,
}

#: How long a thaw usually takes, as AWS documents it (objects under 250 MB for expedited).
TYPICAL_THAW: dict[tuple[StorageClass, Retrieval], str] = {
    (GLACIER, "expedited"): "1-5 minutes",
    (GLACIER, "standard"): "3-5 hours",
    (GLACIER, "bulk"): "5-12 hours",
    (DEEP_ARCHIVE, "standard"): "within 12 hours",
    (DEEP_ARCHIVE, "bulk"): "within 48 hours",
}

#: The longest a thaw usually takes, in hours: what a wait deadline should at least allow.
MAX_THAW_HOURS: dict[tuple[StorageClass, Retrieval], float] = {
    (GLACIER, "expedited"): 5 / 60,
    (GLACIER, "standard"): 5,
    (GLACIER, "bulk"): 12,
    (DEEP_ARCHIVE, "standard"): 12,
    (DEEP_ARCHIVE, "bulk"): 48,
}


class RetrievalUnavailable(ValueError):
    """The retrieval tier does not exist for the object's storage class (DEEP_ARCHIVE has no expedited)."""


def needs_thaw(storage_class: str | None) -> bool:
    """Whether an object of this class must be thawed before a read (None, as S3 omits it, is STANDARD)."""
    return (storage_class or STANDARD) in ARCHIVED_CLASSES


def typical_thaw(storage_class: str, retrieval: Retrieval) -> str:
    """How long a thaw of `storage_class` at `retrieval` usually takes; RetrievalUnavailable if it has none."""
    try:
        return TYPICAL_THAW[(storage_class, retrieval)]
    except KeyError:
        offered = ", ".join(r for c, r in TYPICAL_THAW if c == storage_class) or "none"
        raise RetrievalUnavailable(
            f"{storage_class} has no {retrieval} retrieval (it offers: {offered}); "
            f"choose one with --retrieval or restore.retrieval in the plan"
        ) from None


@dataclass(frozen=True)
class ThawState:
    """ThawState is what HEAD says about an object's readability: its class and the state of any thaw."""

    storage_class: str
    #: "none" (never asked, or expired), "ongoing" (asked, not ready) or "ready" (readable until `expires`).
    restore: Literal["none", "ongoing", "ready"] = "none"
    expires: datetime | None = None

    @property
    def archived(self) -> bool:
        return needs_thaw(self.storage_class)

    @property
    def readable(self) -> bool:
        """Whether a GetObject would succeed now."""
        return not self.archived or self.restore == "ready"

    def describe(self) -> str:
        """`STANDARD`, `GLACIER not thawed`, `GLACIER thawing`, `GLACIER thawed until 2026-12-04 09:36Z`."""
        if not self.archived:
            return self.storage_class
        if self.restore == "ongoing":
            return f"{self.storage_class} thawing"
        if self.restore == "ready":
            until = f" until {self.expires:%Y-%m-%d %H:%MZ}" if self.expires else ""
            return f"{self.storage_class} thawed{until}"
        return f"{self.storage_class} not thawed"


_ONGOING = re.compile(r'ongoing-request\s*=\s*"(true|false)"', re.IGNORECASE)
_EXPIRY = re.compile(r'expiry-date\s*=\s*"([^"]+)"', re.IGNORECASE)


def thaw_state(storage_class: str | None, restore_header: str | None) -> ThawState:
    """The ThawState of a HEAD reply's StorageClass and `x-amz-restore` (boto3's `Restore`) values."""
    cls = storage_class or STANDARD
    if not restore_header:
        return ThawState(cls)
    ongoing = _ONGOING.search(restore_header)
    if ongoing is None or ongoing.group(1).lower() == "true":
        return ThawState(cls, "ongoing")
    expiry = _EXPIRY.search(restore_header)
    expires = None
    if expiry is not None:
        try:
            expires = parsedate_to_datetime(expiry.group(1))
        except (TypeError, ValueError):
            expires = None  # an odd date does not make a readable object unreadable
    return ThawState(cls, "ready", expires)
