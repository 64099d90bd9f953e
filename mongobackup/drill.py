"""The fire drill of one backup: restored into a throwaway scratch database, verified, and always dropped.

A drill proves a backup restores: the same restore a user runs (`restore.restore_backup`), into a database
named for the drill run (`drill_<database>_<run id>`) on the plan's scratch server, verified against the
manifest by reading every restored document back (`RestoreOptions.read_back`), and dropped whatever
happened, so a drill never leaves data behind.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from pymongo import MongoClient

from mongobackup.crypto import Gpg
from mongobackup.manifest import BackupManifest
from mongobackup.names import DATABASE_NAME_MAX_BYTES, fits_database_name
from mongobackup.restore import RestoreOptions, restore_backup
from mongobackup.restore_result import RestoreResult
from mongobackup.restore_targets import DEFAULT_PARALLEL
from mongobackup.staging import find_runs
from mongobackup.storage import Storage
from mongobackup.thaw import Thawing

SCRATCH_PREFIX = "drill_"


def scratch_database_name(database: str, run_id: str) -> str:
    """`drill_<database>_<run id>`, at most 63 bytes (MongoDB's limit).

    A long database name is cut on a character boundary and tagged with a hash of the whole name, so two
    long names that share a beginning still get two scratch databases.
    """
    name = f"{SCRATCH_PREFIX}{database}_{run_id}"
    if fits_database_name(name):
        return name
    tag = hashlib.sha256(database.encode()).hexdigest()[:6]
    room = DATABASE_NAME_MAX_BYTES - len(f"drill_-{tag}_{run_id}".encode())
    cut = database.encode()[: max(room, 0)].decode(errors="ignore")
    return f"{SCRATCH_PREFIX}{cut}-{tag}_{run_id}"


def drill_restore(
    storage: Storage,
    object_key: str,
    gpg: Gpg,
    client: MongoClient,
    scratch_database: str,
    *,
    manifest: BackupManifest,
    passphrase: str | None = None,
    parallel: int = DEFAULT_PARALLEL,
    thaw: Thawing | None = None,
) -> RestoreResult:
    """The drill of one backup: restore it into `scratch_database`, verify it against its manifest, and drop
    the scratch database afterwards whatever happened, so a drill never leaves data behind. What killed
    drills left on the scratch server is swept first (`sweep_scratch`). `thaw`: how an archived backup is
    made readable (the drill's asks nothing and waits for nothing: its thaws were asked the day before)."""
    # The drill is the proof a backup restores: every restored document is read back from the server and
    # digested, not only counted and vouched for by the server's acknowledgements as a restore's default.
    options = RestoreOptions(target_database=scratch_database, verify=True, read_back=True, parallel=parallel)
    sweep_scratch(client)
    try:
        return restore_backup(
            storage, object_key, gpg, client, options, manifest=manifest, passphrase=passphrase, thaw=thaw
        )
    finally:
        client.drop_database(scratch_database)


def sweep_scratch(client: MongoClient, now: datetime | None = None) -> list[str]:
    """Drops the scratch databases of drills that died (kill -9) mid-restore; returns their names.

    A scratch database is a dead drill's when it is named `drill_...` and holds restore runs (their leases
    and staging collections), none of them alive (see `staging.StagingRun.alive`). A running drill's, and
    any database without a restore run in it, are left alone.
    """
    now = now or datetime.now(UTC)
    swept = []
    for database in client.list_database_names():
        if not database.startswith(SCRATCH_PREFIX):
            continue
        runs = find_runs(client, database)
        if runs and not any(run.alive(now) for run in runs):
            client.drop_database(database)
            swept.append(database)
    return swept
