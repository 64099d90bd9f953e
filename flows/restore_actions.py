"""What `python -m flows.restore` does once its command line is checked: restore (or verify) a stored backup,
restore to a point in time, restore an archive file, or only ask for the thaw of a backup."""

from __future__ import annotations

import argparse
import contextlib
import os

from pymongo import MongoClient

from flows.resources import RunResources
from flows.restore_args import options_from, parse_time
from flows.restore_output import ProgressBar, describe_backup, say
from mongobackup.dump import open_client
from mongobackup.inventory import load_manifest, select_backup
from mongobackup.pitr.point import plan_point_restore, restore_to_point
from mongobackup.plan import BackupPlan
from mongobackup.restore import open_archive_file, restore_backup
from mongobackup.restore_result import RestoreProgress, RestoreResult
from mongobackup.restore_stream import restore_stream
from mongobackup.thaw import Thawing, ThawSettings, request_thaw


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


def thaw_only(plan: BackupPlan, args: argparse.Namespace) -> str:
    """Asks for the thaw of the backup a restore would pick, and says what was asked; waits for nothing."""
    storage = RunResources(plan).storage
    at = parse_time(args.at) if args.at else None
    found = select_backup(
        storage, plan.storage.prefix, args.instance, args.database, at=at, key=args.key, uncommitted=args.uncommitted
    )
    outcome = request_thaw(storage, found.object_key, ThawSettings.from_plan(plan.restore, args.retrieval))
    return f"thaw: {storage.where(outcome.key)}: {outcome.describe(plan.prices)}"
