"""A stored backup object read back: S3 -> counting and hashing reader -> gpg -> zstd -> plain archive bytes.

`ObjectDownload` owns the whole read side of one object, so that a restore (or a verification) only sees an
archive stream and asks this object three things: how far it is (`bytes_read`, `size`), whether the object
was what its manifest promised once gpg has read all of it (`verify_after`), and, when the stream broke,
whether the download was the cause (`read_error`). It is also the one place where getting at the bytes of
an object may need more than a GET: an object in GLACIER or DEEP_ARCHIVE is thawed first (`open`, given a
`Thawing`; `thawed` then says what was asked and how long it waited).

With a manifest, the object's size is checked before the first byte is read (a truncated or replaced object
is refused before anything is written) and its SHA-256 after the last.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import BinaryIO

from mongobackup.crypto import Gpg
from mongobackup.errors import StorageError, VerificationError
from mongobackup.manifest import BackupManifest
from mongobackup.storage import Storage
from mongobackup.streams import CountingReader, zstd_decompressing_reader
from mongobackup.thaw import Thawing, ThawOutcome
from mongobackup.verify import Mismatch, check_object


class ObjectDownload:
    """One stored object streamed, decrypted and decompressed; `open()` once, then read the stream it returns."""

    def __init__(
        self,
        storage: Storage,
        object_key: str,
        gpg: Gpg,
        *,
        manifest: BackupManifest | None,
        passphrase: str | None = None,
        thaw: Thawing | None = None,
    ):
        self.storage = storage
        self._thaw = thaw
        #: What the thaw before the GET did (None: not asked to look; see `mongobackup.thaw`).
        self.thawed: ThawOutcome | None = None
        self.object_key = object_key
        self.where = storage.where(object_key)
        self.manifest = manifest
        self._gpg = gpg
        self._passphrase = passphrase
        self.size: int | None = None
        self._body: BinaryIO | None = None
        self._raw: CountingReader | None = None
        self._decrypted: BinaryIO | None = None

    def open(self) -> BinaryIO:
        """The plain archive stream of the object. StorageError when it is not there; VerificationError when
        its size is not the manifest's; ThawTimeout when it is archived and did not thaw in time (nothing has
        been read then)."""
        if self._thaw is not None:  # GLACIER / DEEP_ARCHIVE: a GET fails until S3 has thawed a copy
            self.thawed = self._thaw.ensure(self.storage, self.object_key)
        info = self.storage.head(self.object_key)
        if info is None:
            raise StorageError(f"{self.where}: no such object")
        self.size = info.size
        if self.manifest is not None and info.size != self.manifest.sizes.encrypted_bytes:
            raise VerificationError(
                f"{self.where}: the stored object is {info.size} bytes, its manifest says "
                f"{self.manifest.sizes.encrypted_bytes}: truncated or replaced; nothing was restored"
            )
        self._body = self.storage.open_read(self.object_key)
        self._raw = CountingReader(self._body, digest=hashlib.sha256())
        self._decrypted = self._gpg.decrypting_reader(self._raw, name=self.where, passphrase=self._passphrase)  # type: ignore[arg-type]
        return zstd_decompressing_reader(self._decrypted)  # type: ignore[arg-type]

    @property
    def bytes_read(self) -> int:
        """Bytes of the stored (encrypted) object read so far."""
        return self._raw.bytes_read if self._raw is not None else 0

    @property
    def read_error(self) -> BaseException | None:
        """The failure of the S3 read itself, if the stream broke there (gpg then only saw a short stream)."""
        return self._raw.error if self._raw is not None else None

    def verify_after(self) -> list[Mismatch]:
        """Once the stream ended: the object's size and SHA-256 as read, against the manifest's."""
        if self.manifest is None or self._raw is None:
            return []
        return check_object(
            self.manifest, size=self._raw.bytes_read, sha256=self._raw.digest.hexdigest(), where=self.where
        )

    def close(self) -> None:
        """Stops gpg and closes the S3 body. Never raises."""
        if self._decrypted is not None:
            with contextlib.suppress(Exception):
                self._decrypted.close()
        if self._body is not None:
            with contextlib.suppress(Exception):
                self._body.close()
