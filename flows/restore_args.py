"""`python -m flows.restore`: restore one backup, or check it, from a terminal. No Prefect server is involved.

    python -m flows.restore --plan PLAN.yaml --instance NAME --database DB [--at TIME | --key KEY |
                            --point-in-time TIME]
                            [--uncommitted] [--to URI] [--as NAME] [--drop] [--verify-only]
                            [--include NS] [--exclude NS] [--no-oplog] [--no-verify | --read-back]
                            [--gnupghome DIR]
    python -m flows.restore --plan PLAN.yaml --instance NAME --database DB --list
    python -m flows.restore --plan PLAN.yaml --instance NAME --database DB [--at | --key] --thaw-only [--retrieval T]
    python -m flows.restore --archive FILE (--to URI | --verify-only) [--as NAME] [--drop] ...
    python -m flows.restore --plan PLAN.yaml --snapshot SOURCE [--at TIME | --key KEY] --out FILE [--list]

Without --at or --key the newest committed backup is restored; --at picks the newest at or before a time.
--point-in-time restores the database as it was at that second: the newest base backup that ended before
it, then the archived oplog up to it (see mongobackup.pitr.point); --list shows the restorable windows.
The target is the instance itself unless --to names another server; collections that already exist there
are refused unless --drop. --verify-only downloads, decrypts and checks every CRC and digest against the
manifest and writes nothing. A restore is verified before anything is moved into place (the digest of the
documents the server acknowledged, the staged collections' counts and indexes, see mongobackup.restore_verify);
--read-back verifies by reading every restored document back instead, as the drills do; --no-verify keeps only
the archive's own checks. --archive restores a stock `mongodump --archive` file (plain or --gzip).
A backup in GLACIER or DEEP_ARCHIVE is thawed first (RestoreObject at the plan's `restore.retrieval` or
--retrieval, kept `restore.thaw_days`), waiting at most `restore.thaw_wait_h`; --thaw-only asks and returns.
A progress bar (bytes, documents) goes to stderr, a summary to stdout. Exit status: 0 restored (or verified)
and clean, 1 any failure or mismatch, 2 a bad command line or plan.
"""

from __future__ import annotations

import argparse
from datetime import datetime

from flows.restore_snapshot import check_snapshot_arguments
from mongobackup.glacier import RETRIEVALS
from mongobackup.restore_targets import DEFAULT_PARALLEL, RestoreOptions
from mongobackup.times import parse_at


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
    target.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the verification of the staged data (the archive's CRCs and the manifest's digests still hold)",
    )
    target.add_argument(
        "--read-back",
        action="store_true",
        help="verify by reading every restored document back (slower; what the drills do)",
    )
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
    if args.read_back and (args.no_verify or args.verify_only):
        raise UsageError("--read-back is a way to verify a restore: not with --no-verify or --verify-only")
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
        read_back=args.read_back,
        parallel=args.parallel,
    )
