"""The point-in-time part of the fire drill: one database restored to a random second inside its window.

What it proves, beyond the drill of the newest backup:
  - the chain holding the point is whole: every segment's manifest is there, links to the one before, and its
    object has the size and SHA-256 the manifest says (read, not decrypted);
  - a restore to the point works end to end: the base backup restores and verifies against its manifest,
    every archived entry up to the point is decrypted, checked against its segment's hashes and replayed;
  - the replayed state is stable: replaying the same entries a second time over it changes no document (the
    replay is meant to be idempotent; a change would show an entry applied wrongly).
The restored copy goes to a scratch database on the drill's server and is dropped whatever happens. What the
drill cannot do is compare with the source at that second, which no longer exists: that equality is what the
test suite proves on known writes at known times.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

from mongobackup.crypto import Gpg
from mongobackup.errors import BackupError
from mongobackup.manifest import DocumentDigest
from mongobackup.oplog_replay import OplogReplayer
from mongobackup.pitr.chain import OutsideWindow, chain_at, check_chain, scan_archive
from mongobackup.pitr.point import Window, bases, entries_to_replay, plan_point_restore, restore_to_point, windows
from mongobackup.restore import RestoreOptions
from mongobackup.storage import Storage

RAW = CodecOptions(document_class=RawBSONDocument)


@dataclass
class PointDrill:
    """One point-in-time drill: where it restored to, what it checked, and what it found."""

    instance: str
    database: str
    point: datetime | None = None
    window: Window | None = None
    segments: int = 0  # of the chain, each checked
    replayed: int = 0  # archived entries applied after the base
    documents: int = 0  # in the restored database
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.point is not None and not self.problems

    def describe(self) -> str:
        if self.point is None:
            return f"{self.instance}/{self.database}: no point-in-time drill ({'; '.join(self.problems)})"
        verdict = "OK" if self.passed else "FAILED: " + "; ".join(self.problems)
        window = self.window.describe() if self.window else "-"
        return (
            f"{self.instance}/{self.database} at {self.point:%Y-%m-%dT%H:%M:%SZ} (window {window}): "
            f"{self.segments} segments checked, {self.replayed} entries replayed, {self.documents} documents, "
            f"{self.seconds:.1f} s: {verdict}"
        )


def random_point(found: list[Window], rng: random.Random) -> tuple[Window, datetime]:
    """A window (weighted by its length) and a whole second inside it."""
    lengths = [int((w.end - w.start).total_seconds()) + 1 for w in found]
    window = rng.choices(found, weights=lengths)[0]
    offset = rng.randrange(int((window.end - window.start).total_seconds()) + 1)
    return window, datetime.fromtimestamp(int(window.start.timestamp()) + offset, UTC)


def state_digest(client: MongoClient, database: str) -> dict[str, tuple[int, str]]:
    """Per collection: the document count and the order-independent digest of the documents' bytes."""
    db = client.get_database(database, codec_options=RAW)
    found = {}
    for name in sorted(db.list_collection_names()):
        if name.startswith("system."):
            continue
        digest = DocumentDigest()
        for document in db[name].find({}):
            digest.add(document.raw)
        found[name] = (digest.count, digest.hexdigest)
    return found


def drill_point(
    storage: Storage,
    gpg: Gpg,
    client: MongoClient,
    *,
    prefix: str,
    instance: str,
    database: str,
    scratch_database: str,
    rng: random.Random,
    passphrase: str | None = None,
) -> PointDrill:
    """Restores `database` to a random second of its windows into `scratch_database` on `client`, checks it,
    and drops it. Problems are collected in the result; OutsideWindow when the database has no window."""
    drill = PointDrill(instance, database)
    started = time.monotonic()
    archive = scan_archive(storage, prefix, instance)
    found = windows(archive, bases(storage, prefix, instance, database))
    if not found:
        raise OutsideWindow(f"instance {instance}, database {database}: no point-in-time window to drill")
    drill.window, drill.point = random_point(found, rng)
    chosen = plan_point_restore(storage, prefix, instance, database, drill.point)
    chain = chain_at(archive, chosen.base.consistent_at)
    assert chain is not None  # plan_point_restore refuses a point without one
    drill.segments = len(chain.segments)
    drill.problems += check_chain(storage, archive, chain)
    try:
        options = RestoreOptions(target_database=scratch_database, verify=True, read_back=True)  # as drill.py
        result = restore_to_point(storage, gpg, client, chosen, options, passphrase=passphrase)
        drill.problems += [str(m) for m in result.verdict.mismatches]
        before = state_digest(client, scratch_database)
        replayer = OplogReplayer(
            client, {database: scratch_database}, wants=lambda ns: ".system." not in ns, on_create=lambda d, n: None
        )
        for entry in entries_to_replay(storage, gpg, chosen, passphrase=passphrase):
            replayer.apply(entry)
        drill.replayed = replayer.applied
        after = state_digest(client, scratch_database)
        drill.documents = sum(count for count, _ in after.values())
        changed = sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))
        if changed:
            drill.problems.append(f"replaying the entries again changed {', '.join(changed)}: the replay is not stable")
    except BackupError as exc:
        drill.problems.append(str(exc))
    finally:
        client.drop_database(scratch_database)
        drill.seconds = time.monotonic() - started
    return drill
