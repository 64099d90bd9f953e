"""Plain helpers shared by the test modules (fixtures live in conftest.py): import them from here, never
from another test module."""

from __future__ import annotations

from datetime import datetime, timedelta

from mongobackup.keys import BackupLocation
from mongobackup.manifest import BackupManifest, EncryptionRecord, Sizes


def fake_manifest(
    location: BackupLocation, *, finished_at: datetime | None = None, size: int = 3, raw_bytes: int | None = None
) -> BackupManifest:
    """A valid manifest for `location` that describes no real object (for code that reads only the manifest):
    finished a minute after the location's time unless told, `size` bytes stored, `raw_bytes` before zstd."""
    return BackupManifest(
        archive_format="0.1",
        tool="mongo-backup-flows",
        tool_version="test",
        instance=location.instance,
        replica_set="secantus",
        server_version="8.2.11",
        database=location.database,
        tier=location.tier.value,
        object_key=location.object_key,
        run_id=location.run_id,
        scheduled_at=location.taken_at,
        started_at=location.taken_at,
        finished_at=finished_at or location.taken_at + timedelta(minutes=1),
        compression="zstd-3",
        sizes=Sizes(raw_bytes=raw_bytes or size, compressed_bytes=size, encrypted_bytes=size),
        sha256="0" * 64,
        etag="x",
        encryption=EncryptionRecord(method="symmetric", cipher="AES256"),
        namespaces=[],
    )
