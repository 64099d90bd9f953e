"""One oplog segment: stored as a backup is (raw BSON -> zstd -> gpg -> S3), committed by its manifest.

The object is the segment's entries as they came from the server, concatenated raw BSON (what `bsondump`
reads), in a zstd frame, in an OpenPGP message: `gpg --decrypt | zstd -d | bsondump` opens it without us.
The manifest is written last, after the object was verified (size and multipart ETag); a segment exists if
and only if its manifest does. It records the first and last entry's timestamps, the entry count, the
SHA-256 of the object and of the raw entries, and the previous segment's last timestamp (None at the start
of a chain), so a chain can be checked link by link and hash by hash.

A segment is small by construction (`pitr.segment_mib` of raw entries at most), so it is gathered in memory
while the archiver tails, and read back whole to check its hash before a byte of it reaches gpg.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Literal

from bson import Timestamp
from bson.raw_bson import RawBSONDocument
from pydantic import BaseModel, ConfigDict

from mongobackup.backup import TOOL_NAME, tool_version, verify_receipt
from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.errors import VerificationError
from mongobackup.manifest import EncryptionRecord, Sizes
from mongobackup.pitr.keys import SegmentLocation, ts_pair
from mongobackup.storage import Storage
from mongobackup.streams import CountingReader, zstd_compressing_reader, zstd_decompressing_reader

SEGMENT_MANIFEST_VERSION = 1
SUPPORTED_SEGMENT_MANIFEST_VERSIONS = frozenset({SEGMENT_MANIFEST_VERSION})
_LENGTH = struct.Struct("<i")
#: BSON's own limit on one document, with room for the oplog entry around a 16 MiB document.
_MAX_ENTRY_BYTES = 17 << 20


class SegmentManifest(BaseModel):
    """The commit marker of one segment, beside it in the bucket."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = SEGMENT_MANIFEST_VERSION
    kind: Literal["oplog-segment"] = "oplog-segment"
    tool: str
    tool_version: str
    instance: str
    replica_set: str | None
    object_key: str
    first_ts: tuple[int, int]  # (seconds, increment)
    last_ts: tuple[int, int]
    entries: int
    #: The last timestamp of the segment before this one in the chain; None: this one starts a chain.
    prev_last_ts: tuple[int, int] | None
    sizes: Sizes
    raw_sha256: str  # of the concatenated raw entries
    sha256: str  # of the stored object
    etag: str
    compression: str
    encryption: EncryptionRecord
    created_at: datetime

    @property
    def first(self) -> Timestamp:
        return Timestamp(*self.first_ts)

    @property
    def last(self) -> Timestamp:
        return Timestamp(*self.last_ts)

    @property
    def prev_last(self) -> Timestamp | None:
        return None if self.prev_last_ts is None else Timestamp(*self.prev_last_ts)

    @classmethod
    def from_json_dict(cls, data: dict, *, key: str) -> SegmentManifest:
        version = data.get("format_version")
        if version not in SUPPORTED_SEGMENT_MANIFEST_VERSIONS:
            raise VerificationError(
                f"{key}: segment manifest format_version {version!r} is not one this tool reads "
                f"({sorted(SUPPORTED_SEGMENT_MANIFEST_VERSIONS)})"
            )
        try:
            return cls.model_validate(data)
        except ValueError as exc:
            raise VerificationError(f"{key}: not a valid segment manifest: {exc}") from exc


def write_segment(
    storage: Storage,
    gpg: Gpg,
    keys: EncryptionKeys,
    *,
    location: SegmentLocation,
    raw: bytes,
    entries: int,
    prev_last: Timestamp | None,
    replica_set: str | None,
    compression_level: int,
) -> SegmentManifest:
    """Stores `raw` (concatenated entries) under the location's key, verifies it, then commits its manifest.

    Raises StorageError, EncryptionError or VerificationError; nothing is committed unless every step passed,
    and a failed upload is aborted (no partial object under the key).
    """
    # Segments are small: zstd in this thread (no workers) keeps the archiver at one busy core at most.
    compressed = CountingReader(zstd_compressing_reader(io.BytesIO(raw), level=compression_level, threads=0))
    metadata = {"backup-format": "oplog-segment-1", "instance": location.instance}
    with storage.open_upload(location.object_key, metadata) as upload:
        gpg.encrypt_stream(compressed, upload.write, keys)  # type: ignore[arg-type]
        receipt = upload.complete()
    verify_receipt(storage, receipt)
    manifest = SegmentManifest(
        tool=TOOL_NAME,
        tool_version=tool_version(),
        instance=location.instance,
        replica_set=replica_set,
        object_key=location.object_key,
        first_ts=ts_pair(location.first),
        last_ts=ts_pair(location.last),
        entries=entries,
        prev_last_ts=None if prev_last is None else ts_pair(prev_last),
        sizes=Sizes(raw_bytes=len(raw), compressed_bytes=compressed.bytes_read, encrypted_bytes=receipt.size),
        raw_sha256=hashlib.sha256(raw).hexdigest(),
        sha256=receipt.sha256,
        etag=receipt.etag,
        compression=f"zstd-{compression_level}",
        encryption=EncryptionRecord(
            method="public-key" if keys.fingerprints else "symmetric",
            cipher=keys.cipher,
            recipients=list(keys.fingerprints),
        ),
        created_at=datetime.now(UTC),
    )
    storage.put_json(location.manifest_key, manifest.model_dump(mode="json"))
    return manifest


def load_segment_manifest(storage: Storage, location: SegmentLocation) -> SegmentManifest:
    """The manifest of a segment, checked to describe the segment its key names."""
    where = storage.where(location.manifest_key)
    manifest = SegmentManifest.from_json_dict(storage.get_json(location.manifest_key), key=where)
    found = (manifest.instance, manifest.object_key, manifest.first, manifest.last)
    wanted = (location.instance, location.object_key, location.first, location.last)
    if found != wanted:
        raise VerificationError(f"{where} describes {found}, not the segment {wanted} its key names")
    return manifest


def fetch_segment(storage: Storage, manifest: SegmentManifest) -> bytes:
    """The stored object of a segment, checked against its manifest's size and SHA-256 (before any decryption)."""
    where = storage.where(manifest.object_key)
    with contextlib.closing(storage.open_read(manifest.object_key)) as body:
        data = body.read()
    problems = []
    if len(data) != manifest.sizes.encrypted_bytes:
        problems.append(f"{len(data)} bytes, its manifest says {manifest.sizes.encrypted_bytes}")
    elif hashlib.sha256(data).hexdigest() != manifest.sha256:
        problems.append(f"SHA-256 {hashlib.sha256(data).hexdigest()} != {manifest.sha256} in its manifest")
    if problems:
        raise VerificationError(f"{where}: the stored segment does not match its manifest: {'; '.join(problems)}")
    return data


def read_segment(
    storage: Storage, gpg: Gpg, manifest: SegmentManifest, *, passphrase: str | None = None
) -> Iterator[bytes]:
    """The raw entries of a segment, in oplog order, each checked: the object's hash before decryption, the
    first and last timestamps as they come, the entry count and raw SHA-256 at the end (VerificationError)."""
    where = storage.where(manifest.object_key)
    data = fetch_segment(storage, manifest)
    decrypted = gpg.decrypting_reader(io.BytesIO(data), name=where, passphrase=passphrase)  # type: ignore[arg-type]
    digest = hashlib.sha256()
    count = 0
    last: Timestamp | None = None
    try:
        for raw in iter_bson(zstd_decompressing_reader(decrypted), where=where):  # type: ignore[arg-type]
            digest.update(raw)
            last = RawBSONDocument(raw)["ts"]
            if count == 0 and last != manifest.first:
                raise VerificationError(f"{where}: first entry at {last}, its manifest says {manifest.first}")
            count += 1
            yield raw
    finally:
        decrypted.close()
    if count != manifest.entries or last != manifest.last or digest.hexdigest() != manifest.raw_sha256:
        raise VerificationError(
            f"{where}: {count} entries ending at {last} with SHA-256 {digest.hexdigest()}, its manifest says "
            f"{manifest.entries} ending at {manifest.last} with {manifest.raw_sha256}"
        )


def iter_bson(stream: io.RawIOBase | io.BufferedIOBase, *, where: str) -> Iterator[bytes]:
    """Each document of a stream of concatenated BSON documents; VerificationError on a cut or bad length."""
    while True:
        head = _read_exactly(stream, 4)
        if not head:
            return
        if len(head) < 4:
            raise VerificationError(f"{where}: the entries end inside a length prefix")
        (length,) = _LENGTH.unpack(head)
        if not 5 <= length <= _MAX_ENTRY_BYTES:
            raise VerificationError(f"{where}: an entry claims {length} bytes: not BSON")
        body = _read_exactly(stream, length - 4)
        if len(body) < length - 4:
            raise VerificationError(f"{where}: the entries end inside a {length}-byte entry")
        yield head + body


def _read_exactly(stream: io.RawIOBase | io.BufferedIOBase, n: int) -> bytes:
    parts: list[bytes] = []
    wanted = n
    while wanted > 0:
        chunk = stream.read(wanted)
        if not chunk:
            break
        parts.append(chunk)
        wanted -= len(chunk)
    return b"".join(parts)
