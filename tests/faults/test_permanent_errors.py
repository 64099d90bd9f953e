"""Fault: errors that cannot heal were retried as if transient (issue 10, defects 3 and 7; issue 9, item 5).

Missing AWS credentials, a missing AwsCredentials block and a refused request each took three retries
(about 75 s) before failing, because anything the code did not recognise counted as transient. Now only
recognised transient causes are retried (`mongobackup.s3_errors`, `mongobackup.errors.is_transient`); the
rest fails at its first attempt, with a message that says what to check.
"""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.backup import backup
from mongobackup.errors import StorageError
from mongobackup.s3 import S3Storage, s3_client
from tests.helpers import unique
from tests.planfiles import write_plan


@pytest.fixture
def no_aws_credentials(monkeypatch, tmp_path) -> None:
    """No credential anywhere in boto3's default chain: environment, files, instance metadata."""
    for name in ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN", "SECURITY_TOKEN", "PROFILE"):
        monkeypatch.delenv(f"AWS_{name}", raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def test_missing_credentials_are_permanent_and_say_so(services, no_aws_credentials):
    storage = S3Storage(s3_client(endpoint_url=services.url("moto"), region="us-east-1"), "any-bucket")
    with pytest.raises(StorageError) as failed:
        storage.check_bucket()
    assert "no usable AWS credentials" in str(failed.value) and "s3://any-bucket" in str(failed.value)
    assert "storage.credentials_block" in str(failed.value)
    assert not failed.value.transient


def task_run_counts(flow_run_id) -> dict[str, int]:
    """How many times each task of a flow run ran (1: no retry)."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name.rsplit("-", 1)[0]: run.run_count for run in runs}


@pytest.mark.parametrize("credentials", ["none", "missing-block"])
def test_a_backup_without_credentials_fails_at_the_first_attempt(
    services, bucket, gpg_key, prefect, no_aws_credentials, tmp_path, credentials
):
    storage = {"credentials_block": "no-such-aws-block"} if credentials == "missing-block" else {}
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": unique("rs-cred"), "uri": services.mongo_uri("mongo-b"), "databases": ["x"]}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "home",
        retries={"attempts": 3, "backoff_s": 5, "jitter": 0},
    )
    if storage:
        text = plan.read_text().replace("part_size_mib: 5", "part_size_mib: 5\n  credentials_block: no-such-aws-block")
        plan.write_text(text)
    state = backup(plan_path=str(plan), return_state=True)
    assert state.is_failed()
    counts = task_run_counts(state.state_details.flow_run_id)
    assert counts["preflight"] == 1, counts  # not retried: three more attempts cannot find a credential
    expected = "no-such-aws-block" if storage else "no usable AWS credentials"
    assert expected in state.message
