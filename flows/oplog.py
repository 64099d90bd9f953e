"""The `oplog` flow: one instance's oplog archived continuously, for restores to any second.

    python -m flows.oplog --plan PLAN.yaml --instance NAME

runs the archiver in a terminal until SIGTERM or Ctrl-C, which cut and commit the open segment before it
exits 0 (1 when that commit failed or the archiver stopped on an error that cannot heal). Logs go to stderr.
The deployment `oplog/archiver` runs the same code as a long-running Prefect flow, one run per instance
(the instance is a parameter); its concurrency limit of one keeps two archivers off one instance. A
cancelled run commits the open segment too. The archiver's own loop waits out S3 and MongoDB outages; it
stops only on an error that cannot heal (access denied, an unknown key), and that run ends Failed (the
failure automation of `flows.setup` notifies). Whatever it had read is still in the oplog: the next run,
started once the cause is fixed, resumes after the newest committed segment.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from prefect import flow, get_run_logger, runtime

from flows.cli import load_plan_or_report
from flows.resources import RunResources
from mongobackup.errors import BackupError, one_line
from mongobackup.metrics import Event, oplog_archived, oplog_gap
from mongobackup.notify import NotifyError
from mongobackup.pitr.archiver import GapReport, OplogArchiver, SegmentReport
from mongobackup.plan import load_plan


def build_archiver(resources: RunResources, instance: str, log: Callable[[str], None]) -> OplogArchiver:
    """The archiver of one instance of the plan, with its events going to the plan's InfluxDB."""
    plan = resources.plan
    if plan.pitr is None:
        raise ValueError("the plan has no pitr section: add `pitr: {}` to archive the oplog")
    plan.instance(instance)  # KeyError naming the plan's instances when there is no such one
    sink = resources.event_sink
    encryption = resources.encryption

    def emit(event: Event) -> None:
        if sink is None:
            return
        try:
            sink.write([event])
        except NotifyError as exc:  # an event lost is not an entry lost: archiving goes on
            log(f"event {event.measurement} not written: {one_line(exc)}")

    return OplogArchiver(
        client=resources.mongo_client(instance),
        storage=resources.storage,
        gpg=encryption.gpg(),
        keys=encryption.keys,
        instance=instance,
        prefix=plan.storage.prefix,
        settings=plan.pitr,
        compression_level=plan.compression.level,
        on_segment=lambda report: emit(_archived_event(instance, report)),
        on_gap=lambda report: emit(_gap_event(report)),
        log=log,
    )


def _archived_event(instance: str, report: SegmentReport) -> Event:
    manifest = report.manifest
    return oplog_archived(instance, report.lag_s, manifest.entries, manifest.sizes.encrypted_bytes, datetime.now(UTC))


def _gap_event(report: GapReport) -> Event:
    return oplog_gap(report.instance, report.seconds, datetime.now(UTC))


def archive_until(archiver: OplogArchiver, stop: threading.Event) -> None:
    """Runs the archiver until `stop`; an interruption (a cancelled flow run) first commits what was read."""
    try:
        archiver.run(stop)
    except BaseException as exc:
        stop.set()
        try:
            archiver.commit_open(stop)
        except BackupError as failure:  # the first error is the one to report; this one is only logged
            archiver.log(f"the open segment could not be committed either ({one_line(failure)}): {exc!r}")
        raise


def _run_name() -> str:
    return f"oplog-{runtime.flow_run.parameters['instance']}"


@flow(name="oplog", flow_run_name=_run_name, log_prints=False)
def oplog(plan_path: str, instance: str) -> int:
    """Archives the oplog of `instance` until the run is cancelled; returns the segments committed.

    Args:
        plan_path: The backup plan (YAML), relative to the project folder the worker runs in, or absolute.
        instance: The instance (replica set) of the plan whose oplog is archived.
    """
    logger = get_run_logger()
    with RunResources(load_plan(plan_path)) as resources:
        archiver = build_archiver(resources, instance, logger.info)
        archive_until(archiver, threading.Event())
    return archiver.committed


def _terminal_log() -> Callable[[str], None]:
    """Timestamped lines on stderr (a logger of its own: importing Prefect has configured the root logger)."""
    logger = logging.getLogger("flows.oplog")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s oplog: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger.info


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.oplog", description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", required=True, help="backup plan YAML with a pitr section")
    parser.add_argument("--instance", required=True, help="the instance whose oplog is archived")
    args = parser.parse_args(argv)
    plan = load_plan_or_report("oplog", args.plan)
    if plan is None:
        return 2
    log = _terminal_log()
    resources = RunResources(plan)
    try:
        archiver = build_archiver(resources, args.instance, log)
    except (ValueError, KeyError) as exc:
        print(f"oplog: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    except BackupError as exc:
        print(f"oplog: FAILED: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        archive_until(archiver, stop)
    except BackupError as exc:
        print(f"oplog: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        resources.close()
    print(f"oplog: stopped; {archiver.committed} segments committed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
