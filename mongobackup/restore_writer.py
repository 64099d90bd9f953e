"""The writing side of a restore: the target collections, created, filled, indexed, verified, or dropped again.

`MongoWriter` is everything a restore writes into MongoDB and everything it must undo when the restore fails.
Documents go to a few insert threads (`Inserter`), each with a bounded queue, and a namespace always goes to
the same thread, so its documents keep their order (capped collections care). Indexes are built once on
full collections, as mongorestore does; TTL indexes last (see `create_ttl_indexes`).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable
from typing import Any

from bson import SON
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from mongobackup.errors import BackupError, first_line
from mongobackup.manifest import NamespaceRecord
from mongobackup.oplog_replay import OplogReplayer
from mongobackup.restore_targets import RestoreOptions, Target
from mongobackup.verify import Mismatch, Verdict, verify_database

#: Batches waiting per insert thread; the reader blocks beyond that, which in turn holds back gpg and S3.
QUEUE_BATCHES = 2


class TargetNotEmpty(BackupError):
    """The target already holds collections the restore would write: refused unless asked to drop them."""


class Inserter:
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
                        self._error = InsertFailed(collection.full_name, exc)
                continue
            with self._lock:
                self.inserted += len(documents)


class InsertFailed(BackupError):
    def __init__(self, ns: str, cause: BaseException):
        super().__init__(f"insert into {ns} failed: {first_line(cause)}")
        self.transient = False


class MongoWriter:
    """Everything the restore writes, and everything it must drop again when it fails."""

    def __init__(self, client: MongoClient, targets: dict[str, Target], options: RestoreOptions):
        self.client = client
        self.targets = [t for t in targets.values() if t.wanted and t.kind != "oplog"]
        self.options = options
        self.created: list[tuple[str, str]] = []  # (database, name) of what this restore created
        self._existing: dict[str, set[str]] = {}
        self._inserter: Inserter | None = None
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
        self._inserter = Inserter(self.options.parallel)

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
                self._create_indexes(target, [s for s in target.index_specs() if "expireAfterSeconds" not in s])
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
            for spec in t.index_specs()
            if "expireAfterSeconds" in spec
        }

    def create_ttl_indexes(self) -> Verdict:
        """TTL indexes, built last: the server's TTL monitor would otherwise delete documents that expired since
        the backup while the restore is still checking them. Returns a verdict on their presence."""
        verdict = Verdict("TTL indexes")
        for target in self.targets:
            specs = (
                [spec for spec in target.index_specs() if "expireAfterSeconds" in spec] if target.kind != "view" else []
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
