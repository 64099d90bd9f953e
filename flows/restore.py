"""`python -m flows.restore`: restore one backup, or check it, from a terminal. No Prefect server is involved.

    python -m flows.restore --plan PLAN.yaml --instance NAME --database DB [--at TIME | --key KEY |
                            --point-in-time TIME]
                            [--uncommitted] [--to URI] [--as NAME] [--drop] [--verify-only]
                            [--include NS] [--exclude NS] [--no-oplog] [--no-verify] [--gnupghome DIR]
    python -m flows.restore --plan PLAN.yaml --instance NAME --database DB --list
    python -m flows.restore --plan PLAN.yaml --instance NAME --database DB [--at | --key] --thaw-only [--retrieval T]
    python -m flows.restore --archive FILE (--to URI | --verify-only) [--as NAME] [--drop] ...
    python -m flows.restore --plan PLAN.yaml --snapshot SOURCE [--at TIME | --key KEY] --out FILE [--list]

Without --at or --key the newest committed backup is restored; --at picks the newest at or before a time.
--point-in-time restores the database as it was at that second: the newest base backup that ended before
it, then the archived oplog up to it (see mongobackup.pitr.point); --list shows the restorable windows.
The target is the instance itself unless --to names another server; collections that already exist there
are refused unless --drop. --verify-only downloads, decrypts and checks every CRC and digest against the
manifest and writes nothing. --archive restores a stock `mongodump --archive` file (plain or --gzip).
A backup in GLACIER or DEEP_ARCHIVE is thawed first (RestoreObject at the plan's `restore.retrieval` or
--retrieval, kept `restore.thaw_days`), waiting at most `restore.thaw_wait_h`; --thaw-only asks and returns.
A progress bar (bytes, documents) goes to stderr, a summary to stdout. Exit status: 0 restored (or verified)
and clean, 1 any failure or mismatch, 2 a bad command line or plan.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from pymongo import MongoClient
from pymongo.errors import PyMongoError
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn

from flows.resources import RunResources
from flows.restore_snapshot import check_snapshot_arguments, restore_snapshot_main
from mongobackup.dump import open_client
from mongobackup.errors import BackupError, one_line
from mongobackup.glacier import RETRIEVALS
from mongobackup.inventory import StoredBackup, age_hours, list_backups, load_manifest, select_backup
from mongobackup.manifest import BackupManifest
from mongobackup.pitr.chain import describe_chains, scan_archive
from mongobackup.pitr.point import bases, describe_windows, plan_point_restore, restore_to_point, windows
from mongobackup.plan import BackupPlan, PlanError, load_plan
from mongobackup.redact import redact_text, redact_uri
from mongobackup.restore import (
    DEFAULT_PARALLEL,
    RestoreOptions,
    RestoreProgress,
    RestoreResult,
    open_archive_file,
    restore_backup,
    restore_stream,
)
from mongobackup.staging import report_lines
from mongobackup.thaw import Thawing, ThawSettings, object_thaw_state, request_thaw
from mongobackup.times import parse_at
from mongobackup.units import human_size


class UsageError(ValueError):
    """A command line that asks for something contradictory or incomplete."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flows.restore", description=__doc__.split("\n\n")[0])
    source = parser.add_argument_group("what to restore")
    source.add_argument("--plan", help="backup plan YAML (bucket, keys, instances)")
    source.add_argument("--instance", help="the instance the backup was taken of")
    source.add_argument("--database", help="the database the backup was taken of")
    pick = source.add_mutually_exclusive_group()
    pick.add_argument("--at", help="the newest committed backup at or before this ISO-8601 time (default zone UTC)")
    pick.add_argument("--key", help="this backup object (or manifest) key")
    pick.add_argument(
        "--point-in-time",
        dest="point_in_time",
        help="the database as it was at this ISO-8601 second: a base backup plus the archived oplog",
    )
    source.add_argument(
        "--uncommitted",
        action="store_true",
        help="allow the --key object to have no manifest (an upload that never committed)",
    )
    source.add_argument("--archive", help="a stock mongodump --archive file (plain or --gzip) instead of a backup")
    source.add_argument("--list", action="store_true", help="list the backups of --instance/--database and exit")
    source.add_argument(
        "--snapshot", metavar="SOURCE", help="a key/value snapshot of this source (Consul, etcd) instead of a database"
    )
    source.add_argument("--out", help="with --snapshot: the file to write (what consul/etcdctl snapshot restore take)")
    thaw = parser.add_argument_group("archived backups (GLACIER, DEEP_ARCHIVE)")
    thaw.add_argument(
        "--retrieval", choices=RETRIEVALS, help="thaw speed and price (default: the plan's restore.retrieval)"
    )
    thaw.add_argument("--thaw-only", action="store_true", help="ask for the thaw and return; restore later")
    target = parser.add_argument_group("where to")
    target.add_argument("--to", help="target MongoDB URI (default: the instance itself)")
    target.add_argument("--as", dest="as_name", help="restore under this database name")
    target.add_argument("--drop", action="store_true", help="drop collections that exist in the target first")
    target.add_argument("--verify-only", action="store_true", help="download, decrypt and check; write nothing")
    target.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="NS",
        help="only namespaces matching this db.collection pattern (repeatable)",
    )
    target.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="NS",
        help="leave out namespaces matching this db.collection pattern (repeatable)",
    )
    target.add_argument("--no-oplog", action="store_true", help="do not replay the archive's oplog slice")
    target.add_argument("--no-verify", action="store_true", help="do not read the restored data back")
    target.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL, help="namespaces inserted at once")
    target.add_argument(
        "--gnupghome",
        help="GnuPG home with the private key (default: drill.gnupghome, encryption.gnupghome, $GNUPGHOME)",
    )
    target.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    """UsageError for combinations that make no sense, before anything is read."""
    if args.snapshot or args.out:
        check_snapshot_arguments(args)
        return
    if args.archive:
        if args.plan or args.key or args.at or args.list or args.uncommitted or args.thaw_only or args.retrieval:
            raise UsageError(
                "--archive restores a file: it takes no --plan, --key, --at, --list, --uncommitted, --thaw-only "
                "or --retrieval"
            )
        if not args.to and not args.verify_only:
            raise UsageError("--archive needs --to URI (or --verify-only)")
        return
    missing = [
        flag
        for flag, value in (("--plan", args.plan), ("--instance", args.instance), ("--database", args.database))
        if not value
    ]
    if missing:
        raise UsageError(f"{', '.join(missing)} required (or --archive FILE)")
    if args.thaw_only and args.list:
        raise UsageError("--thaw-only thaws one backup; --list lists them: give one of the two")
    if args.uncommitted and not args.key:
        raise UsageError("--uncommitted needs --key: the newest backup is always a committed one")
    if args.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    if args.at:
        parse_time(args.at)
    if args.point_in_time:
        parse_time(args.point_in_time, "--point-in-time")
        if args.verify_only or args.no_oplog or args.uncommitted:
            raise UsageError(
                "--point-in-time restores and replays the oplog: no --verify-only, --no-oplog, --uncommitted"
            )


def parse_time(text: str, flag: str = "--at") -> datetime:
    """`--at` (or `--point-in-time`) by the one rule of `mongobackup.times` (without a zone: UTC); UsageError
    when it is no time."""
    try:
        return parse_at(text, flag)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def options_from(args: argparse.Namespace) -> RestoreOptions:
    return RestoreOptions(
        target_database=args.as_name,
        include=tuple(args.include),
        exclude=tuple(args.exclude),
        drop=args.drop,
        apply_oplog=not args.no_oplog,
        verify=not args.no_verify,
        parallel=args.parallel,
    )


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


def restore_from_plan(plan: BackupPlan, args: argparse.Namespace, bar: ProgressBar) -> tuple[RestoreResult, str]:
    """Finds the backup, then restores or verifies it; returns the result and a line describing the backup."""
    resources = RunResources(plan)
    storage = resources.storage
    if args.point_in_time:
        return restore_point_from_plan(resources, args, bar)
    backup = select_backup(
        storage,
        plan.storage.prefix,
        args.instance,
        args.database,
        at=parse_time(args.at) if args.at else None,
        key=args.key,
        uncommitted=args.uncommitted,
    )
    manifest = load_manifest(storage, backup.location, object_size=backup.object_size) if backup.committed else None
    gpg, passphrase = resources.decryption(args.gnupghome)
    about = describe_backup(backup, manifest)
    # A backup in GLACIER or DEEP_ARCHIVE is thawed by the download before its GET (asked once, waited for).
    thaw = Thawing(ThawSettings.from_plan(plan.restore, args.retrieval), say=say, prices=plan.prices)

    def restore(client: MongoClient | None) -> tuple[RestoreResult, str]:
        result = restore_backup(
            storage,
            backup.object_key,
            gpg,
            client,
            options_from(args),
            manifest=manifest,
            passphrase=passphrase,
            on_progress=bar.update,
            thaw=thaw,
        )
        thawed = result.thaw
        if thawed is not None and thawed.before.archived:
            return result, about + f"\n  thaw:     {thawed.describe(plan.prices)}, waited {thawed.waited_s:.0f} s"
        return result, about

    if args.verify_only:
        return restore(None)
    with open_client(args.to or resources.instance_uri(args.instance)) as client:
        return restore(client)


def restore_point_from_plan(
    resources: RunResources, args: argparse.Namespace, bar: ProgressBar
) -> tuple[RestoreResult, str]:
    """A restore to --point-in-time: the base backup, then the archived oplog up to the point."""
    plan, storage = resources.plan, resources.storage
    point = parse_time(args.point_in_time, "--point-in-time")
    chosen = plan_point_restore(storage, plan.storage.prefix, args.instance, args.database, point)
    gpg, passphrase = resources.decryption(args.gnupghome)
    about = (
        f"{describe_backup(chosen.base.backup, chosen.base.manifest)}; then the oplog up to "
        f"{chosen.point:%Y-%m-%dT%H:%M:%SZ} from {len(chosen.segments)} archived segments"
    )
    with open_client(args.to or resources.instance_uri(args.instance)) as client:
        result = restore_to_point(
            storage, gpg, client, chosen, options_from(args), passphrase=passphrase, on_progress=bar.update
        )
    return result, about


def restore_from_file(args: argparse.Namespace, bar: ProgressBar) -> RestoreResult:
    size = os.path.getsize(args.archive)

    def on_progress(progress: RestoreProgress) -> None:
        # A compressed file's offset is not known here; the archive bytes read are near enough for a bar.
        progress.object_bytes, progress.object_total = min(progress.archive_bytes, size), size
        bar.update(progress)

    with contextlib.closing(open_archive_file(args.archive)) as stream:
        if args.verify_only:
            return restore_stream(stream, None, options_from(args), source=args.archive, on_progress=on_progress)
        with open_client(args.to) as client:
            return restore_stream(stream, client, options_from(args), source=args.archive, on_progress=on_progress)


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


def thaw_only(plan: BackupPlan, args: argparse.Namespace) -> str:
    """Asks for the thaw of the backup a restore would pick, and says what was asked; waits for nothing."""
    storage = RunResources(plan).storage
    at = parse_time(args.at) if args.at else None
    found = select_backup(
        storage, plan.storage.prefix, args.instance, args.database, at=at, key=args.key, uncommitted=args.uncommitted
    )
    outcome = request_thaw(storage, found.object_key, ThawSettings.from_plan(plan.restore, args.retrieval))
    return f"thaw: {storage.where(outcome.key)}: {outcome.describe(plan.prices)}"


def say(line: str) -> None:
    """Thaw progress on stderr, beside the progress bar."""
    print(f"restore: {line}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_arguments(args)
        plan = load_plan(args.plan) if args.plan else None
        if plan is not None and args.snapshot:
            plan.snapshot_source(args.snapshot)  # an unknown source is a usage error, named with the known ones
        elif plan is not None:
            plan.instance(args.instance)  # an unknown instance is a usage error, named with the known ones
    except (UsageError, PlanError, KeyError) as exc:
        print(f"restore: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    if plan is not None and args.snapshot:
        return restore_snapshot_main(plan, args)
    if plan is not None and (args.list or args.thaw_only):
        try:
            if args.thaw_only:
                print(thaw_only(plan, args))
            else:
                print("\n".join(list_lines(plan, args.instance, args.database) + leftover_lines(plan, args)))
        except (BackupError, ValueError) as exc:
            print(f"restore: FAILED: {exc}", file=sys.stderr)
            return 1
        return 0
    bar = ProgressBar(args.quiet)
    about = None
    try:
        with bar.shown():
            if plan is None:
                result = restore_from_file(args, bar)
            else:
                result, about = restore_from_plan(plan, args, bar)
    except (BackupError, ValueError, OSError) as exc:
        print(f"restore: FAILED: {redact_text(str(exc), [args.to] if args.to else [])}", file=sys.stderr)
        return 1
    print("\n".join(summary_lines(result, about, args.verify_only)))
    return 0 if result.verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
