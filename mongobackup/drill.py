"""The fire drill of one backup: restored into a throwaway scratch database, verified, and always dropped.

A drill proves a backup restores: the same restore a user runs (`restore.restore_backup`), into a database
named for the drill run (`drill_<database>_<run id>`) on the plan's scratch server, verified against the
manifest, and dropped whatever happened, so a drill never leaves data behind.
"""

from __future__ import annotations

import hashlib

from pymongo import MongoClient

from mongobackup.crypto import Gpg
from mongobackup.manifest import BackupManifest
from mongobackup.restore import RestoreOptions, RestoreResult, restore_backup
from mongobackup.restore_targets import DEFAULT_PARALLEL
from mongobackup.storage import Storage

_MAX_DATABASE_NAME_BYTES = 63


def scratch_database_name(database: str, run_id: str) -> str:
    """`drill_<database>_<run id>`, at most 63 bytes (MongoDB's limit).

    A long database name is cut on a character boundary and tagged with a hash of the whole name, so two
    long names that share a beginning still get two scratch databases.
    """
    name = f"drill_{database}_{run_id}"
    if len(name.encode()) <= _MAX_DATABASE_NAME_BYTES:
        return name
    tag = hashlib.sha256(database.encode()).hexdigest()[:6]
    room = _MAX_DATABASE_NAME_BYTES - len(f"drill_-{tag}_{run_id}".encode())
    cut = database.encode()[: max(room, 0)].decode(errors="ignore")
    return f"drill_{cut}-{tag}_{run_id}"


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
) -> RestoreResult:
    """The drill of one backup: restore it into `scratch_database`, verify it against its manifest, and drop
    the scratch database afterwards whatever happened, so a drill never leaves data behind."""
    options = RestoreOptions(target_database=scratch_database, verify=True, parallel=parallel)
    try:
        return restore_backup(storage, object_key, gpg, client, options, manifest=manifest, passphrase=passphrase)
    finally:
        client.drop_database(scratch_database)
