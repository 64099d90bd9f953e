"""Plain helpers of the point-in-time recovery tests (fixtures in conftest.py beside this): a plan with a `pitr`
section, an archiver run in a thread or as the `python -m flows.oplog` process, and the archived entries read
back for comparison with the server's own oplog."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from bson import Timestamp
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

from devservices import GpgKey
from flows.oplog import build_archiver
from flows.resources import RunResources
from mongobackup.crypto import Gpg
from mongobackup.pitr.archiver import OplogArchiver
from mongobackup.pitr.chain import OplogArchive, scan_archive
from mongobackup.pitr.segment import load_segment_manifest, read_segment
from mongobackup.plan import load_plan
from mongobackup.storage import Storage
from tests.planfiles import write_plan

RAW = CodecOptions(document_class=RawBSONDocument)
PROJECT_ROOT = Path(__file__).resolve().parents[2]
INSTANCE = "rs-pitr"
#: Short segments keep the tests short; the defaults (30 s) are what the benchmark measures.
PITR_SETTINGS = {"segment_s": 2, "segment_mib": 1, "max_lag_s": 60}


def pitr_plan(
    tmp_path: Path,
    *,
    mongo_uri: str,
    bucket: str,
    s3_endpoint: str,
    gpg_key: GpgKey,
    name: str = "plan.yaml",
    **overrides: object,
) -> Path:
    """A plan with one instance (INSTANCE) and a pitr section of short segments."""
    return write_plan(
        tmp_path / name,
        instances=[{"name": INSTANCE, "uri": mongo_uri}],
        bucket=bucket,
        s3_endpoint=s3_endpoint,
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "gnupg-backup",
        pitr=overrides.pop("pitr", PITR_SETTINGS),
        **overrides,
    )


class ThreadedArchiver:
    """An archiver of the plan's instance running in a thread of the test process."""

    def __init__(self, plan_path: Path):
        self.lines: list[str] = []
        self.resources = RunResources(load_plan(plan_path))
        self.archiver: OplogArchiver = build_archiver(self.resources, INSTANCE, self.lines.append)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="oplog-archiver", daemon=True)

    def _run(self) -> None:
        try:
            self.archiver.run(self.stop)
        except BaseException as exc:
            self.error = exc

    def running(self) -> bool:
        return self._thread.is_alive()

    def output(self) -> str:
        return "\n".join(self.lines) + (f"\nstopped on {self.error!r}" if self.error else "")

    def __enter__(self) -> ThreadedArchiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "the archiver did not stop"
        self.resources.close()
        if self.error is not None and exc == (None, None, None):
            raise self.error


class ArchiverProcess:
    """`python -m flows.oplog` as a child process, its output in a log file; stopped by its PID only."""

    def __init__(self, plan_path: Path, log_file: Path):
        self.log_file = log_file
        with log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flows.oplog", "--plan", str(plan_path), "--instance", INSTANCE],
                cwd=PROJECT_ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """kill -9: no chance to commit anything."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, timeout: float = 90) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def output(self) -> str:
        return self.log_file.read_text(errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()


# --- reading back ---------------------------------------------------------------------------------------------


def archive_of(storage: Storage) -> OplogArchive:
    return scan_archive(storage, "", INSTANCE)


def archived_entries(storage: Storage, gpg_key: GpgKey) -> list[RawBSONDocument]:
    """Every entry of every committed segment, in key order, each segment checked against its manifest."""
    gpg = Gpg(gpg_key.home)
    entries: list[RawBSONDocument] = []
    for segment in archive_of(storage).segments:
        manifest = load_segment_manifest(storage, segment.location)
        entries += [RawBSONDocument(raw) for raw in read_segment(storage, gpg, manifest)]
    return entries


def server_entries(client: MongoClient, first: Timestamp, last: Timestamp) -> list[RawBSONDocument]:
    """The server's own oplog entries from `first` to `last`, in oplog order."""
    oplog = client.get_database("local", codec_options=RAW)["oplog.rs"]
    return [doc for doc in oplog.find({"ts": {"$gte": first}}).sort("$natural", 1) if doc["ts"] <= last]


def last_write(client: MongoClient) -> Timestamp:
    """The newest entry's timestamp in the server's oplog."""
    return client.local["oplog.rs"].find_one({}, sort=[("$natural", -1)])["ts"]


def wait_archived(
    storage: Storage, ts: Timestamp, archiver: ThreadedArchiver | ArchiverProcess, *, timeout: float = 120
) -> None:
    """Until a committed segment ends at or after `ts`; fails naming what is there (and the archiver's log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        newest = archive_of(storage).newest
        if newest is not None and newest.last >= ts:
            return
        if not archiver.running():
            break
        time.sleep(0.5)
    log = archiver.output()
    pytest.fail(f"nothing archived up to {ts} within {timeout} s; newest: {archive_of(storage).newest}\n{log}")
