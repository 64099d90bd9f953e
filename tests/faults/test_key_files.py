"""Fault: the plan's public key file is missing or holds no key. Refused before any dump, naming the field and
the file, as permanent (no retry brings a file back). The unknown, expired and wrong keys are in
test_backup_faults.py, test_permanent_errors.py and test_restore_tampering.py."""

from __future__ import annotations

import pytest

from flows.resources import build_encryption
from mongobackup.errors import EncryptionError
from mongobackup.plan import load_plan
from tests.faults.contract import assert_names
from tests.planfiles import write_plan


@pytest.mark.parametrize(("content", "words"), [(None, "cannot read"), ("not a key\n", "holds no OpenPGP public key")])
def test_a_missing_or_empty_key_file_is_named(tmp_path, content, words):
    key_file = tmp_path / "team.asc"
    if content is not None:
        key_file.write_text(content)
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": "rs", "uri": "mongodb://127.0.0.1:1"}],
        bucket="b12",
        s3_endpoint=None,
        public_key_file=key_file,
        gnupghome=tmp_path / "home",
    )
    with pytest.raises(EncryptionError) as refused:
        build_encryption(load_plan(plan))
    assert_names(str(refused.value), ["encryption.public_key_files", str(key_file), words])
    assert not refused.value.transient
