"""One source's snapshot, as plain functions the Prefect tasks call: take (stream, check, store), verify,
commit; the same three steps, with the same rules, as a database's transfer, verify and commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from mongobackup.backup import TOOL_NAME, commit_manifest, tool_version, verify_receipt
from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.keys import KV_SNAPSHOT, BackupLocation
from mongobackup.manifest import Sizes
from mongobackup.plan import Compression
from mongobackup.snapshots.consul import ConsulArchiveCheck, ConsulSnapshotInfo, consul_snapshot
from mongobackup.snapshots.etcd import EtcdSnapshotCheck, etcd_gateway
from mongobackup.snapshots.manifest import CheckRecord, ConsulRecord, EtcdRecord, SnapshotManifest
from mongobackup.snapshots.plan import ConsulSource, EtcdSource
from mongobackup.snapshots.store import StoredSnapshot, store_snapshot
from mongobackup.storage import Storage

Log = Callable[[str], None]


@dataclass(frozen=True)
class TakenSnapshot:
    """A stored (not yet committed) snapshot and what the store said about it."""

    kind: str
    stored: StoredSnapshot
    consul: ConsulRecord | None = None
    etcd: EtcdRecord | None = None

    @property
    def location(self) -> BackupLocation:
        return self.stored.location


def take_consul(
    source: ConsulSource,
    token: str | None,
    *,
    location: BackupLocation,
    storage: Storage,
    gpg: Gpg,
    keys: EncryptionKeys,
    log: Log = lambda message: None,
) -> TakenSnapshot:
    """`GET /v1/snapshot`, checked against its SHA256SUMS as it streams, stored without a second compression."""
    with consul_snapshot(source, token) as chunks:
        stored = store_snapshot(
            chunks=chunks,
            check=ConsulArchiveCheck(source.name),
            location=location,
            storage=storage,
            gpg=gpg,
            keys=keys,
            compression=None,
            log=log,
        )
    info: ConsulSnapshotInfo = stored.checked
    record = ConsulRecord(**info.details(), datacenter=source.datacenter, stale=source.stale)
    log(f"consul snapshot of {source.name}: index {info.index}, term {info.term}, {info.state_bytes} state bytes")
    return TakenSnapshot("consul", stored, consul=record)


def take_etcd(
    source: EtcdSource,
    password: str | None,
    *,
    location: BackupLocation,
    storage: Storage,
    gpg: Gpg,
    keys: EncryptionKeys,
    compression: Compression,
    log: Log = lambda message: None,
) -> TakenSnapshot:
    """The member's maintenance snapshot, checked against its trailing SHA-256 as it streams, zstd'd, stored."""
    with etcd_gateway(source, password) as gateway:
        status = gateway.status()
        before = gateway.count()
        with gateway.snapshot() as chunks:
            stored = store_snapshot(
                chunks=chunks,
                check=EtcdSnapshotCheck(source.name),
                location=location,
                storage=storage,
                gpg=gpg,
                keys=keys,
                compression=compression,
                log=log,
            )
        after = gateway.count()
        endpoint = gateway.endpoint
    record = EtcdRecord(
        endpoint=endpoint,
        member_id=before.member_id,
        cluster_id=before.cluster_id,
        server_version=str(status.get("version", "")),
        revision=before.revision,
        revision_after=after.revision,
        raft_term=int(status.get("raftTerm", before.raft_term)),
        raft_index=int(status.get("raftIndex", 0)),
        key_count=before.keys,
        exact=before.revision == after.revision,
        db_bytes=stored.checked["db_bytes"],
    )
    exact = "exactly" if record.exact else f"between {record.revision} and {record.revision_after}, at least"
    log(f"etcd snapshot of {source.name} from {endpoint}: revision {exact} {record.revision}, {record.key_count} keys")
    return TakenSnapshot("etcd", stored, etcd=record)


def verify_snapshot(storage: Storage, taken: TakenSnapshot) -> None:
    """The stored object against what was sent (size, multipart ETag); deleted when they differ."""
    verify_receipt(storage, taken.stored.receipt)


def build_snapshot_manifest(taken: TakenSnapshot, *, run_id: str, scheduled_at: datetime) -> SnapshotManifest:
    stored = taken.stored
    details = stored.checked if isinstance(stored.checked, dict) else stored.checked.details()
    return SnapshotManifest(
        kind=taken.kind,  # type: ignore[arg-type]
        tool=TOOL_NAME,
        tool_version=tool_version(),
        source=stored.location.instance,
        tier=stored.location.tier.value,
        object_key=stored.location.object_key,
        run_id=run_id,
        scheduled_at=scheduled_at,
        started_at=stored.started_at,
        finished_at=stored.finished_at,
        compression=stored.compression,
        sizes=Sizes(
            raw_bytes=stored.snapshot_bytes,
            compressed_bytes=stored.compressed_bytes,
            encrypted_bytes=stored.receipt.size,
        ),
        snapshot_sha256=stored.snapshot_sha256,
        sha256=stored.receipt.sha256,
        etag=stored.receipt.etag,
        encryption=stored.encryption,
        check=CheckRecord(method=stored.check_method, passed=True, details=details),  # type: ignore[arg-type]
        consul=taken.consul,
        etcd=taken.etcd,
        stage_seconds=stored.stage_seconds,
    )


def commit_snapshot(storage: Storage, manifest: SnapshotManifest) -> str:
    """Writes the manifest beside the snapshot: the moment it starts to exist. Returns its key."""
    return commit_manifest(storage, manifest, KV_SNAPSHOT)


def back_up_snapshot(
    source: ConsulSource | EtcdSource,
    secret: str | None,
    *,
    location: BackupLocation,
    storage: Storage,
    gpg: Gpg,
    keys: EncryptionKeys,
    compression: Compression,
    log: Log = lambda message: None,
) -> SnapshotManifest:
    """One source's whole snapshot in one call: take, verify, commit. Returns the committed manifest.

    For scripts and tests; the flow runs the steps as separate tasks. `secret` is the Consul token or the
    etcd password.
    """
    taken = take_snapshot(
        source, secret, location=location, storage=storage, gpg=gpg, keys=keys, compression=compression, log=log
    )
    verify_snapshot(storage, taken)
    manifest = build_snapshot_manifest(taken, run_id=location.run_id, scheduled_at=location.taken_at)
    commit_snapshot(storage, manifest)
    return manifest


def take_snapshot(
    source: ConsulSource | EtcdSource,
    secret: str | None,
    *,
    location: BackupLocation,
    storage: Storage,
    gpg: Gpg,
    keys: EncryptionKeys,
    compression: Compression,
    log: Log = lambda message: None,
) -> TakenSnapshot:
    """Takes and stores one snapshot of either kind (see take_consul, take_etcd)."""
    if isinstance(source, ConsulSource):
        return take_consul(source, secret, location=location, storage=storage, gpg=gpg, keys=keys, log=log)
    return take_etcd(
        source, secret, location=location, storage=storage, gpg=gpg, keys=keys, compression=compression, log=log
    )
