"""The oplog as a stream: every entry from a timestamp on, in oplog order, through a tailable await cursor.

The cursor is driven by explicit `find` / `getMore` commands rather than a driver cursor, so that the first
batch and the ones after it can be told apart: a server may answer the `find` from one read of the oplog and
start the cursor's tail from a later one (SecantusDB does), losing the entries committed in between. So once
the first later batch arrives, the entries between the first batch's last and that batch's first are read
again with a plain query (the bridge) and handed out before it. On a server without that gap (MongoDB) the
bridge finds nothing new; either way it runs once per cursor.

`$gte` rather than `$gt` on `ts` everywhere: some servers answer an exclusive lower bound very slowly.
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


class OplogTail:
    """Batches of raw oplog entries with `ts >= start`; an empty batch means the wait for new ones ended."""

    def __init__(self, client: MongoClient, start: Timestamp, *, await_ms: int):
        self._local = client.get_database("local", codec_options=RAW)
        self.start = start
        self.await_ms = await_ms
        self._cursor_id = 0

    def batches(self) -> Iterator[list[RawBSONDocument]]:
        """Until the server ends the cursor (or the caller stops iterating and closes it)."""
        reply = self._command(
            SON(
                [
                    ("find", "oplog.rs"),
                    ("filter", {"ts": {"$gte": self.start}}),
                    ("tailable", True),
                    ("awaitData", True),
                    ("batchSize", BATCH_ENTRIES),
                ]
            )
        )
        first = list(reply["firstBatch"])
        yield first
        # Exclusive after the first batch's last entry (its whole timestamp group came in one read), else
        # inclusive from the start (the caller skips what it has).
        bridge_from, inclusive = (first[-1]["ts"], False) if first else (self.start, True)
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
            if batch and bridge_from is not None:
                batch = self._bridge(bridge_from, inclusive, batch[0]["ts"]) + batch
                bridge_from = None
            yield batch

    def _bridge(self, after: Timestamp, inclusive: bool, before: Timestamp) -> list[RawBSONDocument]:
        """Entries the cursor's tail may have skipped: after the first batch, before its first later entry."""
        found = self._local["oplog.rs"].find({"ts": {"$gte": after, "$lt": before}}).sort("$natural", 1)
        return [entry for entry in found if inclusive or entry["ts"] > after]

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
