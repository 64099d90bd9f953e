"""What `python -m flows.restore` shows: the progress bar and thaw lines on stderr, the summary of a restore,
the list of backups and windows, and what killed restores left behind."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

from pymongo.errors import PyMongoError
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn

from flows.resources import RunResources
from mongobackup.dump import open_client
from mongobackup.errors import BackupError, one_line
from mongobackup.inventory import StoredBackup, age_hours, list_backups
from mongobackup.manifest import BackupManifest
from mongobackup.pitr.chain import describe_chains, scan_archive
from mongobackup.pitr.point import bases, describe_windows, windows
from mongobackup.plan import BackupPlan
from mongobackup.redact import redact_text, redact_uri
from mongobackup.restore_result import RestoreProgress, RestoreResult
from mongobackup.staging import report_lines
from mongobackup.thaw import object_thaw_state
from mongobackup.units import human_size


class ProgressBar:
    """A rich progress bar on stderr: bytes of the object read, documents written, the current namespace."""

    def __init__(self, quiet: bool):
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[docs]} docs"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=quiet,
            transient=False,
        )
        self._task = self._bar.add_task("restore", total=None, docs="0")

    def update(self, progress: RestoreProgress) -> None:
        self._bar.update(
            self._task,
            completed=progress.object_bytes,
            total=progress.object_total,
            docs=f"{progress.documents:,}",
            description=progress.namespace[:40] or "restore",
        )

    @contextlib.contextmanager
    def shown(self) -> Iterator[ProgressBar]:
        with self._bar:
            yield self


def describe_backup(backup: StoredBackup, manifest: BackupManifest | None) -> str:
    location = backup.location
    taken = location.taken_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if manifest is None:
        return (
            f"{location.instance}/{location.database}, {location.tier.value}, taken {taken}, UNCOMMITTED (no manifest)"
        )
    age = age_hours(manifest, datetime.now(UTC))
    return (
        f"{location.instance}/{location.database}, {location.tier.value}, taken {taken}, dump finished "
        f"{manifest.finished_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ} ({age:.1f} h ago), committed"
    )


def summary_lines(result: RestoreResult, about: str | None, verify_only: bool) -> list[str]:
    verdict = result.verdict
    head = "verified" if verify_only else "restored"
    lines = [f"restore: {'OK' if verdict.ok else 'MISMATCH'} {result.source}"]
    if about:
        lines.append(f"  backup:   {about}")
    lines.append(f"  target:   {result.target}")
    stored = f" from {human_size(result.object_bytes)} stored" if result.object_bytes else ""
    lines.append(
        f"  {head}: {len(result.namespaces)} namespaces, {result.documents:,} documents, "
        f"{human_size(result.archive_bytes)} archive{stored}, in {result.seconds:.1f} s "
        f"({result.mb_per_s:.1f} MB/s)"
    )
    if not verify_only:
        lines.append(f"  oplog:    {result.oplog_applied} entries replayed, {result.oplog_skipped} skipped")
    lines.append(f"  verdict:  {verdict.summary()}")
    lines += [f"    {mismatch}" for mismatch in verdict.mismatches]
    return lines


def list_lines(plan: BackupPlan, instance: str, database: str) -> list[str]:
    """One line per backup: commit state, tier, time, size, storage class and thaw state (a HEAD each), key."""
    storage = RunResources(plan).storage
    backups = list_backups(storage, plan.storage.prefix, instance, database)
    lines = [
        f"{'committed' if b.committed else 'ORPHANED' if b.orphaned else 'UNCOMMITTED':<11} "
        f"{b.location.tier.value:<9} {b.location.taken_at:%Y-%m-%dT%H:%M:%SZ} {b.object_size or 0:>12} "
        f"{object_thaw_state(storage, b.object_key).describe() if b.object_size is not None else '-':<34} "
        f"{b.object_key}"
        for b in backups
    ]
    lines = lines or [f"no backups of {instance}/{database} in {storage.where(plan.storage.prefix)}"]
    if plan.pitr is not None:
        archive = scan_archive(storage, plan.storage.prefix, instance)
        found = windows(archive, bases(storage, plan.storage.prefix, instance, database))
        lines.append(f"point-in-time windows: {describe_windows(found)} (oplog archive: {describe_chains(archive)})")
    return lines


def leftover_lines(plan: BackupPlan, args: argparse.Namespace) -> list[str]:
    """What killed restores left in the target database (staging collections), as `--list` reports it."""
    uri = args.to or RunResources(plan).instance_uri(args.instance)
    database = args.as_name or args.database
    try:
        with open_client(uri, timeout_s=5) as client:
            lines = report_lines(client, database)
    except (BackupError, PyMongoError) as exc:
        problem = redact_text(one_line(exc))
        return [f"could not look for restore leftovers in {redact_uri(uri)} database {database}: {problem}"]
    return [f"leftover: {line} (the next restore into it sweeps a dead run's)" for line in lines]


def say(line: str) -> None:
    """Thaw progress on stderr, beside the progress bar."""
    print(f"restore: {line}", file=sys.stderr, flush=True)
