"""Restore of a stored backup, or of an archive file: the source opened as a plain archive stream, then
streamed into MongoDB by `mongobackup.restore_stream`.

    ObjectDownload (S3 -> size/SHA-256 tally -> gpg -> zstd) -> restore_stream -> MongoDB

The same stream consumer reads a stock `mongodump --archive` file (plain or `--gzip`, see `open_archive_file`).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from typing import BinaryIO

from pymongo import MongoClient

from mongobackup.archive import MAGIC, ArchiveError
from mongobackup.crypto import Gpg
from mongobackup.download import ObjectDownload
from mongobackup.errors import StorageError
from mongobackup.manifest import BackupManifest
from mongobackup.restore_result import ProgressCallback, RestoreFailed, RestoreResult
from mongobackup.restore_stream import DEFAULT_OPTIONS, restore_stream
from mongobackup.restore_targets import RestoreOptions
from mongobackup.storage import Storage
from mongobackup.streams import CHUNK_SIZE, zstd_decompressing_reader
from mongobackup.thaw import Thawing

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def restore_backup(
    storage: Storage,
    object_key: str,
    gpg: Gpg,
    client: MongoClient | None,
    options: RestoreOptions = DEFAULT_OPTIONS,
    *,
    manifest: BackupManifest | None,
    passphrase: str | None = None,
    on_progress: ProgressCallback | None = None,
    thaw: Thawing | None = None,
    oplog_tail: Iterable[bytes] | None = None,
) -> RestoreResult:
    """Restores (client None: verifies) one stored backup: S3 -> gpg -> zstd -> archive -> MongoDB.

    `manifest` None only for a backup the caller knowingly restores uncommitted: then only the archive's own
    CRCs vouch for it. With a manifest, the object's size is checked before anything is written (a truncated
    or replaced object is refused at once) and its SHA-256 once it has been read in full. `thaw`: an object in
    GLACIER or DEEP_ARCHIVE is thawed first (asked for once, waited for to a deadline; see `mongobackup.thaw`).
    """
    download = ObjectDownload(storage, object_key, gpg, manifest=manifest, passphrase=passphrase, thaw=thaw)
    try:
        plain = download.open()
        result = restore_stream(
            plain,
            client,
            options,
            manifest=manifest,
            source=download.where,
            on_progress=on_progress,
            download=download,
            oplog_tail=oplog_tail,
        )
        result.thaw = download.thawed
        return result
    except RestoreFailed as exc:
        if download.read_error is not None:  # the download broke: gpg only saw a short stream, say what failed
            raise RestoreFailed(
                "download",
                exc.target,
                StorageError(f"{download.where}: read failed: {download.read_error}", transient=True),
                exc.cleanup,
            ) from exc
        raise
    finally:
        download.close()


def open_archive_file(path: str) -> BinaryIO:
    """An archive file as a plain archive stream: plain, `mongodump --gzip`, or zstd-compressed."""
    raw = open(path, "rb", buffering=CHUNK_SIZE)  # noqa: SIM115 - handed to the caller, who closes it
    head = raw.peek(4)[:4]
    if head.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if head == _ZSTD_MAGIC:
        return zstd_decompressing_reader(raw)
    if head != MAGIC:
        raw.close()
        raise ArchiveError(f"{path}: neither a mongodump archive nor a gzip or zstd file (starts with {head.hex()})")
    return raw


__all__ = ["RestoreOptions", "open_archive_file", "restore_backup"]
