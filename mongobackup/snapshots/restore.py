"""A stored snapshot back into the file the stock tools restore from: download, decrypt, check, write.

S3 -> gpg -> (zstd -d) -> the store's integrity check and a SHA-256 -> FILE.part, then FILE. The file is
exactly what `consul snapshot save` / `etcdctl snapshot save` would have written, so `consul snapshot
restore FILE` / `etcdctl snapshot restore FILE` take it. Three checks must pass before FILE appears: the
stored object's SHA-256 (the manifest's), the snapshot's own integrity rule (Consul's SHA256SUMS, etcd's
trailing hash), and the snapshot's SHA-256 and size (the manifest's again). Until then the bytes live in
`FILE.part`, which any failure removes: an existing FILE is never touched by a failed restore.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mongobackup.crypto import Gpg
from mongobackup.errors import BackupError, VerificationError
from mongobackup.snapshots.consul import ConsulArchiveCheck
from mongobackup.snapshots.etcd import EtcdSnapshotCheck
from mongobackup.snapshots.manifest import SnapshotManifest
from mongobackup.snapshots.store import SnapshotCheck
from mongobackup.storage import Storage
from mongobackup.streams import CHUNK_SIZE, zstd_decompressing_reader


class SnapshotRestoreError(BackupError):
    """The restore of a snapshot to a file was refused or failed; the message names the object or file."""


@dataclass(frozen=True)
class RestoredSnapshot:
    """What a restore wrote: the file, its size and hash, and how long it took."""

    path: Path
    kind: str
    object_key: str
    snapshot_bytes: int
    snapshot_sha256: str
    object_bytes: int
    seconds: float


class _HashingReader(io.RawIOBase):
    """The stored object's bytes as they are downloaded, hashed: its SHA-256 must be the manifest's."""

    def __init__(self, inner: BinaryIO):
        super().__init__()
        self._inner = inner
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.sha256.update(data)
        self.bytes += n
        return n


def check_for(manifest: SnapshotManifest) -> SnapshotCheck:
    """The integrity rule of the manifest's kind of store."""
    return ConsulArchiveCheck(manifest.source) if manifest.kind == "consul" else EtcdSnapshotCheck(manifest.source)


def restore_snapshot_file(
    storage: Storage,
    manifest: SnapshotManifest,
    gpg: Gpg,
    out: Path,
    *,
    passphrase: str | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> RestoredSnapshot:
    """Writes the snapshot `manifest` describes to `out`, checked three ways (see the module docstring)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise SnapshotRestoreError(f"{out} exists: refusing to replace it (choose another --out, or remove it)")
    if not out.parent.is_dir():
        raise SnapshotRestoreError(f"{out.parent} is not a folder: cannot write {out.name} there")
    part = out.with_name(out.name + ".part")
    where = storage.where(manifest.object_key)
    started = time.monotonic()
    log(f"restore: {where} -> gpg -> {'zstd -d -> ' if manifest.compression != 'none' else ''}check -> {out}")
    try:
        downloaded = _HashingReader(storage.open_read(manifest.object_key))
        plain: BinaryIO = gpg.decrypting_reader(downloaded, name=where, passphrase=passphrase)  # type: ignore[assignment]
        if manifest.compression != "none":
            plain = zstd_decompressing_reader(plain)
        check = check_for(manifest)
        digest, size = hashlib.sha256(), 0
        with part.open("wb") as file:
            while chunk := plain.read(CHUNK_SIZE):
                check.feed(chunk)
                digest.update(chunk)
                size += len(chunk)
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        check.finish()
        _compare(manifest, where, downloaded, digest.hexdigest(), size)
        os.replace(part, out)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    seconds = time.monotonic() - started
    log(f"restore: wrote {size} bytes to {out} in {seconds:.1f} s; checks passed")
    return RestoredSnapshot(
        out, manifest.kind, manifest.object_key, size, digest.hexdigest(), downloaded.bytes, round(seconds, 3)
    )


def _compare(manifest: SnapshotManifest, where: str, downloaded: _HashingReader, sha256: str, size: int) -> None:
    problems = []
    if downloaded.sha256.hexdigest() != manifest.sha256:
        problems.append("the stored object's SHA-256 differs from the manifest's")
    if sha256 != manifest.snapshot_sha256:
        problems.append("the snapshot's SHA-256 differs from the manifest's")
    if size != manifest.sizes.raw_bytes:
        problems.append(f"the snapshot has {size} bytes, the manifest says {manifest.sizes.raw_bytes}")
    if problems:
        raise VerificationError(f"{where}: " + "; ".join(problems))
