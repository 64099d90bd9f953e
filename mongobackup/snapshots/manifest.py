"""The snapshot manifest: the commit marker written beside each stored key/value snapshot.

Like a database backup's manifest (`mongobackup.manifest`), it is written last, after the object was
verified, and a snapshot exists if and only if it exists. It says what the store said about the snapshot
(Consul: Raft index and term from meta.json; etcd: revision, Raft term and key count read around it), the
sizes, the SHA-256 of the snapshot file and of the stored object, and the result of the integrity check.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from mongobackup.errors import VerificationError
from mongobackup.manifest import EncryptionRecord, Sizes, _Model
from mongobackup.storage import Storage

SNAPSHOT_MANIFEST_VERSION = 1
SUPPORTED_SNAPSHOT_MANIFEST_VERSIONS = frozenset({SNAPSHOT_MANIFEST_VERSION})


class CheckRecord(_Model):
    """The integrity check the snapshot passed before it was committed (a failed one is never committed)."""

    method: Literal["consul-sha256sums", "etcd-sha256-trailer"]
    passed: bool
    details: dict[str, Any] = Field(default_factory=dict)


class ConsulRecord(_Model):
    """From the snapshot's meta.json: the Raft position it was taken at."""

    index: int
    term: int
    version: int
    id: str
    state_bytes: int
    datacenter: str | None = None
    stale: bool = False


class EtcdRecord(_Model):
    """From the member's API around the snapshot: revision and key count, exact when nothing changed between."""

    endpoint: str
    member_id: str
    cluster_id: str
    server_version: str
    revision: int  # the revision read just before the snapshot: the snapshot holds at least this one
    revision_after: int
    raft_term: int
    raft_index: int
    key_count: int  # the number of keys at `revision` (not `keys`: pydantic models must not shadow dict.keys)
    exact: bool  # revision == revision_after: the snapshot holds exactly `revision` and `key_count` keys
    db_bytes: int


class SnapshotManifest(_Model):
    format_version: int = SNAPSHOT_MANIFEST_VERSION
    kind: Literal["consul", "etcd"]
    tool: str
    tool_version: str
    source: str
    tier: str
    object_key: str
    run_id: str
    scheduled_at: datetime
    started_at: datetime
    finished_at: datetime
    compression: str  # "none" (Consul: gzip already) or "zstd-<level>"
    sizes: Sizes  # raw: the snapshot file; compressed: after zstd (= raw without); encrypted: the object
    snapshot_sha256: str  # of the snapshot file the stock restore tool takes
    sha256: str  # of the stored object
    etag: str
    encryption: EncryptionRecord
    check: CheckRecord
    consul: ConsulRecord | None = None
    etcd: EtcdRecord | None = None
    stage_seconds: dict[str, float] = Field(default_factory=dict)

    @property
    def instance(self) -> str:
        """The source's name, where code common to databases and snapshots asks for an instance."""
        return self.source

    @property
    def index(self) -> int:
        """The store's own position: Consul's Raft index, etcd's revision."""
        if self.consul is not None:
            return self.consul.index
        return self.etcd.revision if self.etcd is not None else 0

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_json_dict(cls, data: dict[str, Any], *, key: str = "<manifest>") -> SnapshotManifest:
        version = data.get("format_version")
        if version not in SUPPORTED_SNAPSHOT_MANIFEST_VERSIONS:
            raise ValueError(
                f"snapshot manifest {key}: format_version {version!r} is not one this tool reads "
                f"({sorted(SUPPORTED_SNAPSHOT_MANIFEST_VERSIONS)})"
            )
        return cls.model_validate(data)


def load_snapshot_manifest(
    storage: Storage, manifest_key: str, object_key: str, source: str, *, object_size: int | None = None
) -> SnapshotManifest:
    """The manifest at `manifest_key`, checked to describe the snapshot `object_key` of `source` (and, given the
    object's size from a listing, that the object still has the size the manifest recorded)."""
    where = storage.where(manifest_key)
    try:
        manifest = SnapshotManifest.from_json_dict(storage.get_json(manifest_key), key=where)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError too
        raise VerificationError(f"{where}: not a valid snapshot manifest: {exc}") from exc
    if (manifest.object_key, manifest.source) != (object_key, source):
        raise VerificationError(
            f"{where} describes {(manifest.object_key, manifest.source)}, not the snapshot {(object_key, source)}"
        )
    if object_size is not None and object_size != manifest.sizes.encrypted_bytes:
        raise VerificationError(
            f"{storage.where(object_key)} is {object_size} bytes, its manifest says "
            f"{manifest.sizes.encrypted_bytes}: the object was truncated or replaced since its commit"
        )
    return manifest
