"""The oplog as a stream: every entry from a timestamp on, in oplog order, through a tailable await cursor.

Only what a tailable cursor's `getMore` reads past the cursor's opening is trusted as it comes: a server hands
those out up to the point below which every write has committed (its visibility point), so an entry never
arrives after a later one. What the opening `find` matched, and what a plain query returns, are not so bounded
on every server: SecantusDB answers them from one read of the oplog, which may hold a later entry while an
earlier one is still committing, and starts the cursor's tail from a second read, losing what committed in
between (and it hands out the rest of what the `find` matched before the tail). So the cursor is opened at the
newest entry (its `find` matches next to nothing, and that is dropped), and once the first tailed entry
arrives, everything from the start up to it is read with a plain query: by then every one of those entries
has committed, and none after them is included. On MongoDB this only reads again what the cursor would have
returned; it runs once per cursor.

`$gte` rather than `$gt` on `ts`: some servers answer an exclusive lower bound very slowly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from bson import SON, Int64, Timestamp
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from pymongo.errors import PyMongoError

RAW = CodecOptions(document_class=RawBSONDocument)
BATCH_ENTRIES = 1000
#: The opening `find` matches the newest entry and what arrives meanwhile: a handful, never this many.
FIND_BATCH_ENTRIES = 100_000


class OplogTail:
    """Batches of raw oplog entries with `ts >= start`; an empty batch means the wait for new ones ended."""

    def __init__(self, client: MongoClient, start: Timestamp, *, await_ms: int):
        self._local = client.get_database("local", codec_options=RAW)
        self.start = start
        self.await_ms = await_ms
        self._cursor_id = 0

    def batches(self) -> Iterator[list[RawBSONDocument]]:
        """Until the server ends the cursor (or the caller stops iterating and closes it). An empty batch: the
        wait for new entries ended with none (or the catch-up has not begun yet)."""
        newest = self._local["oplog.rs"].find_one({}, projection={"ts": 1}, sort=[("$natural", -1)])
        opened_at = max(self.start, newest["ts"]) if newest is not None else self.start
        self._command(
            SON(
                [
                    ("find", "oplog.rs"),
                    ("filter", {"ts": {"$gte": opened_at}}),
                    ("tailable", True),
                    ("awaitData", True),
                    # All of what it matches in the reply: the first getMore must come from the tail.
                    ("batchSize", FIND_BATCH_ENTRIES),
                ]
            )
        )
        yield []
        caught_up = False
        while self._cursor_id:
            reply = self._command(
                SON(
                    [
                        ("getMore", Int64(self._cursor_id)),
                        ("collection", "oplog.rs"),
                        ("batchSize", BATCH_ENTRIES),
                        ("maxTimeMS", self.await_ms),
                    ]
                )
            )
            batch = list(reply["nextBatch"])
            if batch and not caught_up:
                caught_up = True
                yield from self._before(batch[0]["ts"])
            yield batch

    def _before(self, first_tailed: Timestamp) -> Iterator[list[RawBSONDocument]]:
        """Every entry from the start up to (not including) the cursor's first tailed one, in batches."""
        found = self._local["oplog.rs"].find({"ts": {"$gte": self.start, "$lt": first_tailed}}).sort("$natural", 1)
        batch: list[RawBSONDocument] = []
        for entry in found.batch_size(BATCH_ENTRIES):
            batch.append(entry)
            if len(batch) == BATCH_ENTRIES:
                yield batch
                batch = []
        if batch:
            yield batch

    def _command(self, command: SON) -> RawBSONDocument:
        reply = self._local.command(command, codec_options=RAW)["cursor"]
        self._cursor_id = int(reply["id"])
        return reply

    def close(self) -> None:
        if self._cursor_id:
            cursor_id, self._cursor_id = self._cursor_id, 0
            # Best effort: a cursor whose connection is gone dies with it, or times out on the server.
            with contextlib.suppress(PyMongoError):
                self._local.command(SON([("killCursors", "oplog.rs"), ("cursors", [Int64(cursor_id)])]))
