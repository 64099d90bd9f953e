"""The writing side of a restore: staging collections created, filled, indexed and verified, then swapped in.

Nothing is written under a target collection's own name until the whole backup has been read and verified:
every collection is restored under a staging name (`staging.staging_name`) in the target database, with the
run's lease beside it. Once the stream has ended and every check passed, `swap` moves each staging
collection into place with one `renameCollection` (`dropTarget`), then creates the views. Before the swap,
`discard` drops the staging collections and the lease: the target is exactly as it was.

A server whose `renameCollection` loses collection options (SecantusDB 0.7 does: the options of the renamed
collection are gone) is found out by a probe on a throwaway staging collection; there, a collection with
options (capped, collation, validator, time series) is created under its name with them and filled from its
verified staging copy instead, which is not atomic; so is a time-series collection everywhere (MongoDB does not
rename those). Collections without options are renamed everywhere.
"""

from __future__ import annotations

from typing import Any

from bson import SON
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from mongobackup.dump import RAW
from mongobackup.errors import BackupError, one_line
from mongobackup.manifest import DocumentDigest
from mongobackup.oplog_replay import OplogReplayer
from mongobackup.restore_inserter import Inserter
from mongobackup.restore_targets import RestoreOptions, Target
from mongobackup.staging import Lease, is_reserved, new_run_id, probe_names, staging_name, sweep
from mongobackup.verify import READ_BATCH_DOCUMENTS, Mismatch, Verdict

#: Index options that change what an index does: compared between the archive and what was built.
INDEX_OPTIONS = ("unique", "sparse", "expireAfterSeconds", "partialFilterExpression", "collation", "hidden")
#: Collection options compared between the archive and the staging collection (the server may add others).
COLLECTION_OPTIONS = ("capped", "size", "max", "collation", "validator", "validationLevel", "validationAction")
_VIEW_OPTIONS = ("viewOn", "pipeline", "collation")


class TargetNotEmpty(BackupError):
    """The target already holds collections the restore would write: refused unless asked to drop them."""


class MongoWriter:
    """Everything a restore writes, where (staging names until the swap), and how to take it back."""

    def __init__(self, client: MongoClient, targets: dict[str, Target], options: RestoreOptions, source: str = ""):
        """`source` (the object's address) goes into the lease, for whoever finds the run's leftovers."""
        self.client = client
        self.targets = [t for t in targets.values() if t.wanted and t.kind != "oplog"]
        self.options = options
        self.source = source
        self.run_id = new_run_id()
        #: (database, final name) -> staging name, for every collection this run stages.
        self.staged: dict[tuple[str, str], str] = {}
        self.views: list[tuple[str, str, dict[str, Any]]] = []  # (database, name, create options), after the swap
        self.swapped: list[str] = []
        self._existing: dict[str, set[str]] = {}
        self._leases: dict[str, Lease] = {}
        self._inserter: Inserter | None = None
        self._keeps_options: dict[str, bool] = {}
        self.data_done = False
        self.replayer: OplogReplayer | None = None

    def prepare(self) -> None:
        """Sweeps what dead restores left, refuses existing targets unless `drop`, takes the lease and creates
        every staging collection before any data."""
        for database in sorted({t.database for t in self.targets}):
            sweep(self.client, database)
            names = self.client[database].list_collection_names()
            self._existing[database] = {name for name in names if not is_reserved(name)}
        clashes = [t for t in self.targets if t.collection in self._existing[t.database]]
        if clashes and not self.options.drop:
            names_text = ", ".join(t.ns for t in clashes[:10]) + (" ..." if len(clashes) > 10 else "")
            raise TargetNotEmpty(
                f"the target already has {len(clashes)} of the collections to restore ({names_text}): "
                "pass --drop to replace them, or restore under another name with --as"
            )
        for database in sorted(self._existing):
            lease = Lease(self.client, database, self.run_id, self.source)
            self._leases[database] = lease  # before it is written: a lost reply still gets it dropped
            lease.take()
        for target in self.targets:
            if target.kind == "view":
                view = {k: v for k, v in target.options.items() if k in _VIEW_OPTIONS}
                self.views.append((target.database, target.collection, view))
            else:
                self._create(target.database, self.staging(target.database, target.collection), target.options)
        self._inserter = Inserter(self.options.parallel)

    def staging(self, database: str, collection: str) -> str:
        """The staging name of a target collection, registered for the swap (the oplog may add new ones)."""
        key = (database, collection)
        if key not in self.staged:
            self.staged[key] = staging_name(database, self.run_id, collection)
        return self.staged[key]

    def _create(self, database: str, name: str, options: dict[str, Any]) -> None:
        command = SON([("create", name)])
        command.update(options)
        self.client[database].command(command)

    def insert(self, target: Target, documents: list[bytes], digest: DocumentDigest | None = None) -> None:
        """Queues a batch; `digest`, the batch's, counts for `verify_streamed` once the server acknowledged it."""
        assert self._inserter is not None, "prepare() first"
        ordered = bool(target.options.get("capped"))  # natural order is the point of a capped collection
        collection = self.client[target.database][self.staging(target.database, target.collection)]
        self._inserter.submit(collection, documents, ordered, label=target.ns, digest=digest)

    @property
    def inserted(self) -> int:
        return self._inserter.inserted if self._inserter is not None else 0

    def finish_data(self) -> None:
        """After the last document: waits for the inserts, then builds the indexes but the TTL ones."""
        if self.data_done:
            return
        assert self._inserter is not None, "prepare() first"
        self._inserter.finish()
        for target in self.targets:
            if target.kind != "view":
                self._create_indexes(target, [s for s in target.index_specs() if "expireAfterSeconds" not in s])
        self.data_done = True

    def _create_indexes(self, target: Target, specs: list[dict[str, Any]]) -> None:
        if specs:
            name = self.staging(target.database, target.collection)
            self.client[target.database].command(SON([("createIndexes", name), ("indexes", specs)]))

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
        present = self._present()
        for target in self.targets:
            if target.kind == "view" or (target.database, target.collection) not in present:
                continue
            specs = [spec for spec in target.index_specs() if "expireAfterSeconds" in spec]
            self._create_indexes(target, specs)
            name = self.staging(target.database, target.collection)
            built = {ix["name"] for ix in self.client[target.database][name].list_indexes()}
            verdict.mismatches += [
                Mismatch(target.ns, "indexes", f"TTL index {spec['name']}", "nothing")
                for spec in specs
                if spec["name"] not in built
            ]
        return verdict

    def _present(self) -> set[tuple[str, str]]:
        """(database, final name) of the staged collections that exist now (the oplog may have dropped some)."""
        present = set()
        for database in self._existing:
            names = set(self.client[database].list_collection_names())
            present |= {
                (db, final) for (db, final), staging in self.staged.items() if db == database and staging in names
            }
        return present

    @property
    def acknowledged(self) -> dict[str, DocumentDigest]:
        """`Inserter.acknowledged`: "database.staging name" -> digest of the documents the server acknowledged."""
        return self._inserter.acknowledged if self._inserter is not None else {}

    def check_options(self) -> list[Mismatch]:
        """The staging collections' options and index options against the archive's, once everything is built."""
        problems: list[Mismatch] = []
        present = self._present()
        for target in self.targets:
            if target.kind == "view" or (target.database, target.collection) not in present:
                continue
            name = self.staging(target.database, target.collection)
            problems += _option_mismatches(self.client, target, target.database, name)
        return problems

    def start_oplog(self, targets: dict[str, Target]) -> OplogReplayer:
        if self.replayer is None:
            mapping = {t.source_db: t.database for t in targets.values() if t.kind != "oplog"}
            self.replayer = OplogReplayer(
                self.client,
                mapping,
                wants=lambda ns: self.options.wants(ns) and ".system." not in ns,
                on_create=lambda db, name: None,  # every name it writes is a staging name: `staged` has it
                collection_name=self.staging,
                on_view=lambda db, name, view: self.views.append((db, name, view)),
            )
        return self.replayer

    # --- the swap -------------------------------------------------------------------------------------------

    def swap(self) -> None:
        """Moves every verified staging collection into place, then creates the views (`finish` drops the
        leases once the caller has checked the result)."""
        present = self._present()
        clashes = [f"{db}.{final}" for db, final in self.staged if final in self._existing[db]]
        if clashes and not self.options.drop:  # a collection the oplog slice created, and the target has
            raise TargetNotEmpty(
                f"the target already has {', '.join(clashes[:10])}, which the backup's oplog slice creates: "
                "pass --drop to replace them, or restore under another name with --as"
            )
        for lease in self._leases.values():
            lease.phase("swapping")
        for (database, final), staging in self.staged.items():
            if (database, final) not in present:  # dropped or renamed away by the oplog slice
                if final in self._existing[database]:
                    self.client[database].drop_collection(final)
                continue
            options = _collection_options(self.client, database, staging)
            # MongoDB refuses to rename a time-series collection: it is always copied into place.
            if not options or ("timeseries" not in options and self._rename_keeps_options(database)):
                self.client.admin.command(
                    SON(
                        [
                            ("renameCollection", f"{database}.{staging}"),
                            ("to", f"{database}.{final}"),
                            ("dropTarget", True),
                        ]
                    )
                )
            else:
                self._copy_into_place(database, staging, final, options)
            self.swapped.append(f"{database}.{final}")
        for database, name, view in self.views:
            if name in self._existing.get(database, set()) or name in self.client[database].list_collection_names():
                self.client[database].drop_collection(name)
            self._create(database, name, view)

    def finish(self) -> None:
        """After the swap and its checks: stops the heartbeat and drops the leases (the run is done)."""
        for lease in self._leases.values():
            lease.release()  # a lease left behind is a dead run's: the next restore sweeps it
        self._leases.clear()

    def check_after_swap(self) -> list[Mismatch]:
        """The moved collections' options and index options once more: a server could have lost them on the way."""
        problems: list[Mismatch] = []
        for target in self.targets:
            if target.kind != "view" and target.ns in self.swapped:
                problems += _option_mismatches(self.client, target, target.database, target.collection)
        return problems

    def _rename_keeps_options(self, database: str) -> bool:
        """Whether this server's renameCollection keeps a collection's options: probed once per database."""
        if database not in self._keeps_options:
            db = self.client[database]
            probe, moved = probe_names(self.run_id)
            self._create(database, probe, {"capped": True, "size": 4096})
            try:
                self.client.admin.command(
                    SON([("renameCollection", f"{database}.{probe}"), ("to", f"{database}.{moved}")])
                )
                self._keeps_options[database] = bool(_collection_options(self.client, database, moved).get("capped"))
            finally:
                db.drop_collection(probe)
                db.drop_collection(moved)
        return self._keeps_options[database]

    def _copy_into_place(self, database: str, staging: str, final: str, options: dict[str, Any]) -> None:
        """Creates `final` with `options` and copies the verified staging collection into it (not atomic)."""
        db = self.client.get_database(database, codec_options=RAW)
        db.drop_collection(final)
        self._create(database, final, options)
        batch: list[RawBSONDocument] = []
        size = 0
        for document in db[staging].find({}, batch_size=READ_BATCH_DOCUMENTS):
            batch.append(document)
            size += len(document.raw)
            if size >= self.options.batch_bytes:
                db[final].insert_many(batch, ordered=True, bypass_document_validation=True)
                batch, size = [], 0
        if batch:
            db[final].insert_many(batch, ordered=True, bypass_document_validation=True)
        specs = [
            {k: v for k, v in ix.items() if k not in ("v", "ns")}
            for ix in db[staging].list_indexes()
            if ix["name"] != "_id_"
        ]
        if specs:
            db.command(SON([("createIndexes", final), ("indexes", specs)]))
        db.drop_collection(staging)

    def discard(self) -> str:
        """Drops every staging collection and the leases; returns what it did, for the error message. Never raises.

        Before the swap the target is as it was; after a partial swap the message names what was moved."""
        if self._inserter is not None:
            self._inserter.abort()
        dropped, failed = [], []
        for (database, _final), staging in self.staged.items():
            try:
                if staging in self.client[database].list_collection_names():
                    self.client[database].drop_collection(staging)
                    dropped.append(f"{database}.{staging}")
            except PyMongoError as exc:
                failed.append(f"{database}.{staging} ({one_line(exc)})")
        for lease in self._leases.values():
            problem = lease.release()
            if problem is not None:
                failed.append(problem)
        moved = (
            f"; {len(self.swapped)} collections had been moved into place: {', '.join(self.swapped)}"
            if self.swapped
            else ""
        )
        if failed:
            return f"COULD NOT DROP what it wrote: {', '.join(failed)}; drop them by hand{moved}"
        if not dropped:
            return "nothing was written to the target" + moved
        untouched = "" if self.swapped else "; the target is as it was"
        return f"dropped the {len(dropped)} collections and views it had created (staging){untouched}{moved}"


def _collection_options(client: MongoClient, database: str, name: str) -> dict[str, Any]:
    for info in client[database].list_collections(filter={"name": name}):
        return dict(info.get("options") or {})
    return {}


def _option_mismatches(client: MongoClient, target: Target, database: str, name: str) -> list[Mismatch]:
    """Collection options and index options of `database.name` against the archive's, for `target`."""
    problems = []
    found = _collection_options(client, database, name)
    wanted = target.options
    for option in COLLECTION_OPTIONS:
        if option in wanted and found.get(option) != wanted[option]:
            problems.append(Mismatch(target.ns, f"option {option}", repr(wanted[option]), repr(found.get(option))))
    built = {ix["name"]: ix for ix in client[database][name].list_indexes()}
    for spec in target.index_specs():
        index = built.get(spec["name"])
        if index is None:
            continue  # a missing index is the verification's finding
        for option in INDEX_OPTIONS:
            if option in spec and index.get(option) != spec[option]:
                problems.append(
                    Mismatch(target.ns, f"index {spec['name']} {option}", repr(spec[option]), repr(index.get(option)))
                )
    return problems
