"""Staging collections of a restore: reserved names in the target database, the run's lease, and the sweep.

A restore writes every collection under a staging name in the target database, verifies it there, and only
then moves it into place (`restore_writer`). Staging names share one reserved prefix and carry the run's id:

    __restore_<run id>                        the run's lease: one document (host, pid, source, heartbeat)
    __restore_<run id>_<hash>_<collection>    one collection being restored (the name cut to fit)

`<hash>` is the first 8 hex digits of the SHA-256 of the final collection name: the readable part is cut
(on a character boundary) so that `<database>.<staging name>` never exceeds MongoDB's 255-byte namespace
limit, and two long names that share a beginning still get two staging collections.

The lease says whether the run that owns a set of staging collections is still alive: its process updates
the heartbeat every HEARTBEAT_S seconds. A run is dead when its heartbeat is older than STALE_AFTER_S, or
at once when it ran on this host and its process is gone (a kill -9). The next restore into the database,
and the next drill, sweep (drop) what dead runs left; `restore --list` reports it. Staging collections
without a lease are dead by definition: the lease is the first thing a run writes and the last it drops.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from mongobackup.errors import one_line

STAGING_PREFIX = "__restore_"
#: MongoDB's limit on `<database>.<collection>` in bytes (4.4 and later).
MAX_NAMESPACE_BYTES = 255
HEARTBEAT_S = 10.0
STALE_AFTER_S = 120.0
_LEASE_ID = "lease"
_NAME = re.compile(rf"^{STAGING_PREFIX}(?P<run>[0-9a-f]{{8}})(?:_(?P<rest>.+))?$")


def new_run_id() -> str:
    """A fresh restore run id: 8 hex digits."""
    return secrets.token_hex(4)


def is_reserved(collection: str) -> bool:
    """Whether a collection name is in the restore's reserved namespace (never restored, never a target)."""
    return collection.startswith(STAGING_PREFIX)


def lease_name(run_id: str) -> str:
    return f"{STAGING_PREFIX}{run_id}"


def staging_name(database: str, run_id: str, collection: str) -> str:
    """The staging name of `collection` for run `run_id`: at most 255 bytes as `<database>.<name>`."""
    tag = hashlib.sha256(collection.encode()).hexdigest()[:8]
    head = f"{STAGING_PREFIX}{run_id}_{tag}_"
    room = MAX_NAMESPACE_BYTES - len(f"{database}.{head}".encode())
    return head + collection.encode()[: max(room, 0)].decode(errors="ignore")


def probe_names(run_id: str) -> tuple[str, str]:
    """Two reserved names of run `run_id` that no staging name of a collection can take (no hash tag)."""
    return f"{STAGING_PREFIX}{run_id}_probe", f"{STAGING_PREFIX}{run_id}_probe-moved"


def is_lease(collection: str) -> bool:
    """Whether a collection name is a run's lease (not one of its staging collections)."""
    match = _NAME.match(collection)
    return match is not None and match["rest"] is None


def run_of(collection: str) -> str | None:
    """The run id in a reserved name, or None for any other name."""
    match = _NAME.match(collection)
    return match["run"] if match else None


@dataclass
class StagingRun:
    """What one restore run left (or is writing) in one database: its lease and its staging collections."""

    database: str
    run_id: str
    lease: dict[str, Any] | None
    collections: list[str] = field(default_factory=list)

    def alive(self, now: datetime) -> bool:
        """Whether the run's process may still be writing: a fresh heartbeat from a process that exists."""
        if self.lease is None:
            return False
        beat = self.lease.get("heartbeat")
        if not isinstance(beat, datetime):
            return False
        if now - beat.replace(tzinfo=UTC) > timedelta(seconds=STALE_AFTER_S):
            return False
        if self.lease.get("host") == socket.gethostname():
            return _process_exists(int(self.lease.get("pid") or 0))
        return True

    def describe(self, now: datetime) -> str:
        state = "running" if self.alive(now) else "dead"
        lease = self.lease or {}
        who = f"host {lease.get('host', '?')} pid {lease.get('pid', '?')}" if lease else "no lease"
        beat = lease.get("heartbeat")
        seen = f", last heartbeat {beat.replace(tzinfo=UTC).isoformat()}" if isinstance(beat, datetime) else ""
        source = f", restoring {lease['source']}" if lease.get("source") else ""
        phase = f", phase {lease['phase']}" if lease.get("phase") else ""
        return (
            f"restore run {self.run_id} in database {self.database} ({state}: {who}{seen}{source}{phase}): "
            f"{len(self.collections)} staging collections"
        )


def _process_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def find_runs(client: MongoClient, database: str) -> list[StagingRun]:
    """Every restore run with a lease or staging collections in `database`, by run id."""
    runs: dict[str, StagingRun] = {}
    for name in sorted(client[database].list_collection_names()):
        run_id = run_of(name)
        if run_id is None:
            continue
        run = runs.setdefault(run_id, StagingRun(database, run_id, None))
        if name == lease_name(run_id):
            run.lease = client[database][name].find_one({"_id": _LEASE_ID})
        else:
            run.collections.append(name)
    return list(runs.values())


def sweep(client: MongoClient, database: str, now: datetime | None = None) -> list[StagingRun]:
    """Drops what dead restore runs left in `database` (staging collections, then the lease); returns them."""
    now = now or datetime.now(UTC)
    dead = [run for run in find_runs(client, database) if not run.alive(now)]
    for run in dead:
        for name in run.collections:
            client[database].drop_collection(name)
        client[database].drop_collection(lease_name(run.run_id))
    return dead


def report_lines(client: MongoClient, database: str, now: datetime | None = None) -> list[str]:
    """One line per restore run that left staging collections in `database` (for `restore --list`)."""
    now = now or datetime.now(UTC)
    return [run.describe(now) for run in find_runs(client, database)]


class Lease:
    """The lease of one run in one database: written first, kept fresh by a heartbeat thread, dropped last."""

    def __init__(self, client: MongoClient, database: str, run_id: str, source: str):
        self.client = client
        self.database = database
        self.run_id = run_id
        self._collection = client[database][lease_name(run_id)]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._document = {
            "_id": _LEASE_ID,
            "run": run_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "source": source,
            "started": datetime.now(UTC),
            "heartbeat": datetime.now(UTC),
            "phase": "writing",
        }

    def take(self) -> None:
        """Writes the lease and starts the heartbeat."""
        self._collection.insert_one(dict(self._document))
        self._thread = threading.Thread(target=self._beat, name=f"restore-lease-{self.run_id}", daemon=True)
        self._thread.start()

    def phase(self, phase: str) -> None:
        """Records what the run is doing (writing, swapping), for whoever finds its leftovers."""
        self._collection.update_one({"_id": _LEASE_ID}, {"$set": {"phase": phase}})

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._collection.update_one({"_id": _LEASE_ID}, {"$set": {"heartbeat": datetime.now(UTC)}})
            except PyMongoError:  # a missed beat only makes the run look dead sooner; the restore decides
                continue

    def release(self) -> str | None:
        """Stops the heartbeat and drops the lease; returns what went wrong, never raises."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=HEARTBEAT_S + 5)
        try:
            self.client[self.database].drop_collection(lease_name(self.run_id))
        except PyMongoError as exc:
            return f"{self.database}.{lease_name(self.run_id)} ({one_line(exc)})"
        return None
