"""What "verified" means for a restore: the staging collections checked against the manifest before the swap.

The stream has already checked the archive itself: each namespace's documents, CRC and digest against the
manifest, and the stored object's size and SHA-256 (`verify.StreamCheck`). What remains is whether the server
holds what was sent. Two ways, both before anything is moved into place, both naming database.collection:

- streamed (the default, `verify_streamed`): per collection, the digest and count of exactly the documents the
  server acknowledged inserting (each batch's digest, computed once by the reader, is added when the server
  acknowledges the batch: `restore_inserter`) must equal the manifest's; the server's own count of the staging
  collection must equal the manifest's (no document lost after its acknowledgement, none added by anyone else);
  its indexes must be the manifest's. Costs a count and a listIndexes per collection, not a second pass.
- read back (`--read-back`, and every drill: `read_back`): every document of every staging collection read back
  from the server and digested, plus the indexes. Stronger: it also sees a document the server changed or
  corrupted after acknowledging it, which only reading it can show. It costs a full scan of what was restored.

Views are checked after the swap, TTL indexes once built (`restore_stream`), in both ways.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from mongobackup.manifest import DocumentDigest, IndexRecord, NamespaceRecord
from mongobackup.verify import Mismatch, Verdict, compare_database, verify_database

if TYPE_CHECKING:
    from mongobackup.restore_writer import MongoWriter

Expected = Iterable[tuple[str, NamespaceRecord]]


def verify_staged(writer: MongoWriter, expected: Expected, subject: str, reference: str, *, read_back: bool) -> Verdict:
    """The staging collections against `expected` (pairs of a target database and the record of what it should
    hold), streamed or by reading back; views and TTL indexes left out (checked later)."""
    verdict = Verdict(subject, reference=reference)
    for database, records in _expected_staged(writer, expected).items():
        if read_back:
            names = {r.collection: writer.staging(database, r.collection) for r in records}
            verdict.extend(
                verify_database(writer.client, database, records, subject=subject, reference=reference, names=names)
            )
        else:
            verdict.extend(verify_streamed(writer, database, records, subject=subject, reference=reference))
    return verdict


def verify_streamed(
    writer: MongoWriter, database: str, records: list[NamespaceRecord], *, subject: str, reference: str
) -> Verdict:
    """The acknowledged digest and count, the server's count and the indexes of each staging collection."""
    verdict = Verdict(subject, reference=reference)
    for record in records:
        ns = f"{database}.{record.collection}"
        verdict.checked.append(ns)
        name = writer.staging(database, record.collection)
        digest = writer.acknowledged.get(f"{database}.{name}", DocumentDigest())
        if record.documents is not None and digest.count != record.documents:
            verdict.mismatches.append(
                Mismatch(ns, "acknowledged", f"{record.documents} documents", f"{digest.count} documents")
            )
        verdict.mismatches.extend(compare_database(record, _staged_record(writer, database, name, digest), ns))
    return verdict


def _staged_record(writer: MongoWriter, database: str, name: str, digest: DocumentDigest) -> NamespaceRecord | None:
    """A staging collection as the server describes it (count, indexes), with the acknowledged digest."""
    db = writer.client[database]
    info = next(iter(db.list_collections(filter={"name": name})), None)
    if info is None:
        return None
    kind = "timeseries" if info.get("type") == "timeseries" else "collection"
    # The count command answers from the collection's metadata on MongoDB; a time series collection is counted
    # through its view of measurements, as its documents were dumped.
    count = db[name].count_documents({}) if kind == "timeseries" else int(db.command("count", name)["n"])
    return NamespaceRecord(
        collection=name,
        type=kind,
        documents=count,
        digest=digest.hexdigest,
        indexes=[IndexRecord.from_spec(ix) for ix in db[name].list_indexes()],
    )


def _expected_staged(writer: MongoWriter, expected: Expected) -> dict[str, list[NamespaceRecord]]:
    """`expected` by target database: only what is restored, without the TTL indexes not built yet."""
    wanted = {(t.database, t.collection) for t in writer.targets if t.kind != "view"}
    deferred = writer.deferred_ttl_indexes()
    by_database: dict[str, list[NamespaceRecord]] = {}
    for database, record in expected:
        if (database, record.collection) in wanted:  # left out by --include/--exclude: not restored
            indexes = [ix for ix in record.indexes if (database, record.collection, ix.name) not in deferred]
            record = record.model_copy(update={"indexes": indexes})
            by_database.setdefault(database, []).append(record)
    return by_database
