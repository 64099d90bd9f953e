"""Verification: does a stored object, or what was restored from it, match the backup's manifest?

Everything is compared as `NamespaceRecord`s, the manifest's own vocabulary, in two places:

- the stream: each namespace of the archive as it is read (documents, CRC, order-independent digest)
  against the manifest, plus the stored object's size and SHA-256. `--verify-only` is this alone.
- the database: the restored collections read back from the server (documents, digest, indexes, views).
  The CRC covers the archive's byte stream in the order mongodump wrote it; a server hands documents back
  in its own order, so the digest (a sum of per-document hashes) is what proves the restored data here.

A `Verdict` lists every mismatch with the namespace, the check, what was expected and what was found, so a
failed drill says exactly which collection of which backup is wrong, not merely that something is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import MongoClient

from mongobackup.dump import RAW
from mongobackup.errors import VerificationError
from mongobackup.manifest import BackupManifest, DocumentDigest, IndexRecord, NamespaceRecord

#: Documents per batch when reading a restored collection back. A server's default batch is up to 16 MiB and
#: pymongo holds a whole batch and its documents at once: without a limit a re-read costs 50+ MB of memory.
READ_BATCH_DOCUMENTS = 500
#: How many mismatches a one-line summary spells out before it only counts the rest.
SUMMARY_MISMATCHES = 5


@dataclass(frozen=True)
class Mismatch:
    """One check that failed: `namespace` is "db.collection", or the object's address for object checks."""

    namespace: str
    check: str  # documents, crc, digest, indexes, view_on, type, missing, size, sha256
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.namespace}: {self.check}: expected {self.expected}, found {self.found}"


@dataclass
class Verdict:
    """The outcome of a verification: which namespaces were checked and every mismatch found."""

    subject: str  # what was verified, e.g. "s3://bucket/key restored into database x"
    checked: list[str] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    reference: str = "the manifest"  # what it was compared with ("the archive" when there is no manifest)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def extend(self, other: Verdict) -> None:
        self.checked.extend(ns for ns in other.checked if ns not in self.checked)
        self.mismatches.extend(other.mismatches)

    def summary(self) -> str:
        if self.ok:
            count = len(self.checked)
            return f"clean: {count} namespace{'s match' if count != 1 else ' matches'} {self.reference}"
        shown = "; ".join(str(m) for m in self.mismatches[:SUMMARY_MISMATCHES])
        more = len(self.mismatches) - SUMMARY_MISMATCHES
        return f"{len(self.mismatches)} mismatches: {shown}" + (f"; and {more} more" if more > 0 else "")

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise VerificationError(f"{self.subject}: {self.summary()}")


def compare_stream(expected: NamespaceRecord, found: NamespaceRecord, ns: str) -> list[Mismatch]:
    """A namespace as read from the archive against its manifest record: documents, CRC, digest."""
    pairs = [
        ("documents", expected.documents, found.documents),
        ("crc", expected.crc, found.crc),
        ("digest", expected.digest, found.digest),
    ]
    return [Mismatch(ns, check, str(want), str(got)) for check, want, got in pairs if want is not None and want != got]


def compare_database(expected: NamespaceRecord, found: NamespaceRecord | None, ns: str) -> list[Mismatch]:
    """A restored collection or view as read back from the server against its expected record."""
    want_view = expected.type == "view"
    if found is None:
        return [Mismatch(ns, "missing", "a view" if want_view else "a collection", "nothing")]
    if want_view != (found.type == "view"):
        return [Mismatch(ns, "type", expected.type, found.type)]
    if want_view:
        if expected.view_on != found.view_on:
            return [Mismatch(ns, "view_on", str(expected.view_on), str(found.view_on))]
        return []
    problems = [
        Mismatch(ns, check, str(want), str(got))
        for check, want, got in (
            ("documents", expected.documents, found.documents),
            ("digest", expected.digest, found.digest),
        )
        if want is not None and want != got
    ]
    want_indexes, got_indexes = _index_set(expected.indexes), _index_set(found.indexes)
    if want_indexes != got_indexes:
        problems.append(
            Mismatch(
                ns,
                "indexes",
                _describe(want_indexes - got_indexes, "missing"),
                _describe(got_indexes - want_indexes, "unexpected"),
            )
        )
    return problems


def _index_set(indexes: Iterable[IndexRecord]) -> set[tuple[str, str, bool]]:
    # The order of an index's fields is part of the index, but the manifest is written with sorted keys
    # (storage.put_json), so it has lost that order: fields and directions are compared, not their order.
    return {(ix.name, json.dumps(ix.key, sort_keys=True), ix.unique) for ix in indexes}


def _describe(indexes: set[tuple[str, str, bool]], what: str) -> str:
    if not indexes:
        return f"no {what} index"
    return ", ".join(f"{name} {key}{' unique' if unique else ''}" for name, key, unique in sorted(indexes))


def read_namespace(client: MongoClient, database: str, info: Mapping[str, Any]) -> NamespaceRecord:
    """A collection or view of `database` as the server holds it now (listCollections entry `info`).

    Documents are re-read as raw BSON, exactly the bytes the server returns, and digested the way the
    backup digested the dump: equal digests mean the same multiset of documents, whatever the order.
    """
    name = str(info["name"])
    if info.get("type") == "view":
        return NamespaceRecord(collection=name, type="view", view_on=info.get("options", {}).get("viewOn"))
    collection = client.get_database(database, codec_options=RAW).get_collection(name)
    digest = DocumentDigest()
    for document in collection.find({}, batch_size=READ_BATCH_DOCUMENTS):
        digest.add(document.raw)
    kind = "timeseries" if info.get("type") == "timeseries" else "collection"
    return NamespaceRecord(
        collection=name,
        type=kind,
        documents=digest.count,
        bytes=digest.bytes,
        digest=digest.hexdigest,
        indexes=[IndexRecord.from_spec(ix) for ix in collection.list_indexes()],
    )


def verify_database(
    client: MongoClient,
    database: str,
    expected: Sequence[NamespaceRecord],
    *,
    subject: str,
    reference: str = "the manifest",
    names: Mapping[str, str] | None = None,
) -> Verdict:
    """Reads back each expected collection and view of `database` and compares it (oplog records skipped).

    `names` maps a record's collection to the name it has on the server now (a restore's staging name);
    mismatches always name the record's collection.
    """
    names = names or {}
    infos = {str(info["name"]): info for info in client.get_database(database).list_collections()}
    verdict = Verdict(subject, reference=reference)
    for record in expected:
        if record.type == "oplog":
            continue
        ns = f"{database}.{record.collection}"
        info = infos.get(names.get(record.collection, record.collection))
        found = read_namespace(client, database, info) if info is not None else None
        verdict.checked.append(ns)
        verdict.mismatches.extend(compare_database(record, found, ns))
    return verdict


def check_object(manifest: BackupManifest, *, size: int, sha256: str, where: str) -> list[Mismatch]:
    """The stored object as read in full against the manifest's size and SHA-256 of what was uploaded."""
    problems = []
    if size != manifest.sizes.encrypted_bytes:
        problems.append(Mismatch(where, "size", f"{manifest.sizes.encrypted_bytes} bytes", f"{size} bytes"))
    if sha256 != manifest.sha256:
        problems.append(Mismatch(where, "sha256", manifest.sha256, sha256))
    return problems


def missing_from_stream(manifest: BackupManifest, seen: Iterable[str]) -> list[Mismatch]:
    """Namespaces the manifest lists that the archive never held, and the reverse."""
    listed = {record.collection for record in manifest.namespaces}
    read = set(seen)
    where = manifest.database
    return [
        Mismatch(f"{where}.{name}", "missing", "in the archive (the manifest lists it)", "nothing")
        for name in sorted(listed - read)
    ] + [
        Mismatch(f"{where}.{name}", "missing", "nothing (the manifest does not list it)", "in the archive")
        for name in sorted(read - listed)
    ]


class StreamCheck:
    """The archive as it is read, namespace by namespace, against the manifest (when there is one).

    `kinds` maps each namespace of the archive ("db.collection"; ".oplog") to its kind. With `fail_fast`
    (a restore that writes) the first namespace that differs raises VerificationError at its end, before
    more data is written; without it (verify only) every mismatch is collected into `verdict`.
    """

    def __init__(self, kinds: Mapping[str, str], manifest: BackupManifest | None, *, fail_fast: bool, subject: str):
        self.kinds = dict(kinds)
        self.manifest = manifest
        self.fail_fast = fail_fast
        self.digests = {ns: DocumentDigest() for ns in kinds}
        self.records: dict[str, NamespaceRecord] = {}
        self.verdict = Verdict(subject, reference="the manifest" if manifest is not None else "the archive's CRCs")

    def documents(self, ns: str, documents: Iterable[bytes]) -> DocumentDigest:
        """Adds a batch of the namespace's documents; returns the batch's own digest (the insert path sums
        the batches the server acknowledged, see `restore_inserter`)."""
        batch = DocumentDigest()
        for document in documents:
            batch.add(document)
        self.digests[ns].merge(batch)
        return batch

    def end(self, ns: str, collection: str, *, count: int, size: int, crc: int) -> None:
        record = NamespaceRecord(
            collection=collection,
            type=self.kinds[ns],
            documents=count,  # type: ignore[arg-type]
            bytes=size,
            crc=crc,
            digest=self.digests[ns].hexdigest,
        )
        self.records[ns] = record
        self.verdict.checked.append(ns)
        listed = self._listed(collection)
        if listed is not None:  # a namespace the manifest does not list is reported by finish()
            self._report(compare_stream(listed, record, "oplog" if ns.startswith(".") else ns))

    def finish(self) -> None:
        """After the archive ended: namespaces the manifest lists that never came, and the reverse."""
        if self.manifest is not None:
            self._report(missing_from_stream(self.manifest, [r.collection for r in self.records.values()]))

    def _listed(self, collection: str) -> NamespaceRecord | None:
        if self.manifest is None:
            return None
        return next((r for r in self.manifest.namespaces if r.collection == collection), None)

    def _report(self, problems: list[Mismatch]) -> None:
        self.verdict.mismatches.extend(problems)
        if problems and self.fail_fast:
            raise VerificationError(
                f"{self.verdict.subject}: the archive does not match its manifest: " + "; ".join(map(str, problems))
            )
