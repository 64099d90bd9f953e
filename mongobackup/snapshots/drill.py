"""The fire drill of a stored snapshot: restore it to a file, and (etcd) into a scratch etcd, read it back.

etcd: the newest snapshot is restored to a file (all three checks of `restore`), `etcdctl snapshot restore`
builds a data folder from it, a scratch etcd runs on that and every key is read back. When the manifest
says the snapshot holds exactly one revision (`exact`), the scratch etcd must answer with that revision
and that many keys; otherwise at least that revision. Consul: there is no Consul server here to restore
into, so its drill is the restore to a file with every check, and says so in its verdict.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from mongobackup.crypto import Gpg
from mongobackup.errors import VerificationError
from mongobackup.snapshots.etcd import EtcdGateway
from mongobackup.snapshots.manifest import SnapshotManifest
from mongobackup.snapshots.restore import restore_snapshot_file
from mongobackup.snapshots.scratch_etcd import scratch_etcd
from mongobackup.storage import Storage


@dataclass(frozen=True)
class SnapshotDrill:
    """A passed drill: what was restored and read back."""

    verdict: str
    keys: int
    revision: int
    object_bytes: int
    snapshot_bytes: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.snapshot_bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0


def drill_snapshot(
    storage: Storage, manifest: SnapshotManifest, gpg: Gpg, workdir: Path, *, passphrase: str | None = None
) -> SnapshotDrill:
    """Restores and reads back one snapshot in `workdir` (the caller removes it); raises on any mismatch."""
    started = time.monotonic()
    restored = restore_snapshot_file(storage, manifest, gpg, Path(workdir) / "snapshot.file", passphrase=passphrase)
    if manifest.kind == "consul" or manifest.etcd is None:
        index = manifest.consul.index if manifest.consul else 0
        return SnapshotDrill(
            "verified: SHA256SUMS and SHA-256 match (no scratch Consul to restore into)",
            0,
            index,
            restored.object_bytes,
            restored.snapshot_bytes,
            round(time.monotonic() - started, 3),
        )
    expected = manifest.etcd
    with scratch_etcd(restored.path, Path(workdir)) as client, EtcdGateway(manifest.source, client, None, 10.0) as etcd:
        revision = etcd.count().revision
        keys = sum(1 for _ in etcd.items())
    where = storage.where(manifest.object_key)
    if expected.exact and (revision, keys) != (expected.revision, expected.key_count):
        raise VerificationError(
            f"{where}: the scratch etcd answers revision {revision} with {keys} keys; the manifest says exactly "
            f"revision {expected.revision} with {expected.key_count} keys"
        )
    if revision < expected.revision:
        raise VerificationError(f"{where}: the scratch etcd is at revision {revision}, older than {expected.revision}")
    how = "exactly as the manifest says" if expected.exact else f"at or after revision {expected.revision}"
    return SnapshotDrill(
        f"restored into a scratch etcd: revision {revision}, {keys} keys read back, {how}",
        keys,
        revision,
        restored.object_bytes,
        restored.snapshot_bytes,
        round(time.monotonic() - started, 3),
    )
