"""The plan's `pitr:` section: defaults, and bad values named by field."""

from __future__ import annotations

import pytest

from mongobackup.plan import PlanError, load_plan
from tests.planfiles import write_plan


def plan_with(tmp_path, pitr):
    overrides = {} if pitr is None else {"pitr": pitr}
    return write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": "rs-a", "uri": "mongodb://127.0.0.1:1"}],
        bucket="pitr-settings",
        s3_endpoint="http://127.0.0.1:1",
        encryption={"passphrase_env": "BACKUP_PASSPHRASE"},
        **overrides,
    )


def test_without_the_section_nothing_is_archived_and_an_empty_one_takes_the_defaults(tmp_path):
    assert load_plan(plan_with(tmp_path, None)).pitr is None
    pitr = load_plan(plan_with(tmp_path, {})).pitr
    assert (pitr.segment_s, pitr.segment_mib, pitr.max_lag_s, pitr.segment_bytes) == (30, 16, 120, 16 << 20)
    assert pitr.retry_max_s == 30


@pytest.mark.parametrize(
    ("pitr", "field", "message"),
    [
        ({"segment_s": 0}, "pitr.segment_s", "greater than or equal to 1"),
        ({"segment_mib": 0}, "pitr.segment_mib", "greater than or equal to 1"),
        ({"retry_max_s": 0.5}, "pitr.retry_max_s", "greater than or equal to 1"),
        ({"segment_s": 60, "max_lag_s": 60}, "pitr", "max_lag_s (60) must be above segment_s (60)"),
        ({"segments": 30}, "pitr.segments", "unknown field (did you mean segment_s?)"),
    ],
)
def test_bad_values_are_named_by_field(tmp_path, pitr, field, message):
    with pytest.raises(PlanError) as caught:
        load_plan(plan_with(tmp_path, pitr))
    assert any(where == field and message in what for where, what in caught.value.problems), caught.value.problems
