"""Insert threads of a restore: batches of raw documents written by a few threads, each with a bounded queue.

A namespace always goes to the same thread, so its documents keep their order (capped collections care). Our
archives hold one namespace after another: the threads then overlap inserting one with reading the next;
mongodump interleaves namespaces: then several are inserted at once. This is mongorestore's default too (four
collections at once, one insertion worker per collection); spreading one collection's batches over several
threads was measured slower on the local server, whose inserts contend for the same two cores. The reader blocks
when a thread's queue is full, which in turn holds back gpg and S3: at most `parallel` x (`QUEUE_BATCHES` + 1)
batches are in memory at once (4 x 3 x 1 MiB with the defaults), whatever the size of the backup.

Each batch carries the digest of its documents (computed once, by the reader's `StreamCheck`); the thread adds it
to its collection's `acknowledged` digest only once the server has acknowledged inserting the whole batch. The
streamed verification (`restore_verify.verify_streamed`) compares those digests with the manifest."""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import Any

from bson.raw_bson import RawBSONDocument

from mongobackup.errors import BackupError, one_line
from mongobackup.manifest import DocumentDigest

#: Batches waiting per insert thread; the reader blocks beyond that, which in turn holds back gpg and S3.
QUEUE_BATCHES = 2

#: (collection, raw documents, ordered, label for errors, the batch's digest)
_Batch = tuple[Any, list[bytes], bool, str, DocumentDigest | None]


class Inserter:
    """Inserts batches on `parallel` threads; a namespace always goes to the same thread (its order is kept)."""

    def __init__(self, parallel: int, queue_batches: int = QUEUE_BATCHES):
        self._lanes: list[queue.Queue[_Batch | None]] = [
            queue.Queue(maxsize=queue_batches) for _ in range(max(1, parallel))
        ]
        self._lane_of: dict[str, int] = {}
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self.inserted = 0
        #: collection full name -> digest of the documents the server acknowledged inserting into it.
        self.acknowledged: dict[str, DocumentDigest] = {}
        self._threads = [
            threading.Thread(target=self._work, args=(lane,), name=f"restore-insert-{n}", daemon=True)
            for n, lane in enumerate(self._lanes)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self,
        collection: Any,
        documents: list[bytes],
        ordered: bool,
        label: str = "",
        digest: DocumentDigest | None = None,
    ) -> None:
        """Queues a batch for `collection`; `label` names it in errors (the final namespace of a staging one);
        `digest`, the batch's, is added to `acknowledged` once the server has acknowledged the batch."""
        lane = self._lane_of.setdefault(collection.full_name, len(self._lane_of) % len(self._lanes))
        self._put(self._lanes[lane], (collection, documents, ordered, label or collection.full_name, digest))

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
            collection, documents, ordered, label, digest = item
            try:
                # bypass_document_validation: documents were valid when written; a validator added later (or
                # validationLevel moderate) must not reject them now. mongorestore does the same.
                result = collection.insert_many(
                    [RawBSONDocument(doc) for doc in documents], ordered=ordered, bypass_document_validation=True
                )
            except BaseException as exc:
                with self._lock:
                    if self._error is None:
                        self._error = InsertFailed(label, exc)
                continue
            # With an acknowledged write concern insert_many returns only once the server has inserted every
            # document (a write error raises); unacknowledged, nothing is vouched for: the verification says so.
            with self._lock:
                self.inserted += len(documents)
                if digest is not None and result.acknowledged:
                    self.acknowledged.setdefault(collection.full_name, DocumentDigest()).merge(digest)


class InsertFailed(BackupError):
    def __init__(self, ns: str, cause: BaseException):
        super().__init__(f"insert into {ns} failed: {one_line(cause)}")
        self.transient = False
