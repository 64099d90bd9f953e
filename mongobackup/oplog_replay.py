"""Replay of an archive's oplog slice as plain CRUD, for servers without `applyOps` (SecantusDB, Atlas tiers).

A backup's oplog slice holds what was written to its database while the dump ran. Replaying it over the
restored collections brings them from "as each collection was scanned" to the single point in time at which
the dump ended. Every operation is applied so that applying it twice, or to data that already has it, gives
the same result: the slice starts at the last entry before the dump (`$gte`), which the data already holds.

    i  insert          -> replace_one({_id}, doc, upsert): the document as it was inserted
    u  update          -> replacement: replace_one(o2, o, upsert); `$set`/`$unset` (v1): update_one(o2, o);
                          `$v: 2` diffs (MongoDB's {u, i, d, s<field>} and SecantusDB's {updatedFields,
                          removedFields, truncatedArrays}): translated to $set/$unset and a $push/$slice
    d  delete          -> delete_one(o)
    c  command         -> create, drop, createIndexes, commitIndexBuild, dropIndexes, renameCollection within
                          the database, collMod, and applyOps (a transaction) entry by entry
    n  no-op           -> skipped
Anything else fails the replay (naming the entry): a half-replayed slice is not a consistent backup.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import bson
from bson import SON
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

from mongobackup.errors import BackupError

_INDEX_NOT_FOUND = 27
_NAMESPACE_NOT_FOUND = 26
#: Commands that change nothing a restore keeps (index builds are replayed at their commit).
_IGNORED_COMMANDS = frozenset({"startIndexBuild", "abortIndexBuild", "commitTransaction", "abortTransaction"})


class OplogReplayError(BackupError):
    """An oplog entry could not be replayed; the message names the entry (ts, op, ns) and the reason."""


def update_operations(o: Mapping[str, Any]) -> tuple[str, Any]:
    """What an `op: u` entry's `o` does: ("replace", document) or ("update", [update documents, in order])."""
    version = o.get("$v")
    if version == 2 and "diff" in o:
        return "update", diff_to_updates(o["diff"])
    keys = [key for key in o if key != "$v"]
    if any(key.startswith("$") for key in keys):
        return "update", [{key: o[key] for key in keys}]  # v1: $set / $unset, already idempotent
    return "replace", o


def diff_to_updates(diff: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A `$v: 2` update diff as update documents: a $push/$slice for array truncations first, then $set/$unset.

    Two documents because MongoDB refuses a $push and a $set on the same array in one update.
    """
    sets: dict[str, Any] = {}
    unsets: dict[str, Any] = {}
    truncations: dict[str, int] = {}
    if any(key in diff for key in ("updatedFields", "removedFields", "truncatedArrays")):
        sets.update(diff.get("updatedFields") or {})
        unsets.update({name: "" for name in diff.get("removedFields") or []})
        truncations.update({t["field"]: int(t["newSize"]) for t in diff.get("truncatedArrays") or []})
    else:
        _object_diff(diff, "", sets, unsets, truncations)
    updates: list[dict[str, Any]] = []
    if truncations:
        updates.append({"$push": {path: {"$each": [], "$slice": size} for path, size in truncations.items()}})
    change: dict[str, Any] = {}
    if sets:
        change["$set"] = sets
    if unsets:
        change["$unset"] = unsets
    if change:
        updates.append(change)
    return updates


def _object_diff(
    diff: Mapping[str, Any], prefix: str, sets: dict[str, Any], unsets: dict[str, Any], truncations: dict[str, int]
) -> None:
    for key, value in diff.items():
        if key in ("u", "i"):  # updated and inserted fields: both a $set
            sets.update({prefix + name: field for name, field in value.items()})
        elif key == "d":
            unsets.update({prefix + name: "" for name in value})
        elif key.startswith("s") and len(key) > 1:
            _sub_diff(value, prefix + key[1:], sets, unsets, truncations)
        else:
            raise ValueError(f"unknown field {key!r} in an update diff")


def _sub_diff(
    diff: Mapping[str, Any], path: str, sets: dict[str, Any], unsets: dict[str, Any], truncations: dict[str, int]
) -> None:
    if diff.get("a") is not True:
        _object_diff(diff, path + ".", sets, unsets, truncations)
        return
    for key, value in diff.items():  # an array: l (new length), u<index> (new element), s<index> (sub-diff)
        if key == "a":
            continue
        if key == "l":
            truncations[path] = int(value)
        elif key.startswith("u") and key[1:].isdigit():
            sets[f"{path}.{key[1:]}"] = value
        elif key.startswith("s") and key[1:].isdigit():
            _sub_diff(value, f"{path}.{key[1:]}", sets, unsets, truncations)
        else:
            raise ValueError(f"unknown field {key!r} in an array diff of {path}")


class OplogReplayer:
    """Applies oplog entries of the archive's databases to their restored copies.

    `databases` maps each source database to its target; entries of other databases are skipped, and so are
    namespaces `wants` refuses (those left out of the restore). `collection_name(database, collection)` is the
    name a target collection has on the server while the restore runs (a staging name; default: its own).
    `on_create` learns of each collection the replay creates, so a failed restore drops those too; `on_view`,
    when given, receives each view the slice creates instead of it being created (views come after the swap).
    """

    def __init__(
        self,
        client: MongoClient,
        databases: Mapping[str, str],
        *,
        wants: Callable[[str], bool],
        on_create: Callable[[str, str], None],
        collection_name: Callable[[str, str], str] = lambda database, collection: collection,
        on_view: Callable[[str, str, dict[str, Any]], None] | None = None,
    ):
        self.client = client
        self.databases = dict(databases)
        self.wants = wants
        self.on_create = on_create
        self.name = collection_name
        self.on_view = on_view
        self._known: dict[str, set[str]] = {}
        self.applied = 0
        self.skipped = 0

    def apply(self, raw: bytes) -> None:
        entry = RawBSONDocument(raw)
        try:
            self._apply(entry)
        except (PyMongoError, ValueError, KeyError, TypeError) as exc:
            raise OplogReplayError(f"oplog entry {_describe(entry)}: {exc}") from exc

    def _apply(self, entry: Mapping[str, Any]) -> None:
        op, ns = entry.get("op"), str(entry.get("ns", ""))
        if op == "c" and "applyOps" in entry["o"]:
            # A transaction: logged under admin.$cmd, its entries carry their own namespaces.
            for inner in entry["o"]["applyOps"]:
                self._apply(inner)
            return
        source_db, _, name = ns.partition(".")
        if op == "n" or source_db not in self.databases:
            self.skipped += 1
            return
        if op == "c":
            self._command(source_db, entry["o"])
            return
        if not self.wants(ns):
            self.skipped += 1
            return
        collection = self._collection(source_db, name)
        document = entry["o"]
        if op == "i":
            collection.replace_one({"_id": document["_id"]}, document, upsert=True)
        elif op == "u":
            self._update(collection, entry["o2"], document)
        elif op == "d":
            collection.delete_one(document)
        else:
            raise ValueError(f"op {op!r} is not one a replay knows")
        self.applied += 1

    def _update(self, collection: Any, selector: Mapping[str, Any], o: Mapping[str, Any]) -> None:
        kind, change = update_operations(o)
        if kind == "replace":
            collection.replace_one(selector, change, upsert=True)
            return
        # No upsert: a diff of a document that is gone (deleted later in the slice) has nothing to apply to.
        for update in change:
            collection.update_one(selector, update)

    def _collection(self, source_db: str, name: str) -> Any:
        database = self.databases[source_db]
        name = self.name(database, name)
        self._note(database, name)
        return self.client[database][name]

    def _note(self, database: str, name: str) -> None:
        """Tells `on_create` of a collection the replay is about to create (a write to it creates it)."""
        if database not in self._known:
            self._known[database] = set(self.client[database].list_collection_names())
        if name not in self._known[database]:
            self.on_create(database, name)
            self._known[database].add(name)

    # --- commands ----------------------------------------------------------------------------------------

    def _command(self, source_db: str, raw: Mapping[str, Any]) -> None:
        command = bson.decode(raw.raw) if isinstance(raw, RawBSONDocument) else dict(raw)
        verb = next(iter(command), "")
        if verb in _IGNORED_COMMANDS:
            self.skipped += 1
            return
        handler = {
            "create": self._create,
            "drop": self._drop,
            "createIndexes": self._create_indexes,
            "commitIndexBuild": self._create_indexes,
            "dropIndexes": self._drop_indexes,
            "deleteIndexes": self._drop_indexes,
            "renameCollection": self._rename,
            "collMod": self._coll_mod,
        }.get(verb)
        if handler is None:
            raise ValueError(f"command {verb!r} cannot be replayed as plain operations")
        target = command[verb]
        name = target.partition(".")[2] if verb == "renameCollection" else str(target)
        if not self.wants(f"{source_db}.{name}"):
            self.skipped += 1
            return
        handler(self.databases[source_db], command)
        self.applied += 1

    def _create(self, database: str, command: dict[str, Any]) -> None:
        if "viewOn" in command and self.on_view is not None:
            self.on_view(database, command["create"], {k: v for k, v in command.items() if k != "create"})
            return
        name = self.name(database, command["create"])
        if name in self.client[database].list_collection_names():
            return  # already restored from the data, or replayed before
        options = SON([("create", name)])
        options.update({k: v for k, v in command.items() if k not in ("create", "idIndex")})
        self._note(database, name)
        self.client[database].command(options)

    def _drop(self, database: str, command: dict[str, Any]) -> None:
        self.client[database].drop_collection(self.name(database, command["drop"]))

    def _create_indexes(self, database: str, command: dict[str, Any]) -> None:
        verb = next(iter(command))
        name = self.name(database, command[verb])
        specs = command.get("indexes") or [{k: v for k, v in command.items() if k != verb}]
        cleaned = [{k: v for k, v in spec.items() if k not in ("ns", "entryFormat")} for spec in specs]
        self._note(database, name)
        self.client[database].command(SON([("createIndexes", name), ("indexes", cleaned)]))

    def _drop_indexes(self, database: str, command: dict[str, Any]) -> None:
        verb = next(iter(command))
        try:
            name = self.name(database, command[verb])
            self.client[database].command(SON([("dropIndexes", name), ("index", command["index"])]))
        except OperationFailure as exc:
            if exc.code not in (_INDEX_NOT_FOUND, _NAMESPACE_NOT_FOUND):
                raise

    def _rename(self, database: str, command: dict[str, Any]) -> None:
        source_db, _, old = str(command["renameCollection"]).partition(".")
        to_db, _, new = str(command["to"]).partition(".")
        if to_db != source_db:
            raise ValueError(f"a rename across databases ({source_db} -> {to_db}) cannot be replayed")
        old, new = self.name(database, old), self.name(database, new)
        names = self.client[database].list_collection_names()
        if old not in names and new in names:
            return  # replayed before
        self._note(database, new)
        # dropTarget always: the rename succeeded when it was first made, so a target that exists now can only
        # be a replay's own leftover (the slice replayed before, or a later insert already replayed into it).
        self.client.admin.command(
            SON([("renameCollection", f"{database}.{old}"), ("to", f"{database}.{new}"), ("dropTarget", True)])
        )

    def _coll_mod(self, database: str, command: dict[str, Any]) -> None:
        command = dict(command)
        command["collMod"] = self.name(database, command["collMod"])
        self.client[database].command(SON(command))


def _describe(entry: Mapping[str, Any]) -> str:
    ts = entry.get("ts")
    when = f"ts ({ts.time}, {ts.inc})" if hasattr(ts, "time") else "without ts"
    return f"{when}, op {entry.get('op')!r} on {entry.get('ns', '')!r}"
