"""Errors no retry can heal fail at once, as permanent, and say what to fix: missing AWS credentials, a missing
AwsCredentials block, an expired or unknown GPG key. (A retried permanent error costs three backoffs, about
75 s, before the same failure.)"""

from __future__ import annotations

import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from devservices import throwaway_gpg_key
from flows.backup import backup
from flows.resources import RunResources, build_encryption
from mongobackup.crypto import Gpg
from mongobackup.errors import BackupError, EncryptionError
from mongobackup.plan import load_plan
from tests.helpers import unique
from tests.planfiles import write_plan


@pytest.fixture(scope="module")
def expired_key():
    with throwaway_gpg_key("Expired Test <expired@test>", expired=True) as key:
        yield key


def test_an_expired_key_is_reported_as_expired_with_its_date(expired_key, tmp_path):
    gpg = Gpg(tmp_path / "home")
    fingerprints = gpg.import_key_files([expired_key.public_key_file])
    with pytest.raises(EncryptionError) as caught:
        gpg.resolve_recipients(fingerprints)
    message = str(caught.value)
    assert expired_key.fingerprint in message and "expired on 2020-01-02 00:00 UTC" in message, message
    assert "import it" not in message and not caught.value.transient


def test_an_expired_key_fails_the_plan_encryption_naming_the_field(services, expired_key, tmp_path):
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": "rs", "uri": services.mongo_uri("mongo-b")}],
        bucket="b12",
        s3_endpoint=services.url("moto"),
        public_key_file=expired_key.public_key_file,
        gnupghome=tmp_path / "home",
    )
    with pytest.raises(EncryptionError, match="expired on 2020-01-02") as caught:
        build_encryption(load_plan(plan))
    assert "encryption.public_key_files" in str(caught.value)


def test_an_unknown_recipient_still_says_import_it(tmp_path):
    with pytest.raises(EncryptionError, match="unknown GPG recipient .*import it") as caught:
        Gpg(tmp_path / "home").resolve_recipients(["6F3A1C0D2B9E4F5A8C7D1E2F3A4B5C6D7E8F9A0B"])
    assert not caught.value.transient


def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """An environment where boto3's default chain finds nothing: no variables, no files, no instance role."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)


def plan_on_moto(services, tmp_path, **storage) -> RunResources:
    path = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": "rs", "uri": services.mongo_uri("mongo-b")}],
        bucket="b12",
        s3_endpoint=services.url("moto"),
        encryption={"passphrase_env": "UNUSED"},
    )
    plan = load_plan(path)
    return RunResources(plan.model_copy(update={"storage": plan.storage.model_copy(update=storage)}))


def test_missing_aws_credentials_fail_at_once(services, monkeypatch, tmp_path):
    no_aws_credentials(monkeypatch, tmp_path)
    resources = plan_on_moto(services, tmp_path)
    with pytest.raises(BackupError) as caught:
        resources.storage.check_bucket()
    message = str(caught.value)
    assert not caught.value.transient, message
    assert "no AWS credentials" in message and "storage.credentials_block" in message, message


def test_a_missing_credentials_block_fails_at_once_naming_it(services, prefect, tmp_path):
    block = f"no-such-block-{uuid.uuid4().hex[:8]}"
    resources = plan_on_moto(services, tmp_path, credentials_block=block)
    with pytest.raises(BackupError) as caught:
        resources.storage.check_bucket()
    message = str(caught.value)
    assert not caught.value.transient, message
    assert f"storage.credentials_block: AwsCredentials block {block!r}" in message, message


def task_run_counts(flow_run_id) -> dict[str, int]:
    """How many times each task of a flow run ran (1: no retry)."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name.rsplit("-", 1)[0]: run.run_count for run in runs}


@pytest.mark.parametrize("block", [None, "no-such-aws-block"])
def test_a_backup_without_credentials_runs_its_preflight_once(
    services, bucket, gpg_key, prefect, monkeypatch, tmp_path, block
):
    """The flow's retry policy (tasks/retries.py) at work: the old one ran the preflight 4 times (3 retries)."""
    no_aws_credentials(monkeypatch, tmp_path)
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": unique("rs-cred"), "uri": services.mongo_uri("mongo-b"), "databases": ["x"]}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "home",
        retries={"attempts": 3, "backoff_s": 5, "jitter": 0},
    )
    if block:
        plan.write_text(plan.read_text().replace("part_size_mib: 5", f"part_size_mib: 5\n  credentials_block: {block}"))
    state = backup(plan_path=str(plan), return_state=True)
    assert state.is_failed()
    counts = task_run_counts(state.state_details.flow_run_id)
    assert counts["preflight"] == 1, counts
    assert "storage.credentials_block" in state.message, state.message
