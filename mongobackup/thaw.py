"""Thawing a backup that lifecycle rules moved to Glacier, before it is read.

    HEAD -> GLACIER / DEEP_ARCHIVE, not thawed -> RestoreObject (retrieval tier, days) -> HEAD ... -> readable

An object in an instant class (STANDARD, GLACIER_IR ...) needs nothing. One already thawing or thawed (its
`x-amz-restore` header says so) is never asked again: a second request would cost a second retrieval fee and
could shorten nothing. Waiting has a deadline; when it passes, `ThawTimeout` names the object, the class and
the retrieval tier, and nothing has been read or written: the thaw goes on at S3, and a later restore (or the
drill the day after a thaw run) finds the object readable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from mongobackup.errors import BackupError, StorageError
from mongobackup.glacier import Retrieval, ThawState, thaw_state, typical_thaw
from mongobackup.glacier_plan import PricePlan, RestorePlan
from mongobackup.storage import Storage


class ThawTimeout(BackupError):
    """An archived backup did not become readable before the deadline; the message names key and retrieval."""

    def __init__(self, message: str):
        super().__init__(message)
        self.transient = False  # waiting again is a new decision (and maybe a faster tier), not a retry


@dataclass(frozen=True)
class ThawSettings:
    """ThawSettings is how to thaw: retrieval tier, days the copy is kept, and how long to wait for it."""

    retrieval: Retrieval = "standard"
    days: int = 3
    wait_s: float = 12 * 3600
    poll_s: float = 60.0
    #: False: never ask for a thaw (the drill: a run the day before asks); an archived object not asked for fails.
    ask: bool = True

    @classmethod
    def from_plan(
        cls, plan: RestorePlan, retrieval: Retrieval | None = None, wait_s: float | None = None, ask: bool = True
    ) -> ThawSettings:
        """The plan's `restore:` section, with a command line's --retrieval (and wait) taking precedence."""
        return cls(
            retrieval=retrieval or plan.retrieval,
            days=plan.thaw_days,
            wait_s=plan.thaw_wait_h * 3600 if wait_s is None else wait_s,
            poll_s=plan.thaw_poll_s,
            ask=ask,
        )


@dataclass(frozen=True)
class Thawing:
    """Thawing is what a download does before its GET when the object may be archived: the settings, where the
    progress lines go, and the prices that say what a thaw costs."""

    settings: ThawSettings
    say: Callable[[str], None] = lambda line: None
    prices: PricePlan | None = None

    def ensure(self, storage: Storage, key: str) -> ThawOutcome:
        return ensure_thawed(storage, key, self.settings, say=self.say, prices=self.prices)


@dataclass(frozen=True)
class ThawOutcome:
    """ThawOutcome is what a thaw did for one object: its state before and after, and the time waited."""

    key: str
    before: ThawState
    after: ThawState
    requested: bool = False
    retrieval: Retrieval | None = None
    waited_s: float = 0.0
    size: int = 0  # of the object, for the price of its thaw
    days: int = 0  # the thawed copy is kept this long

    def describe(self, prices: PricePlan | None = None) -> str:
        """One line for a person: what was asked (or why nothing was), and where the object is now."""
        if not self.before.archived:
            return f"{self.before.storage_class}, readable without a thaw"
        if self.requested:
            cls, retrieval = self.before.storage_class, self.retrieval or "standard"
            cost = prices.thaw_cost(cls, retrieval, self.size) if prices is not None else None
            price = f", about {prices.money(cost)} at {prices.region} prices" if prices and cost is not None else ""
            return (
                f"{cls}, asked for a {retrieval} thaw for {self.days} days (usually {typical_thaw(cls, retrieval)}"
                f"{price}); now {self.after.describe()}"
            )
        return f"{self.before.describe()}, not asked again; now {self.after.describe()}"


def object_thaw_state(storage: Storage, key: str) -> ThawState:
    """The storage class and thaw state of `key` (one HEAD); StorageError when it does not exist."""
    return _look(storage, key)[0]


def _look(storage: Storage, key: str) -> tuple[ThawState, int]:
    info = storage.head(key)
    if info is None:
        raise StorageError(f"{storage.where(key)}: no such object")
    return thaw_state(info.storage_class, info.restore), info.size


def request_thaw(storage: Storage, key: str, settings: ThawSettings) -> ThawOutcome:
    """Asks for a thaw when `key` is archived and neither thawing nor thawed; returns at once."""
    before, size = _look(storage, key)
    if not before.archived or before.restore != "none":
        return ThawOutcome(key, before, before, size=size)
    typical_thaw(before.storage_class, settings.retrieval)  # RetrievalUnavailable before anything is asked
    taken = storage.request_restore(key, settings.days, settings.retrieval)
    after = object_thaw_state(storage, key)
    return ThawOutcome(key, before, after, taken, settings.retrieval, size=size, days=settings.days)


def ensure_thawed(
    storage: Storage,
    key: str,
    settings: ThawSettings,
    *,
    say: Callable[[str], None] = lambda line: None,
    sleep: Callable[[float], None] = time.sleep,
    prices: PricePlan | None = None,
) -> ThawOutcome:
    """Makes `key` readable: asks for a thaw if needed, then waits (a HEAD every `poll_s`) until it is, at
    most `wait_s`; ThawTimeout naming key, class and retrieval tier when the deadline passes first.

    `say` gets what was asked and how long it usually takes, then one progress line per look. With
    `settings.ask` False (the drill, whose thaws a run the day before asks for) nothing is asked: an archived
    object that nobody asked to thaw fails at once, by name.
    """
    started = time.monotonic()
    if not settings.ask:
        state = object_thaw_state(storage, key)
        if state.archived and state.restore == "none":
            raise ThawTimeout(
                f"{storage.where(key)}: {state.describe()} and no thaw asked for (the drill's thaw run, deployment "
                f"firedrill/thaw, asks the day before; or the thawed copy has expired): nothing was read or "
                f"written. Ask now: python -m flows.restore --plan PLAN --instance I --database D --key {key} "
                f"--thaw-only"
            )
    outcome = request_thaw(storage, key, settings)
    if outcome.after.readable:
        if outcome.before.archived:
            say(f"{key}: {outcome.describe(prices)}")
        return outcome
    retrieval = outcome.retrieval or settings.retrieval
    usual = typical_thaw(outcome.before.storage_class, retrieval)
    say(f"{key}: {outcome.describe(prices)}; waiting up to {_hours(settings.wait_s)}")
    state = outcome.after
    while not state.readable:
        waited = time.monotonic() - started
        if waited >= settings.wait_s:
            asked = "asked now" if outcome.requested else "asked before"
            raise ThawTimeout(
                f"{storage.where(key)}: still {state.describe()} after {_hours(waited)} (retrieval "
                f"{retrieval}, {asked}; usually {usual}): nothing was read or written. The thaw goes on at "
                f"S3: restore again later, or plan ahead with --thaw-only (restore.thaw_wait_h sets the wait)"
            )
        sleep(min(settings.poll_s, max(settings.wait_s - waited, 0.0)))
        state = object_thaw_state(storage, key)
        say(f"{key}: {state.describe()}, {_hours(time.monotonic() - started)} of {_hours(settings.wait_s)}")
    waited = time.monotonic() - started
    return ThawOutcome(key, outcome.before, state, outcome.requested, retrieval, waited, outcome.size, outcome.days)


def _hours(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
