"""Fault: the store refuses us (issue 10, defect 7, the storage part).

A 403 used to read only "Forbidden" (a HEAD reply has no body to say more). The message must say what to
check, the credentials or the bucket policy, and name the bucket and the key; and a refusal is permanent:
no retry heals it. Run against SeaweedFS, which enforces credentials and per-identity permissions.
"""

from __future__ import annotations

import uuid

import pytest

from devservices import S3_READ_ONLY_CREDENTIALS, S3_TEST_CREDENTIALS
from mongobackup.errors import StorageError
from tests.helpers import storage_on


@pytest.fixture
def seaweed_bucket(services) -> str:
    services.start(["seaweedfs"])
    name = f"deny-{uuid.uuid4().hex[:12]}"
    storage_on(services.url("seaweedfs"), name).client.create_bucket(Bucket=name)
    return name


def test_a_forbidden_write_names_credentials_policy_bucket_and_key(services, seaweed_bucket):
    reader = storage_on(services.url("seaweedfs"), seaweed_bucket, credentials=S3_READ_ONLY_CREDENTIALS)
    reader.check_bucket()  # reading is allowed
    with pytest.raises(StorageError) as refused:
        reader.put_json("daily/rs/db/x.manifest.json", {})
    message = str(refused.value)
    assert f"s3://{seaweed_bucket}/daily/rs/db/x.manifest.json" in message
    assert "credentials" in message and "bucket policy" in message and f"bucket {seaweed_bucket}" in message
    assert not refused.value.transient


def test_a_bodiless_403_on_a_wrong_secret_says_what_to_check(services, seaweed_bucket):
    wrong = {**S3_TEST_CREDENTIALS, "aws_secret_access_key": "not-the-secret"}
    storage = storage_on(services.url("seaweedfs"), seaweed_bucket, credentials=wrong)
    with pytest.raises(StorageError) as refused:
        storage.check_bucket()  # HEAD: the reply has no body, only the status 403
    message = str(refused.value)
    assert f"s3://{seaweed_bucket}" in message and "credentials" in message
    assert message.count("Forbidden") <= 1 and not message.endswith("Forbidden (403)")
    assert not refused.value.transient
    with pytest.raises(StorageError) as head:
        storage.head("daily/rs/db/k.archive.zst.gpg")
    assert f"s3://{seaweed_bucket}/daily/rs/db/k.archive.zst.gpg" in str(head.value)
    assert "credentials" in str(head.value) and not head.value.transient
