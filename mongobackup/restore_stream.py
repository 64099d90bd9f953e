"""The streamed restore: a plain archive stream into MongoDB, checked on the way in, verified before it is used.

    (plain archive stream) -> ArchiveReader -> StreamCheck -> MongoWriter (staging)

No stage holds more than a few chunks or insert batches and nothing touches the disk, so memory does not grow
with the size of the backup. The same code reads a stock `mongodump --archive` file (plain or `--gzip`).

The order of work, and why:
1. Prelude: the archive lists its namespaces first. Every target collection is checked (an existing one is
   refused unless `drop`), and a staging collection is created for it with its options before any data, in
   the target database, beside the run's lease (`staging`): nothing is written under a target's own name yet.
2. Data: documents go to a few insert threads (`restore_inserter`). The reader checks each namespace's CRC
   when it ends; its documents, CRC and digest are compared with the manifest there and then.
3. After the last collection: indexes (built once on full collections, as mongorestore does) and the
   verification of the staged data against the manifest, which describes the documents as dumped
   (`restore_verify`: by default the digest of what the server acknowledged inserting, its counts and the
   indexes; with `read_back`, as the drills do, every document read back from the server).
4. The oplog slice, replayed as plain CRUD onto the staging collections (`mongobackup.oplog_replay`), moves
   the data from "as dumped" to the end of the dump window.
5. TTL indexes, last: built earlier, the TTL monitor could delete documents that expired since the backup
   while they are being verified, and fail a drill of a sound backup.
6. The object's size and SHA-256 against the manifest, once gpg has read all of it; the staged collections'
   options and index options against the archive's.
7. The swap (`MongoWriter.swap`): each staging collection moved into place, then the views created.
Any failure before the swap drops the staging collections and the lease: the target is exactly as it was.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from pymongo import MongoClient

from mongobackup.archive import ArchiveError, ArchiveReader, DocumentsEvent, NamespaceEndEvent
from mongobackup.download import ObjectDownload
from mongobackup.errors import VerificationError, stage_of
from mongobackup.manifest import BackupManifest, NamespaceRecord
from mongobackup.redact import redact_uri
from mongobackup.restore_result import RESTORE_STAGES, ProgressCallback, RestoreFailed, RestoreProgress, RestoreResult
from mongobackup.restore_targets import RestoreOptions, Target, plan_targets
from mongobackup.restore_verify import verify_staged
from mongobackup.restore_writer import MongoWriter, TargetNotEmpty
from mongobackup.streams import CountingReader, StageClock
from mongobackup.verify import Mismatch, StreamCheck, Verdict, verify_database

#: Restore everything, verify it, replay the oplog.
DEFAULT_OPTIONS = RestoreOptions()


@dataclass
class _Run:
    """The state of one restore while it runs."""

    source: str
    target: str
    targets: dict[str, Target]
    check: StreamCheck
    writer: MongoWriter | None
    options: RestoreOptions
    clock: StageClock
    progress: RestoreProgress = field(default_factory=RestoreProgress)
    verdict: Verdict | None = None


def restore_stream(
    stream: BinaryIO,
    client: MongoClient | None,
    options: RestoreOptions = DEFAULT_OPTIONS,
    *,
    manifest: BackupManifest | None = None,
    source: str = "archive",
    on_progress: ProgressCallback | None = None,
    download: ObjectDownload | None = None,
    oplog_tail: Iterable[bytes] | None = None,
) -> RestoreResult:
    """Restores a plain (uncompressed, decrypted) archive stream into `client`; client None: verify only.

    `download`, when the stream is a stored object's, reports how much of the object was read and checks it
    against the manifest once the archive has ended (size, SHA-256). `oplog_tail`: oplog entries replayed
    after the archive's own slice, the same way and into the same staging collections, before the swap (a
    point-in-time restore). Raises TargetNotEmpty before writing anything, RestoreFailed (naming the stage) on
    any later failure, after dropping what was written. Without a client nothing is written and the verdict
    is returned.
    """
    started = time.monotonic()
    clock = StageClock()
    archive = CountingReader(stream, clock=clock, stage="download")  # type: ignore[arg-type]
    target_text = _target_text(client, {}, options)  # until the archive says which databases it holds
    run: _Run | None = None
    try:
        reader = ArchiveReader(archive, batch_bytes=options.batch_bytes)
        targets = plan_targets(reader.namespaces, options)
        target_text = _target_text(client, targets, options)
        kinds = {ns: t.kind for ns, t in targets.items()}
        check = StreamCheck(kinds, manifest, fail_fast=client is not None, subject=source)
        writer = MongoWriter(client, targets, options, source) if client is not None else None
        run = _Run(source, target_text, targets, check, writer, options, clock)
        if writer is not None:
            writer.prepare()
        _consume(run, reader, archive, on_progress, download)
        _after_data(run)
        if writer is not None and oplog_tail is not None:
            _replay_tail(run, oplog_tail, manifest)
        if writer is not None:
            ttl = writer.create_ttl_indexes()
            if run.verdict is not None:
                run.verdict.mismatches += ttl.mismatches
            ttl.raise_if_failed()
        check.finish()
        if download is not None:  # gpg has read the whole object by now
            run.progress.object_bytes, run.progress.object_total = download.bytes_read, download.size
            _object_checks(run, download.verify_after())
        if writer is not None:
            _swap(run)
    except TargetNotEmpty:
        if run is not None and run.writer is not None:
            run.writer.discard()  # an oplog slice's new collection met the target's: staging goes, as it came
        raise
    except BaseException as exc:
        cleanup = (
            run.writer.discard() if run is not None and run.writer is not None else "nothing was written to the target"
        )
        if not isinstance(exc, Exception):  # Ctrl-C, SystemExit: cleaned up, and passed on as they are
            raise
        stage = stage_of(exc, RESTORE_STAGES, "restore")
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
        download_s=clock.seconds.get("download", 0.0),
        verify_s=clock.seconds.get("verify", 0.0),
        swap_s=clock.seconds.get("swap", 0.0),
    )


def _consume(
    run: _Run,
    reader: ArchiveReader,
    archive: CountingReader,
    on_progress: ProgressCallback | None,
    download: ObjectDownload | None,
) -> None:
    for event in reader:
        target = run.targets[event.ns]
        if isinstance(event, NamespaceEndEvent):
            run.check.end(event.ns, event.collection, count=event.count, size=event.bytes, crc=event.crc)
            continue
        digest = run.check.documents(event.ns, event.documents)
        if target.kind == "oplog":
            _replay(run, event)
        elif run.writer is not None and target.wanted:
            run.writer.insert(target, event.documents, digest)
        progress = run.progress
        progress.archive_bytes = archive.bytes_read
        if run.writer is not None:
            progress.documents = run.writer.inserted
        elif target.kind != "oplog":
            progress.documents += len(event.documents)
        progress.namespace = target.ns if target.kind != "oplog" else "oplog"
        if download is not None:
            progress.object_bytes, progress.object_total = download.bytes_read, download.size
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
        subject = f"{run.source} restored into {run.target}"
        with run.clock.measure("verify"):
            run.verdict = verify_staged(run.writer, _expected(run), subject, reference, read_back=run.options.read_back)
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


def _swap(run: _Run) -> None:
    """Everything read and checked: the options of what was staged, then the move into place, then views."""
    assert run.writer is not None
    subject = f"{run.source} restored into {run.target}"
    options = run.writer.check_options()
    if options:
        raise VerificationError(f"{subject}: {'; '.join(map(str, options))}")
    with run.clock.measure("swap"):
        run.writer.swap()
    verdict = Verdict(subject, reference="the manifest" if run.check.manifest is not None else "the archive")
    if run.options.verify:
        views = [(database, r) for database, r in _expected(run) if r.type == "view"]
        wanted = {(t.database, t.collection) for t in run.writer.targets if t.kind == "view"}
        for database in sorted({database for database, _ in views}):
            records = [r for db, r in views if db == database and (db, r.collection) in wanted]
            verdict.extend(verify_database(run.writer.client, database, records, subject=subject))
    verdict.mismatches += run.writer.check_after_swap()
    if run.verdict is not None:
        run.verdict.extend(verdict)
    if not verdict.ok:
        raise VerificationError(f"{subject}, after the move into place: {verdict.summary()}")
    run.writer.finish()


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
