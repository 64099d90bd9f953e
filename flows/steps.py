"""One line of the `flows.setup` report, shared by the setup steps and the automations."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One line of the report: what, and whether it was created, updated, already right, or is missing."""

    outcome: str  # created | updated | ok | MISSING | would create | would update
    what: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.outcome:<12} {self.what}" + (f": {self.detail}" if self.detail else "")


def _outcome(verb: str, check: bool) -> str:
    return f"would {verb}" if check else f"{verb}d"
