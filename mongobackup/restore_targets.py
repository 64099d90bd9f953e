"""Where each namespace of an archive is restored, and the options that decide it.

The archive's prelude lists every namespace before any data. From it and the `RestoreOptions` this module
decides, before anything is written, the target database and collection of each namespace, its kind
(collection, view, time series, the oplog slice) and whether it is restored at all (`--include`/`--exclude`,
`system.*` collections). The writer (`restore_writer`) and the stream (`restore`) both work from this map.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mongobackup.archive import OPLOG_COLLECTION, OPLOG_DB, NamespaceMetadata, parse_collection_metadata
from mongobackup.manifest import IndexRecord, NamespaceRecord
from mongobackup.names import check_database_name
from mongobackup.staging import is_reserved
from mongobackup.units import MIB

#: Documents per insert_many, by size: big enough that round trips are noise, small enough to stay flat.
INSERT_BATCH_BYTES = 1 * MIB
#: Namespaces inserted at once; SecantusDB and small replica sets gain little beyond a few.
DEFAULT_PARALLEL = 4


@dataclass(frozen=True)
class RestoreOptions:
    """What to restore and how. Patterns are fnmatch patterns of source namespaces, `db.collection`."""

    target_database: str | None = None  # --as: restore under another name (archives of one database only)
    include: tuple[str, ...] = ()  # empty: every namespace
    exclude: tuple[str, ...] = ()
    drop: bool = False  # replace existing target collections instead of refusing
    apply_oplog: bool = True
    # verify: the staged data checked against the manifest before the swap (`restore_verify`: the digest of what
    # the server acknowledged, its counts, the indexes); read_back: by reading all of it back instead, as the
    # drills do. verify False: only the archive's own checks (CRCs, the manifest's stream digests, the object).
    verify: bool = True
    read_back: bool = False
    parallel: int = DEFAULT_PARALLEL
    batch_bytes: int = INSERT_BATCH_BYTES

    def wants(self, namespace: str) -> bool:
        included = not self.include or any(fnmatch.fnmatchcase(namespace, p) for p in self.include)
        return included and not any(fnmatch.fnmatchcase(namespace, p) for p in self.exclude)


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

    def index_specs(self) -> list[dict[str, Any]]:
        """The index specs of the archive's metadata, as createIndexes takes them (_id_ comes with the
        collection)."""
        return [
            {k: v for k, v in spec.items() if k != "ns"}
            for spec in self.metadata.get("indexes") or []
            if spec.get("name") != "_id_"
        ]

    def expected_record(self, stream: NamespaceRecord | None) -> NamespaceRecord:
        """What this namespace should look like restored, from the archive alone (no manifest)."""
        if self.kind == "view":
            return NamespaceRecord(collection=self.collection, type="view", view_on=self.options.get("viewOn"))
        indexes = [IndexRecord.from_spec(spec) for spec in self.metadata.get("indexes") or []]
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
        # system.* collections are server internals (views live in system.views and come as views); reserved
        # names are a restore's staging collections, caught by a backup taken while a restore ran.
        wanted = (
            options.wants(meta.ns) and not meta.collection.startswith("system.") and not is_reserved(meta.collection)
        )
        targets[meta.ns] = Target(meta.db, meta.collection, kind, metadata, options.target_database or meta.db, wanted)
    return targets
