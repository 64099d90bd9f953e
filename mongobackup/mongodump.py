"""The stock `mongodump --archive` as the source of a backup, for users who prefer MongoDB's own tool.

Its archive is read through our ArchiveReader as it streams past, so the manifest gets the same per-namespace
counts, digests and CRCs as with our own dump, and a damaged or truncated mongodump output fails the backup
instead of being stored.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import yaml

from mongobackup.archive import (
    OPLOG_COLLECTION,
    OPLOG_DB,
    ArchiveError,
    ArchiveReader,
    DocumentsEvent,
    NamespaceEndEvent,
    parse_collection_metadata,
)
from mongobackup.dump import DumpSummary
from mongobackup.errors import SourceError
from mongobackup.manifest import DocumentDigest, IndexRecord, NamespaceRecord
from mongobackup.redact import redact_text
from mongobackup.staging import STAGING_PREFIX

_STDERR_TAIL = 20


class _TeeReader:
    """Reads from a stream and keeps what was read, so the same bytes can be both parsed and passed on."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self._taken: list[bytes] = []

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        if data:
            self._taken.append(data)
        return data

    def take(self) -> bytes:
        data, self._taken = b"".join(self._taken), []
        return data


class MongodumpDump:
    """Streams `mongodump --archive --db=<database>` of one database; `summary` is complete when exhausted."""

    def __init__(
        self,
        uri: str,
        instance: str,
        database: str,
        *,
        command: Sequence[str] = ("mongodump",),
        read_preference: str = "primaryPreferred",
    ):
        self.uri = uri
        self.instance = instance
        self.database = database
        self.command = list(command)
        self.read_preference = read_preference
        self.summary = DumpSummary()

    def argv(self, config: str | Path) -> list[str]:
        """The command line: the URI is in the `config` file, never here (any local user can read argv)."""
        # `=` between flag and value: the Windows build (under wine) reads a bare `/path` as a switch.
        return [
            *self.command,
            f"--config={config}",
            f"--db={self.database}",
            # A restore's staging collections and lease (`staging`) are not data until moved into place.
            f"--excludeCollectionsWithPrefix={STAGING_PREFIX}",
            "--archive",
            f"--readPreference={self.read_preference}",
            "--quiet",
        ]

    def chunks(self) -> Iterator[bytes]:
        # mongodump reads `uri` from a YAML --config file (100.3.0+). The folder is ours alone (mkdtemp: 0700)
        # and goes when the generator ends: exhausted, failed, or closed early by the pipeline.
        with tempfile.TemporaryDirectory(prefix="mongodump-") as folder:
            config = Path(folder) / "config.yaml"
            with os.fdopen(os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
                yaml.safe_dump({"uri": self.uri}, file)
            yield from self._run(self.argv(config))

    def _run(self, argv: list[str]) -> Iterator[bytes]:
        shown = shlex.join(argv)
        try:
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            raise SourceError(self.instance, self.database, f"cannot run {shown}: {exc}") from exc
        stderr: list[bytes] = []
        drain = threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True)  # type: ignore[arg-type]
        drain.start()
        bad_archive: ArchiveError | None = None
        try:
            yield from self._parse(process.stdout)  # type: ignore[arg-type]
        except ArchiveError as exc:
            bad_archive = exc
        finally:
            if process.poll() is None:
                process.kill()  # our own child, when the pipeline stopped reading early
            code = process.wait()
            drain.join(timeout=5)
        if code != 0:  # a failed mongodump explains itself on stderr; its truncated output says less
            tail = b"".join(stderr).decode(errors="replace").splitlines()[-_STDERR_TAIL:]
            raise SourceError(
                self.instance, self.database, f"{shown} exited with {code}: " + redact_text(" | ".join(tail), ())
            ) from bad_archive
        if bad_archive is not None:
            raise SourceError(
                self.instance, self.database, f"mongodump wrote a bad archive: {bad_archive}"
            ) from bad_archive
        self.summary.complete = True

    def _parse(self, stdout: BinaryIO) -> Iterator[bytes]:
        tee = _TeeReader(stdout)
        reader = ArchiveReader(tee)
        self.summary.server_version = reader.header.server_version
        metadata = {ns.collection: parse_collection_metadata(ns.metadata) for ns in reader.namespaces}
        digests: dict[str, DocumentDigest] = {}
        yield tee.take()
        for event in reader:
            if isinstance(event, DocumentsEvent):
                digest = digests.setdefault(event.collection, DocumentDigest())
                for document in event.documents:
                    digest.add(document)
            elif isinstance(event, NamespaceEndEvent):
                self.summary.namespaces.append(self._record(event, metadata, digests))
            yield tee.take()
        yield tee.take()

    def _record(
        self,
        end: NamespaceEndEvent,
        metadata: dict[str, dict],
        digests: dict[str, DocumentDigest],
    ) -> NamespaceRecord:
        digest = digests.get(end.collection, DocumentDigest())
        if end.db == OPLOG_DB and end.collection == OPLOG_COLLECTION:
            return NamespaceRecord(
                collection=OPLOG_COLLECTION,
                type="oplog",
                documents=digest.count,
                bytes=digest.bytes,
                crc=end.crc,
                digest=digest.hexdigest,
            )
        meta = metadata.get(end.collection, {})
        options = meta.get("options", {})
        if "viewOn" in options:
            return NamespaceRecord(collection=end.collection, type="view", view_on=options["viewOn"])
        indexes = [IndexRecord.from_spec(ix) for ix in meta.get("indexes", [])]
        return NamespaceRecord(
            collection=end.collection,
            type=meta.get("type", "collection"),
            documents=digest.count,
            bytes=digest.bytes,
            crc=end.crc,
            digest=digest.hexdigest,
            indexes=indexes,
        )
