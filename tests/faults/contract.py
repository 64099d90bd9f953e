"""The one contract every fault case asserts (issue 10), whatever the fault:

- no committed backup for the failed one: no manifest, and no object under a final key unless the run died
  after the object was complete and verified (then the object is there, uncommitted, and restore refuses it);
- no open multipart upload after the next run: the next backup sweeps what a dead run left
  (`uploads.abort_stale_uploads`, as the flow's first task does), then succeeds and commits;
- a failure event naming instance, database and stage: read back from InfluxDB 1.6 for a flow run, or, for a
  case driven through the core, the PipelineError the flow's failure hook writes as that event (its stage and
  message); a process killed with SIGKILL writes nothing, and then no success event may stand either;
- a message that names the thing at fault (instance, database, object key, config field);
- no secret in any output: logs, command-line output, artifacts, manifests and object metadata, events;
- an untouched restore target: the same collections, options, indexes and documents as before the restore,
  and no staging collection left behind.

A test states its case as a `BackupFault` or `RestoreFault` and calls `check_backup_fault` or
`check_restore_fault`; a clause that cannot apply says why in the case (e.g. `killed=True`).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import MongoClient

from devservices import LocalServices
from mongobackup.errors import PipelineError
from mongobackup.keys import MANIFEST_SUFFIX, OBJECT_SUFFIX
from mongobackup.plan import StoragePlan
from mongobackup.s3 import S3Storage
from mongobackup.staging import is_reserved
from mongobackup.tiers import Tier, prefix_for
from mongobackup.uploads import abort_stale_uploads
from tests.dataset import snapshot
from tests.helpers import influx_points, influxql

#: How old an open upload must be before the next run aborts it: the plan's default.
STALE_AFTER = timedelta(hours=StoragePlan.model_fields["abort_uploads_after_h"].default)


# --- backups -------------------------------------------------------------------------------------------------


@dataclass
class BackupFault:
    """A backup that failed, and what it must have left."""

    storage: S3Storage  # on the real S3 server (not through a fault proxy)
    instance: str
    database: str
    #: The run's or the error's message, and the things it must name.
    message: str
    names: Sequence[str]
    #: The stage the failure is reported under ("dump", "encrypt", "upload", "verify", "commit", "preflight").
    stage: str
    #: Read the failure event from this InfluxDB (a flow run); None: the case is driven through the core, and
    #: `error` is what the flow's failure hook would write.
    services: LocalServices | None = None
    error: BaseException | None = None
    #: The process was killed with SIGKILL: it could write no event (the watchdog is the backstop).
    killed: bool = False
    #: It died after its object was complete and verified: the object stays, without a manifest.
    uncommitted_object: bool = False
    secrets: Sequence[str] = ()
    outputs: Sequence[str] = ()
    #: The next backup of the database (after the sweep of stale uploads): must commit.
    next_backup: Callable[[], object] | None = None
    #: Keys of the bucket before the failed run (backups that were there already).
    before: Sequence[str] = field(default_factory=list)


def check_backup_fault(case: BackupFault) -> None:
    """Asserts the whole contract for a failed backup; runs the next backup when the case gives one."""
    storage = case.storage
    left = [key for key in database_keys(storage, case.instance, case.database) if key not in case.before]
    assert not [k for k in left if k.endswith(MANIFEST_SUFFIX)], f"a failed backup was committed: {left}"
    objects = [k for k in left if k.endswith(OBJECT_SUFFIX)]
    if case.uncommitted_object:
        assert len(objects) == 1, f"expected the verified, uncommitted object: {left}"
    else:
        assert objects == [], f"an object under a final key from a failed backup: {objects}"
    assert_names(case.message, case.names)
    if case.killed:
        assert case.services is not None, "give `services`: a killed run must have left no success event"
        assert_no_success_event(case.services, case.instance, case.database)
    elif case.services is not None:
        assert_failure_event(case.services, case.instance, case.database, case.stage)
    else:
        assert isinstance(case.error, PipelineError), f"not a pipeline error: {case.error!r}"
        assert case.error.stage == case.stage, (case.error.stage, str(case.error))
        assert_names(str(case.error), [f"instance {case.instance}", f"database {case.database}"])
    assert_no_secret(case.secrets, [*case.outputs, *bucket_texts(storage)], "the run's output or the bucket")
    if case.services is not None:
        assert_no_secret(case.secrets, event_texts(case.services, case.instance), "the events")
    if case.next_backup is not None:
        next_run(storage, case.next_backup)
        committed = [k for k in database_keys(storage, case.instance, case.database) if k.endswith(MANIFEST_SUFFIX)]
        assert len(committed) == len([k for k in case.before if k.endswith(MANIFEST_SUFFIX)]) + 1, committed


def next_run(storage: S3Storage, back_up: Callable[[], object]) -> None:
    """The next backup run: sweeps stale uploads of ours first, as the flow does, then backs up; after it no
    upload may be open anywhere in the bucket. (moto reports every upload as started in 2010, so a dead run's
    upload is past the plan's 24 h here; the age rule itself is test_open_uploads.py's, on SeaweedFS.)"""
    abort_stale_uploads(storage, "", datetime.now(UTC), STALE_AFTER)
    back_up()
    assert storage.open_uploads() == [], "an open multipart upload survived the next run"


def database_keys(storage: S3Storage, instance: str, database: str) -> list[str]:
    """Every key of (instance, database) in every tier."""
    return sorted(info.key for tier in Tier for info in storage.list_keys(f"{prefix_for(tier)}{instance}/{database}/"))


def assert_failure_event(services: LocalServices, instance: str, database: str, stage: str) -> None:
    """One `instance_backup_failed` point tagged with the instance, database and stage, its error naming both;
    and no success event for the database or its instance."""
    where = f"\"instance\"='{instance}' AND \"database\"='{database}'"
    failed = influx_points(services, "instance_backup_failed", where)
    assert [p["stage"] for p in failed] == [stage], failed
    assert failed[0]["value"] == 1
    assert_names(failed[0]["error"], [instance, database])
    assert_no_success_event(services, instance, database)


def assert_no_success_event(services: LocalServices, instance: str, database: str) -> None:
    where = f"\"instance\"='{instance}' AND \"database\"='{database}'"
    assert influx_points(services, "instance_backup_completed", where) == []
    assert influx_points(services, "instance_backup_completed", f"\"instance\"='{instance}' AND \"database\"=''") == []


# --- restores ------------------------------------------------------------------------------------------------


@dataclass
class RestoreFault:
    """A restore that failed, and the target it must have left as it was."""

    message: str
    names: Sequence[str]
    target_uri: str
    target_database: str
    #: `target_state(...)` taken before the restore.
    before: dict[str, Any] | None
    secrets: Sequence[str] = ()
    outputs: Sequence[str] = ()


def target_state(uri: str, database: str) -> dict[str, Any] | None:
    """What a restore must leave alone: every collection, its options, indexes and documents; None when the
    database does not exist."""
    with MongoClient(uri) as client:
        if database not in client.list_database_names():
            return None
        return snapshot(client, database)


def check_restore_fault(case: RestoreFault) -> None:
    assert_names(case.message, case.names)
    assert target_state(case.target_uri, case.target_database) == case.before, "the failed restore changed its target"
    with MongoClient(case.target_uri) as client:
        staged = [n for n in client[case.target_database].list_collection_names() if is_reserved(n)]
    assert staged == [], f"staging collections left in {case.target_database}: {staged}"
    assert_no_secret(case.secrets, case.outputs, "the restore's output")


# --- clauses shared by both ----------------------------------------------------------------------------------


def assert_names(message: str, names: Iterable[str]) -> None:
    missing = [name for name in names if name not in message]
    assert not missing, f"the message does not name {missing}: {message}"


def assert_no_secret(secrets: Sequence[str], texts: Iterable[str], where: str) -> None:
    """No secret, as it is or percent-encoded (as in a URI or S3 metadata), in any of `texts`."""
    forms = {form for secret in secrets for form in (secret, urllib.parse.quote(secret, safe=""))}
    for text in texts:
        leaked = [form for form in forms if form in text]
        assert not leaked, f"a secret is in {where}: {text[:300]}"


def bucket_texts(storage: S3Storage) -> list[str]:
    """Every key of the bucket, every JSON document (manifests, rosters) and every object's user metadata."""
    texts = []
    for info in storage.list_keys(""):
        texts.append(info.key)
        if info.key.endswith(".json"):
            texts.append(json.dumps(storage.get_json(info.key)))
        head = storage.head(info.key)
        if head is not None:
            texts.append(json.dumps(head.metadata))
    return texts


def event_texts(services: LocalServices, instance: str) -> list[str]:
    """Every point of every measurement tagged with `instance`, as text."""
    series = influxql(services.url("influxdb"), f"SELECT * FROM /.*/ WHERE \"instance\"='{instance}'")
    return [json.dumps(s, default=str) for s in series]


def flow_run_texts(flow_run_id: Any) -> list[str]:
    """What a flow run left on the Prefect server: its state message, logs and artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)  # the run's logs are sent in batches by a thread of their own
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    texts = [run.state.message or "" if run.state else "", json.dumps(run.parameters, default=str)]
    texts += [log.message for log in logs]
    texts += [json.dumps(a.data, default=str) for a in artifacts]
    assert logs, f"flow run {flow_run_id} left no logs to search"
    return texts
