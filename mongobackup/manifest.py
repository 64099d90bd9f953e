"""The backup manifest: the commit marker written beside each stored object.

A backup exists if and only if its manifest exists. The manifest is written last, after the object was
verified, and holds what a restore and an auditor need to trust the object without opening it first.
Bump MANIFEST_VERSION on any incompatible change; readers refuse versions they do not know (`from_json_dict`),
before reading any other field. The format is written down in docs/FORMAT.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from bson import json_util
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

MANIFEST_VERSION = 1
SUPPORTED_MANIFEST_VERSIONS = frozenset({MANIFEST_VERSION})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DocumentDigest:
    """An order-independent digest of a namespace's documents: the sum of their SHA-256, mod 2**256.

    A sum (not XOR) so that a duplicated document changes the digest; independent of order so that a
    restored collection, read back in whatever order the server returns, can be checked against it.
    """

    __slots__ = ("count", "bytes", "_sum")

    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0
        self._sum = 0

    def add(self, document: bytes) -> None:
        self.count += 1
        self.bytes += len(document)
        self._sum += int.from_bytes(hashlib.sha256(document).digest(), "big")

    def merge(self, other: DocumentDigest) -> None:
        """Adds `other`'s documents: a namespace's digest is the sum of its batches' (a sum does not care how
        the documents were grouped), so one hash per document serves both the archive and the insert path."""
        self.count += other.count
        self.bytes += other.bytes
        self._sum += other._sum

    @property
    def hexdigest(self) -> str:
        return f"{self._sum % (1 << 256):064x}"


class IndexRecord(_Model):
    name: str
    key: dict[str, Any]
    unique: bool = False

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> IndexRecord:
        """The record of an index spec as listIndexes, an archive's metadata or mongodump give it."""
        return cls(name=str(spec["name"]), key=jsonable(spec["key"]), unique=bool(spec.get("unique")))


def jsonable(value: Any) -> dict[str, Any]:
    """A BSON value (an index key spec) as plain JSON types, as the manifest stores it."""
    return json.loads(json_util.dumps(value))


class NamespaceRecord(_Model):
    """One collection, view or the oplog slice, as stored in the archive."""

    collection: str
    type: Literal["collection", "view", "timeseries", "oplog"]
    documents: int = 0
    bytes: int = 0
    crc: int | None = None  # signed CRC-64 as the archive stores it; None for views
    digest: str | None = None
    indexes: list[IndexRecord] = Field(default_factory=list)
    view_on: str | None = None


class OplogWindow(_Model):
    """The oplog slice of the dump window: replaying it makes the backup consistent to `end`."""

    start: tuple[int, int]  # (seconds, increment) of the BSON timestamp
    end: tuple[int, int]
    entries: int


class Sizes(_Model):
    raw_bytes: int
    compressed_bytes: int
    encrypted_bytes: int


class EncryptionRecord(_Model):
    method: Literal["public-key", "symmetric"]
    cipher: str
    recipients: list[str] = Field(default_factory=list)  # fingerprints, never a passphrase


class BackupManifest(_Model):
    format_version: StrictInt = MANIFEST_VERSION  # strict: `true` or `1.0` is not a version
    archive_format: str  # the mongodump archive version inside the object
    tool: str
    tool_version: str
    instance: str
    replica_set: str | None
    server_version: str
    database: str
    tier: str
    object_key: str
    run_id: str
    scheduled_at: datetime
    started_at: datetime
    finished_at: datetime
    compression: str
    sizes: Sizes
    sha256: str
    etag: str
    encryption: EncryptionRecord
    namespaces: list[NamespaceRecord]
    oplog: OplogWindow | None = None
    stage_seconds: dict[str, float] = Field(default_factory=dict)

    @field_validator("format_version")
    @classmethod
    def _known_version(cls, version: int) -> int:
        if version not in SUPPORTED_MANIFEST_VERSIONS:
            raise ValueError(f"format_version {version} is not one this tool writes or reads")
        return version

    @property
    def documents(self) -> int:
        return sum(ns.documents for ns in self.namespaces if ns.type != "oplog")

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_json_dict(cls, data: dict[str, Any], *, key: str = "<manifest>") -> BackupManifest:
        """The manifest stored as `data` (parsed JSON); ValueError naming `key` if it is not one this tool
        reads. The version is checked first: a newer format may have other fields, and the error must say
        that the manifest is too new, not list the fields it lacks."""
        if not isinstance(data, dict):
            raise ValueError(f"manifest {key}: not a JSON object but {type(data).__name__}")
        version = data.get("format_version")
        if type(version) is not int or version not in SUPPORTED_MANIFEST_VERSIONS:
            raise ValueError(
                f"manifest {key}: format_version {version!r} is not one this tool reads "
                f"({sorted(SUPPORTED_MANIFEST_VERSIONS)})"
            )
        return cls.model_validate(data)
