"""Restore: a stored backup streamed back into MongoDB, checked on the way in and verified at the end.

    S3 object -> size/SHA-256 tally -> gpg (DecryptingReader) -> zstd -> ArchiveReader -> insert_many

No stage holds more than a few chunks or insert batches and nothing touches the disk, so memory does not grow
with the size of the backup. The same code reads a stock `mongodump --archive` file (plain or `--gzip`).

The order of work, and why:
1. Prelude: the archive lists its namespaces first. Every target collection is checked (an existing one is
   refused unless `drop`) and created with its options (capped, collation, validator ...) before any data,
   so that at any later failure the restore knows exactly what it must drop.
2. Data: documents go to a few insert threads, each with a bounded queue, and a namespace always goes to the
   same thread, so its documents keep their order (capped collections care). Our archives hold one namespace
   after another: the threads then overlap inserting one with reading the next. mongodump interleaves
   namespaces: then several are inserted at once. The reader checks each namespace's CRC when it ends; its
   documents, CRC and digest are compared with the manifest there and then.
3. After the last collection: indexes (built once on full collections, as mongorestore does), views, and
   the verification of the restored data against the manifest, which describes the documents as dumped.
4. The oplog slice, replayed as plain CRUD (`mongobackup.oplog_replay`), moves the data from "as dumped" to
   the end of the dump window.
5. TTL indexes, last: built earlier, the target's TTL monitor could delete documents that expired since the
   backup while they are being verified, and fail a drill of a sound backup.
6. The object's size and SHA-256 against the manifest, once gpg has read all of it.
Any failure drops every collection and view the restore created: a target is either whole or untouched.
"""

from __future__ import annotations

import contextlib
import fnmatch
import gzip
import hashlib
import io
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import zstandard
from botocore.exceptions import BotoCoreError
from bson import SON
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from mongobackup.archive import (
    MAGIC,
    OPLOG_COLLECTION,
    OPLOG_DB,
    ArchiveError,
    ArchiveReader,
    DocumentsEvent,
    NamespaceEndEvent,
    NamespaceMetadata,
    parse_collection_metadata,
)
from mongobackup.crypto import Gpg
from mongobackup.errors import (
    BackupError,
    EncryptionError,
    PipelineError,
    StorageError,
    VerificationError,
    first_line,
)
from mongobackup.manifest import BackupManifest, NamespaceRecord
from mongobackup.oplog_replay import OplogReplayer, OplogReplayError
from mongobackup.plan import check_database_name
from mongobackup.redact import redact_uri
from mongobackup.storage import Storage
from mongobackup.streams import CHUNK_SIZE, CountingReader, zstd_decompressing_reader
from mongobackup.verify import Mismatch, StreamCheck, Verdict, check_object, index_record, verify_database

MIB = 1 << 20
#: Documents per insert_many, by size: big enough that round trips are noise, small enough to stay flat.
INSERT_BATCH_BYTES = 1 * MIB
#: Namespaces inserted at once; SecantusDB and small replica sets gain little beyond a few.
DEFAULT_PARALLEL = 4
#: Batches waiting per insert thread; the reader blocks beyond that, which in turn holds back gpg and S3.
QUEUE_BATCHES = 2
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class TargetNotEmpty(BackupError):
    """The target already holds collections the restore would write: refused unless asked to drop them."""


class RestoreFailed(PipelineError):
    """A stage of a restore failed; the message names the stage, the source object and what was cleaned up."""

    def __init__(self, stage: str, target: str, cause: BaseException, cleanup: str):
        super().__init__(stage, target, cause)
        self.cleanup = cleanup
        self.args = (f"{self.args[0]}; {cleanup}",)


@dataclass(frozen=True)
class RestoreOptions:
    """What to restore and how. Patterns are fnmatch patterns of source namespaces, `db.collection`."""

    target_database: str | None = None  # --as: restore under another name (archives of one database only)
    include: tuple[str, ...] = ()  # empty: every namespace
    exclude: tuple[str, ...] = ()
    drop: bool = False  # drop existing target collections first instead of refusing
    apply_oplog: bool = True
    verify: bool = True  # read the restored data back and compare it with the manifest
    parallel: int = DEFAULT_PARALLEL
    batch_bytes: int = INSERT_BATCH_BYTES

    def wants(self, namespace: str) -> bool:
        included = not self.include or any(fnmatch.fnmatchcase(namespace, p) for p in self.include)
        return included and not any(fnmatch.fnmatchcase(namespace, p) for p in self.exclude)


@dataclass
class RestoreProgress:
    """Where a restore is: handed to the progress callback after each batch."""

    object_bytes: int = 0  # of the stored object (or archive file) read so far
    object_total: int | None = None
    archive_bytes: int = 0  # uncompressed archive bytes parsed
    documents: int = 0  # documents written (read, for a verification without writing)
    namespace: str = ""


ProgressCallback = Callable[[RestoreProgress], None]


@dataclass
class RestoreResult:
    """What a restore (or a verification without writing) did."""

    source: str
    target: str  # redacted URI and database names, or "(verify only)"
    namespaces: list[NamespaceRecord]  # as read from the archive
    documents: int  # written (read, when verifying only)
    archive_bytes: int
    object_bytes: int
    verdict: Verdict
    seconds: float
    oplog_applied: int = 0
    oplog_skipped: int = 0

    @property
    def mb_per_s(self) -> float:
        """Uncompressed archive MB per second: the MongoDB-side rate, comparable with mongorestore's."""
        return self.archive_bytes / MIB / self.seconds if self.seconds > 0 else 0.0


# --- which namespaces go where -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One namespace of the archive and where it is restored."""

    source_db: str
    collection: str
    kind: str  # collection, view, timeseries, oplog
    metadata: dict[str, Any]
    database: str  # the target database
    wanted: bool

    @property
    def ns(self) -> str:
        return f"{self.database}.{self.collection}"

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.metadata.get("options") or {})

    def expected_record(self, stream: NamespaceRecord | None) -> NamespaceRecord:
        """What this namespace should look like restored, from the archive alone (no manifest)."""
        if self.kind == "view":
            return NamespaceRecord(collection=self.collection, type="view", view_on=self.options.get("viewOn"))
        indexes = [index_record(spec) for spec in self.metadata.get("indexes") or []]
        base = stream or NamespaceRecord(collection=self.collection, type="collection")
        return base.model_copy(update={"indexes": indexes})


def plan_targets(namespaces: Sequence[NamespaceMetadata], options: RestoreOptions) -> dict[str, Target]:
    """Where each namespace of the archive goes; ValueError when `--as` meets an archive of several databases."""
    databases = sorted({m.db for m in namespaces if m.db != OPLOG_DB})
    if options.target_database is not None:
        check_database_name(options.target_database)
        if len(databases) > 1:
            raise ValueError(
                f"--as {options.target_database}: the archive holds {len(databases)} databases "
                f"({', '.join(databases)}); restore them under their own names"
            )
    targets: dict[str, Target] = {}
    for meta in namespaces:
        if meta.db == OPLOG_DB and meta.collection == OPLOG_COLLECTION:
            targets[meta.ns] = Target(meta.db, meta.collection, "oplog", {}, "", options.apply_oplog)
            continue
        metadata = parse_collection_metadata(meta.metadata)
        kind = meta.type or metadata.get("type") or ""
        if kind not in ("collection", "view", "timeseries"):
            # mongodump 100.3.1 writes no type: a view is told apart by its viewOn option.
            kind = "view" if (metadata.get("options") or {}).get("viewOn") else "collection"
        # system.* collections are server internals (views live in system.views and come as views).
        wanted = options.wants(meta.ns) and not meta.collection.startswith("system.")
        targets[meta.ns] = Target(meta.db, meta.collection, kind, metadata, options.target_database or meta.db, wanted)
    return targets


# --- the data path -----------------------------------------------------------------------------------------


class _Inserter:
    """Inserts batches on `parallel` threads; a namespace always goes to the same thread (its order is kept)."""

    def __init__(self, parallel: int, queue_batches: int = QUEUE_BATCHES):
        self._lanes: list[queue.Queue[tuple[Any, list[bytes], bool] | None]] = [
            queue.Queue(maxsize=queue_batches) for _ in range(max(1, parallel))
        ]
        self._lane_of: dict[str, int] = {}
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self.inserted = 0
        self._threads = [
            threading.Thread(target=self._work, args=(lane,), name=f"restore-insert-{n}", daemon=True)
            for n, lane in enumerate(self._lanes)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, collection: Any, documents: list[bytes], ordered: bool) -> None:
        lane = self._lane_of.setdefault(collection.full_name, len(self._lane_of) % len(self._lanes))
        self._put(self._lanes[lane], (collection, documents, ordered))

    def finish(self) -> None:
        """Waits until every queued batch is inserted; raises the first insert failure."""
        for lane in self._lanes:
            self._put(lane, None)
        for thread in self._threads:
            thread.join()
        self._raise_if_failed()

    def abort(self) -> None:
        """Stops: queued batches are dropped, threads end. Never raises."""
        with self._lock:
            if self._error is None:
                self._error = RuntimeError("restore aborted")
        for lane in self._lanes:
            with contextlib.suppress(queue.Full):
                lane.put(None, timeout=5)
        for thread in self._threads:
            thread.join(timeout=30)

    def _put(self, lane: queue.Queue, item: Any) -> None:
        # Waits in slices: a dead insert thread would otherwise leave a full queue blocking the reader forever.
        while True:
            self._raise_if_failed()
            try:
                lane.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _work(self, lane: queue.Queue) -> None:
        while (item := lane.get()) is not None:
            if self._error is not None:
                continue  # draining after a failure
            collection, documents, ordered = item
            try:
                # bypass_document_validation: documents were valid when written; a validator added later (or
                # validationLevel moderate) must not reject them now. mongorestore does the same.
                collection.insert_many(
                    [RawBSONDocument(doc) for doc in documents], ordered=ordered, bypass_document_validation=True
                )
            except BaseException as exc:
                with self._lock:
                    if self._error is None:
                        self._error = _InsertFailed(collection.full_name, exc)
                continue
            with self._lock:
                self.inserted += len(documents)


class _InsertFailed(BackupError):
    def __init__(self, ns: str, cause: BaseException):
        super().__init__(f"insert into {ns} failed: {first_line(cause)}")
        self.transient = False


class _MongoWriter:
    """Everything the restore writes, and everything it must drop again when it fails."""

    def __init__(self, client: MongoClient, targets: dict[str, Target], options: RestoreOptions):
        self.client = client
        self.targets = [t for t in targets.values() if t.wanted and t.kind != "oplog"]
        self.options = options
        self.created: list[tuple[str, str]] = []  # (database, name) of what this restore created
        self._existing: dict[str, set[str]] = {}
        self._inserter: _Inserter | None = None
        self.data_done = False
        self.replayer: OplogReplayer | None = None

    def prepare(self) -> None:
        """Refuses (or with `drop`, drops) existing targets, then creates every collection before any data."""
        for database in sorted({t.database for t in self.targets}):
            self._existing[database] = set(self.client[database].list_collection_names())
        clashes = [t for t in self.targets if t.collection in self._existing[t.database]]
        if clashes and not self.options.drop:
            names = ", ".join(t.ns for t in clashes[:10]) + (" ..." if len(clashes) > 10 else "")
            raise TargetNotEmpty(
                f"the target already has {len(clashes)} of the collections to restore ({names}): "
                "pass --drop to replace them, or restore under another name with --as"
            )
        for target in clashes:
            self.client[target.database].drop_collection(target.collection)
            self._existing[target.database].discard(target.collection)
        for target in self.targets:
            if target.kind != "view":
                self._create(target, target.options)
        self._inserter = _Inserter(self.options.parallel)

    def _create(self, target: Target, options: dict[str, Any]) -> None:
        # Recorded before the command: if the server created it and the reply was lost, it is still dropped.
        self.created.append((target.database, target.collection))
        command = SON([("create", target.collection)])
        command.update(options)
        self.client[target.database].command(command)

    def insert(self, target: Target, documents: list[bytes]) -> None:
        assert self._inserter is not None, "prepare() first"
        ordered = bool(target.options.get("capped"))  # natural order is the point of a capped collection
        self._inserter.submit(self.client[target.database][target.collection], documents, ordered)

    @property
    def inserted(self) -> int:
        return self._inserter.inserted if self._inserter is not None else 0

    def finish_data(self) -> None:
        """After the last document: waits for the inserts, then builds indexes (TTL ones later) and creates views."""
        if self.data_done:
            return
        assert self._inserter is not None, "prepare() first"
        self._inserter.finish()
        for target in self.targets:
            if target.kind != "view":
                self._create_indexes(target, [s for s in _index_specs(target) if "expireAfterSeconds" not in s])
        for target in self.targets:
            if target.kind == "view":
                # A view is stored as its definition; it may name a collection restored after it, or none.
                view = {k: v for k, v in target.options.items() if k in ("viewOn", "pipeline", "collation")}
                self._create(target, view)
        self.data_done = True

    def _create_indexes(self, target: Target, specs: list[dict[str, Any]]) -> None:
        if specs:
            self.client[target.database].command(SON([("createIndexes", target.collection), ("indexes", specs)]))

    def deferred_ttl_indexes(self) -> set[tuple[str, str, str]]:
        """(database, collection, index) of the TTL indexes not built yet."""
        return {
            (t.database, t.collection, str(spec["name"]))
            for t in self.targets
            if t.kind != "view"
            for spec in _index_specs(t)
            if "expireAfterSeconds" in spec
        }

    def create_ttl_indexes(self) -> Verdict:
        """TTL indexes, built last: the server's TTL monitor would otherwise delete documents that expired since
        the backup while the restore is still checking them. Returns a verdict on their presence."""
        verdict = Verdict("TTL indexes")
        for target in self.targets:
            specs = (
                [spec for spec in _index_specs(target) if "expireAfterSeconds" in spec] if target.kind != "view" else []
            )
            self._create_indexes(target, specs)
            built = {ix["name"] for ix in self.client[target.database][target.collection].list_indexes()}
            verdict.mismatches += [
                Mismatch(target.ns, "indexes", f"TTL index {spec['name']}", "nothing")
                for spec in specs
                if spec["name"] not in built
            ]
        return verdict

    def verify(self, expected: Iterable[tuple[str, NamespaceRecord]], subject: str, reference: str) -> Verdict:
        """Reads back what was restored; `expected` pairs a target database with a record of what it should hold.

        TTL indexes are not built yet at this point (see create_ttl_indexes) and are left out of the comparison.
        """
        verdict = Verdict(subject, reference=reference)
        wanted = {(t.database, t.collection) for t in self.targets}
        deferred = self.deferred_ttl_indexes()
        by_database: dict[str, list[NamespaceRecord]] = {}
        for database, record in expected:
            if (database, record.collection) in wanted:  # left out by --include/--exclude: not restored
                indexes = [ix for ix in record.indexes if (database, record.collection, ix.name) not in deferred]
                record = record.model_copy(update={"indexes": indexes})
                by_database.setdefault(database, []).append(record)
        for database, records in by_database.items():
            verdict.extend(verify_database(self.client, database, records, subject=subject, reference=reference))
        return verdict

    def start_oplog(self, targets: dict[str, Target]) -> OplogReplayer:
        if self.replayer is None:
            mapping = {t.source_db: t.database for t in targets.values() if t.kind != "oplog"}
            self.replayer = OplogReplayer(
                self.client,
                mapping,
                wants=lambda ns: self.options.wants(ns) and ".system." not in ns,
                on_create=lambda db, name: self.created.append((db, name)),
            )
        return self.replayer

    def discard(self) -> str:
        """Drops what this restore created; returns what it did, for the error message. Never raises."""
        if self._inserter is not None:
            self._inserter.abort()
        dropped, failed = [], []
        for database, name in dict.fromkeys(self.created):
            try:
                self.client[database].drop_collection(name)
                dropped.append(f"{database}.{name}")
            except PyMongoError as exc:
                failed.append(f"{database}.{name} ({first_line(exc)})")
        if failed:
            return f"COULD NOT DROP what it wrote: {', '.join(failed)}; drop them by hand"
        if not dropped:
            return "nothing was written to the target"
        return f"dropped the {len(dropped)} collections and views it had created"


def _index_specs(target: Target) -> list[dict[str, Any]]:
    """The index specs of the archive's metadata, as createIndexes takes them (_id_ comes with the collection)."""
    return [
        {k: v for k, v in spec.items() if k != "ns"}
        for spec in target.metadata.get("indexes") or []
        if spec.get("name") != "_id_"
    ]


# --- the whole restore -------------------------------------------------------------------------------------


@dataclass
class _Run:
    """The state of one restore while it runs."""

    source: str
    target: str
    targets: dict[str, Target]
    check: StreamCheck
    writer: _MongoWriter | None
    options: RestoreOptions
    progress: RestoreProgress = field(default_factory=RestoreProgress)
    verdict: Verdict | None = None


def restore_stream(
    stream: BinaryIO,
    client: MongoClient | None,
    options: RestoreOptions = RestoreOptions(),
    *,
    manifest: BackupManifest | None = None,
    source: str = "archive",
    on_progress: ProgressCallback | None = None,
    object_progress: Callable[[], tuple[int, int | None]] | None = None,
    after_stream: Callable[[], list[Mismatch]] | None = None,
    oplog_tail: Iterable[bytes] | None = None,
) -> RestoreResult:
    """Restores a plain (uncompressed, decrypted) archive stream into `client`; client None: verify only.

    `after_stream` runs once the archive has ended and returns object-level mismatches (size, SHA-256).
    `oplog_tail`: oplog entries replayed after the archive's own slice, the same way (a point-in-time restore).
    Raises TargetNotEmpty before writing anything, RestoreFailed (naming the stage) on any later failure,
    after dropping what was written. Without a client nothing is written and the verdict is returned.
    """
    started = time.monotonic()
    archive = CountingReader(stream)  # type: ignore[arg-type]
    target_text = _target_text(client, {}, options)  # until the archive says which databases it holds
    run: _Run | None = None
    try:
        reader = ArchiveReader(archive, batch_bytes=options.batch_bytes)
        targets = plan_targets(reader.namespaces, options)
        target_text = _target_text(client, targets, options)
        kinds = {ns: t.kind for ns, t in targets.items()}
        check = StreamCheck(kinds, manifest, fail_fast=client is not None, subject=source)
        writer = _MongoWriter(client, targets, options) if client is not None else None
        run = _Run(source, target_text, targets, check, writer, options)
        if writer is not None:
            writer.prepare()
        _consume(run, reader, archive, on_progress, object_progress)
        _after_data(run)
        if writer is not None and oplog_tail is not None:
            _replay_tail(run, oplog_tail, manifest)
        if writer is not None:
            ttl = writer.create_ttl_indexes()
            if run.verdict is not None:
                run.verdict.mismatches += ttl.mismatches
            ttl.raise_if_failed()
        check.finish()
        if object_progress is not None:  # gpg has read the whole object by now
            run.progress.object_bytes, run.progress.object_total = object_progress()
        if after_stream is not None:
            _object_checks(run, after_stream())
    except TargetNotEmpty:
        raise
    except BaseException as exc:
        cleanup = (
            run.writer.discard() if run is not None and run.writer is not None else "nothing was written to the target"
        )
        if not isinstance(exc, Exception):  # Ctrl-C, SystemExit: cleaned up, and passed on as they are
            raise
        stage = "verify" if isinstance(exc, VerificationError) else _stage_of(exc)
        raise RestoreFailed(stage, f"restore of {source} into {target_text}", exc, cleanup) from exc
    # Restored: the verdict on the database, plus anything the stream showed. Verified only: the stream's.
    verdict = run.verdict if run.verdict is not None else check.verdict
    if verdict is not check.verdict:
        verdict.mismatches.extend(check.verdict.mismatches)
    replayer = run.writer.replayer if run.writer is not None else None
    return RestoreResult(
        source=source,
        target=target_text,
        namespaces=list(check.records.values()),
        documents=run.writer.inserted if run.writer is not None else run.progress.documents,
        archive_bytes=archive.bytes_read,
        object_bytes=run.progress.object_bytes,
        verdict=verdict,
        seconds=time.monotonic() - started,
        oplog_applied=replayer.applied if replayer else 0,
        oplog_skipped=replayer.skipped if replayer else 0,
    )


def _consume(
    run: _Run,
    reader: ArchiveReader,
    archive: CountingReader,
    on_progress: ProgressCallback | None,
    object_progress: Callable[[], tuple[int, int | None]] | None,
) -> None:
    for event in reader:
        target = run.targets[event.ns]
        if isinstance(event, NamespaceEndEvent):
            run.check.end(event.ns, event.collection, count=event.count, size=event.bytes, crc=event.crc)
            continue
        run.check.documents(event.ns, event.documents)
        if target.kind == "oplog":
            _replay(run, event)
        elif run.writer is not None and target.wanted:
            run.writer.insert(target, event.documents)
        progress = run.progress
        progress.archive_bytes = archive.bytes_read
        if run.writer is not None:
            progress.documents = run.writer.inserted
        elif target.kind != "oplog":
            progress.documents += len(event.documents)
        progress.namespace = target.ns if target.kind != "oplog" else "oplog"
        if object_progress is not None:
            progress.object_bytes, progress.object_total = object_progress()
        if on_progress is not None:
            on_progress(progress)


def _replay(run: _Run, event: DocumentsEvent) -> None:
    """Oplog entries: only once every collection has ended, and been verified as dumped."""
    if run.writer is None or not run.options.apply_oplog:
        return
    # Views hold no data (mongodump and our writer end them last, after the oplog): only collections count.
    open_namespaces = [
        ns for ns, t in run.targets.items() if t.kind not in ("oplog", "view") and ns not in run.check.records
    ]
    if open_namespaces:
        raise ArchiveError(
            f"the oplog comes before the end of {', '.join(open_namespaces)}: this archive "
            "interleaves its oplog with data, which a replay after the data cannot follow"
        )
    _after_data(run)
    replayer = run.writer.start_oplog(run.targets)
    for entry in event.documents:
        replayer.apply(entry)


def _replay_tail(run: _Run, entries: Iterable[bytes], manifest: BackupManifest | None) -> None:
    """Entries after the archive's slice (a point-in-time restore), replayed after it by the same replayer."""
    assert run.writer is not None
    replayer = run.writer.start_oplog(run.targets)
    if manifest is not None:  # a database whose archive holds no collection still maps to its target
        replayer.databases.setdefault(manifest.database, run.options.target_database or manifest.database)
    for entry in entries:
        replayer.apply(entry)


def _after_data(run: _Run) -> None:
    """Indexes, views and the verification of the data as dumped, once (before any oplog entry)."""
    if run.writer is None or run.writer.data_done:
        return
    run.writer.finish_data()
    if run.options.verify:
        reference = "the manifest" if run.check.manifest is not None else "the archive"
        run.verdict = run.writer.verify(_expected(run), f"{run.source} restored into {run.target}", reference)
        run.verdict.raise_if_failed()


def _expected(run: _Run) -> list[tuple[str, NamespaceRecord]]:
    """What each target database should hold: the manifest's records, else what the archive itself says."""
    manifest = run.check.manifest
    if manifest is not None:  # a manifest describes one database
        database = run.options.target_database or manifest.database
        return [(database, r) for r in manifest.namespaces if r.type != "oplog"]
    return [
        (t.database, t.expected_record(run.check.records.get(ns))) for ns, t in run.targets.items() if t.kind != "oplog"
    ]


def _object_checks(run: _Run, problems: list[Mismatch]) -> None:
    run.check.verdict.mismatches.extend(problems)
    if problems and run.writer is not None:
        raise VerificationError(
            f"{run.source}: the stored object does not match its manifest: " + "; ".join(map(str, problems))
        )


def _target_text(client: MongoClient | None, targets: dict[str, Target], options: RestoreOptions) -> str:
    if client is None:
        return "(verify only)"
    if not targets:  # not known yet: the archive's prelude has not been read
        return _describe_client(client) + (f" database {options.target_database}" if options.target_database else "")
    databases = sorted({t.database for t in targets.values() if t.kind != "oplog" and t.wanted})
    return f"{_describe_client(client)} database {', '.join(databases) or '(none)'}"


def _describe_client(client: MongoClient) -> str:
    nodes = ",".join(f"{host}:{port}" for host, port in sorted(client.topology_description.server_descriptions()))
    return redact_uri(f"mongodb://{nodes}")


def _stage_of(exc: BaseException) -> str:
    if isinstance(exc, EncryptionError):
        return "decrypt"
    if isinstance(exc, zstandard.ZstdError | gzip.BadGzipFile | EOFError):
        return "decompress"
    if isinstance(exc, ArchiveError):
        return "archive"
    if isinstance(exc, OplogReplayError):
        return "oplog"
    if isinstance(exc, StorageError | BotoCoreError):
        return "download"
    if isinstance(exc, PyMongoError | _InsertFailed):
        return "write"
    if isinstance(exc, ValueError):
        return "plan"
    return getattr(exc, "stage", None) or "restore"


# --- sources: a stored backup, or an archive file -----------------------------------------------------------


class _TallyReader(io.RawIOBase):
    """Reads the stored object and tallies what passes (size, SHA-256), to check against the manifest."""

    def __init__(self, body: Any):
        super().__init__()
        self._body = body
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._body.read(len(buffer))
        except Exception as exc:  # python-gnupg's copy thread swallows it: keep it for the error report
            self.error = exc
            raise
        n = len(data)
        buffer[:n] = data
        self.sha256.update(data)
        self.size += n
        return n

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._body.close()
        super().close()


def restore_backup(
    storage: Storage,
    object_key: str,
    gpg: Gpg,
    client: MongoClient | None,
    options: RestoreOptions = RestoreOptions(),
    *,
    manifest: BackupManifest | None,
    passphrase: str | None = None,
    on_progress: ProgressCallback | None = None,
    oplog_tail: Iterable[bytes] | None = None,
) -> RestoreResult:
    """Restores (client None: verifies) one stored backup: S3 -> gpg -> zstd -> archive -> MongoDB.

    `manifest` None only for a backup the caller knowingly restores uncommitted: then only the archive's own
    CRCs vouch for it. With a manifest, the object's size is checked before anything is written (a truncated
    or replaced object is refused at once) and its SHA-256 once it has been read in full.
    """
    where = storage.where(object_key)
    info = storage.head(object_key)
    if info is None:
        raise StorageError(f"{where}: no such object")
    if manifest is not None and info.size != manifest.sizes.encrypted_bytes:
        raise VerificationError(
            f"{where}: the stored object is {info.size} bytes, its manifest says "
            f"{manifest.sizes.encrypted_bytes}: truncated or replaced; nothing was restored"
        )
    tally = _TallyReader(storage.open_read(object_key))
    decrypted = gpg.decrypting_reader(tally, name=where, passphrase=passphrase)  # type: ignore[arg-type]
    plain = zstd_decompressing_reader(decrypted)  # type: ignore[arg-type]

    def after_stream() -> list[Mismatch]:
        if manifest is None:
            return []
        return check_object(manifest, size=tally.size, sha256=tally.sha256.hexdigest(), where=where)

    try:
        return restore_stream(
            plain,
            client,
            options,
            manifest=manifest,
            source=where,
            on_progress=on_progress,
            object_progress=lambda: (tally.size, info.size),
            after_stream=after_stream,
            oplog_tail=oplog_tail,
        )
    except RestoreFailed as exc:
        if tally.error is not None:  # the download broke: gpg only saw a short stream, say what really failed
            raise RestoreFailed(
                "download",
                exc.target,
                StorageError(f"{where}: read failed: {tally.error}", transient=True),
                exc.cleanup,
            ) from exc
        raise
    finally:
        decrypted.close()


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


# --- the fire drill ----------------------------------------------------------------------------------------

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


__all__ = [
    "DEFAULT_PARALLEL",
    "RestoreProgress",
    "RestoreFailed",
    "RestoreOptions",
    "RestoreResult",
    "Target",
    "TargetNotEmpty",
    "drill_restore",
    "open_archive_file",
    "plan_targets",
    "restore_backup",
    "restore_stream",
    "scratch_database_name",
]
