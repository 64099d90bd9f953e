"""The roster: which databases each instance had when a backup run last listed it, recorded in the bucket.

Status reads only the bucket, and a bucket cannot say what is missing from it: with `databases: all`, a
database whose backups were all deleted (by hand, a bad rule, a prune bug) would simply not be expected any
more, and read GREEN by omission. So each backup run, after listing an instance with `databases: all`
(an instance with a list needs none: status expects the list), writes

    <prefix>roster/<instance>.json   {"format": 1, "instance", "databases": [...], "listed_at", "run_id"}

one small JSON object per instance, replaced by every run (`databases`: every name listDatabases gave,
system databases included; status applies the plan's rules). Status expects the roster's databases plus every
database with a committed backup, minus excludes and system databases: a database that lost its backups is
RED by name. A database dropped on purpose leaves the roster at the next run (its old backups keep it
expected until they expire or it is excluded). The key is outside the tier prefixes, so neither lifecycle
rules nor prune ever touch it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from mongobackup.storage import Storage

ROSTER_DIR = "roster/"
ROSTER_FORMAT = 1


def roster_key(prefix: str, instance: str) -> str:
    return f"{prefix}{ROSTER_DIR}{instance}.json"


@dataclass(frozen=True)
class Roster:
    """Roster is the databases one instance had at `listed_at`, as run `run_id` listed them."""

    instance: str
    databases: tuple[str, ...]
    listed_at: datetime
    run_id: str

    def to_json_dict(self) -> dict[str, object]:
        return {
            "format": ROSTER_FORMAT,
            "instance": self.instance,
            "databases": list(self.databases),
            "listed_at": self.listed_at.isoformat(),
            "run_id": self.run_id,
        }

    @classmethod
    def from_json_dict(cls, data: dict[str, object], *, key: str) -> Roster:
        """A roster read back; ValueError naming the key when it is not one of ours (or of a newer format)."""
        if data.get("format") != ROSTER_FORMAT:
            raise ValueError(f"{key}: roster format {data.get('format')!r}, this version reads {ROSTER_FORMAT}")
        databases = data.get("databases")
        if not isinstance(databases, list) or not all(isinstance(name, str) for name in databases):
            raise ValueError(f"{key}: `databases` is not a list of names")
        try:
            listed_at = datetime.fromisoformat(str(data["listed_at"]))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{key}: no valid `listed_at`: {exc}") from None
        return cls(str(data.get("instance")), tuple(databases), listed_at, str(data.get("run_id", "")))


def record_roster(
    storage: Storage, prefix: str, instance: str, databases: Iterable[str], listed_at: datetime, run_id: str
) -> Roster:
    """Writes (replaces) the instance's roster; returns it."""
    roster = Roster(instance, tuple(sorted(databases)), listed_at, run_id)
    storage.put_json(roster_key(prefix, instance), roster.to_json_dict())
    return roster


def read_roster(storage: Storage, prefix: str, instance: str) -> Roster | None:
    """The instance's roster, or None when no run has recorded one yet; ValueError when it is unreadable."""
    key = roster_key(prefix, instance)
    if storage.head(key) is None:
        return None
    return Roster.from_json_dict(storage.get_json(key), key=storage.where(key))
