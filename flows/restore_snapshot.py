"""`python -m flows.restore --snapshot SOURCE`: a stored key/value snapshot back into a file, from a terminal.

    python -m flows.restore --plan PLAN.yaml --snapshot SOURCE [--at TIME | --key KEY] --out FILE
    python -m flows.restore --plan PLAN.yaml --snapshot SOURCE --list

Without --at or --key the newest committed snapshot is restored; --at picks the newest at or before a time.
FILE is written only when the object's SHA-256, the snapshot's own integrity check and its SHA-256 all
match (see `mongobackup.snapshots.restore`); it is what `consul snapshot restore FILE` or
`etcdctl snapshot restore FILE` take. An existing FILE is never replaced. Exit status: 0 written,
1 any failure, 2 a bad command line or plan.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mongobackup.errors import BackupError
from mongobackup.inventory import list_backups, select_backup
from mongobackup.keys import KV_SNAPSHOT, SNAPSHOT_SEGMENT
from mongobackup.plan import BackupPlan
from mongobackup.redact import redact_text
from mongobackup.snapshots.manifest import load_snapshot_manifest
from mongobackup.snapshots.restore import restore_snapshot_file

#: Options of a database restore that mean nothing for a snapshot.
_DATABASE_ONLY = ("instance", "database", "archive", "to", "as_name", "drop", "verify_only", "uncommitted", "read_back")


def check_snapshot_arguments(args: argparse.Namespace) -> None:
    """UsageError for a --snapshot command line that asks for something contradictory or incomplete."""
    from flows.restore_args import UsageError, parse_time

    if not args.snapshot:
        raise UsageError("--out is for --snapshot SOURCE: a database restore writes to a server (--to)")
    if not args.plan:
        raise UsageError("--snapshot needs --plan (the bucket and keys)")
    given = [f"--{name.replace('_', '-').replace('as-name', 'as')}" for name in _DATABASE_ONLY if getattr(args, name)]
    if given:
        raise UsageError(f"--snapshot restores a key/value snapshot to a file: it takes no {', '.join(given)}")
    if not args.list and not args.out:
        raise UsageError("--snapshot needs --out FILE (or --list)")
    if args.at:
        parse_time(args.at)


def restore_snapshot_main(plan: BackupPlan, args: argparse.Namespace) -> int:
    """Lists, or restores to --out, one snapshot of `args.snapshot`; the exit status."""
    from flows.resources import RunResources  # after the checks: building the storage imports prefect-aws
    from flows.restore_args import parse_time

    resources = RunResources(plan)
    storage = resources.storage
    source = args.snapshot
    kind = plan.snapshot_source(source)[1].kind
    try:
        if args.list:
            snapshots = list_backups(storage, plan.storage.prefix, source, SNAPSHOT_SEGMENT, kind=KV_SNAPSHOT)
            lines = [
                f"{'committed' if b.committed else 'UNCOMMITTED':<11} {b.location.tier.value:<9} "
                f"{b.location.taken_at:%Y-%m-%dT%H:%M:%SZ} {b.object_size or 0:>12} {b.object_key}"
                for b in snapshots
            ]
            print("\n".join(lines or [f"no snapshots of {source} in {storage.where(plan.storage.prefix)}"]))
            return 0
        chosen = select_backup(
            storage,
            plan.storage.prefix,
            source,
            SNAPSHOT_SEGMENT,
            at=parse_time(args.at) if args.at else None,
            key=args.key,
            kind=KV_SNAPSHOT,
        )
        location = chosen.location
        manifest = load_snapshot_manifest(storage, location.manifest_key, location.object_key, source)
        gpg, passphrase = resources.decryption(args.gnupghome)
        result = restore_snapshot_file(storage, manifest, gpg, Path(args.out), passphrase=passphrase)
    except (BackupError, ValueError, OSError) as exc:
        print(f"restore: FAILED: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    tool = "consul snapshot restore" if kind == "consul" else "ETCDCTL_API=3 etcdctl snapshot restore"
    print(f"restore: OK {storage.where(result.object_key)}")
    print(
        f"  snapshot: {kind} source {source}, {location.tier.value}, taken {location.taken_at:%Y-%m-%dT%H:%M:%SZ}, "
        f"index {manifest.index}, committed"
    )
    print(f"  wrote:    {result.path} ({result.snapshot_bytes} bytes, sha256 {result.snapshot_sha256})")
    print(f"  checks:   object SHA-256, {manifest.check.method}, snapshot SHA-256 and size: all match")
    print(f"  next:     {tool} {result.path}")
    return 0
