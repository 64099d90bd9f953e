"""Bad plans are refused before any run, with the field named: a prefix that climbs out of the bucket's key
space, instance names that collide once case is ignored, and the cases that already held."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from mongobackup.plan import PlanError, load_plan

EXAMPLE = Path(__file__).parents[2] / "deployments" / "plans" / "example.yaml"


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def refused(tmp_path: Path, data: dict[str, Any]) -> PlanError:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    return caught.value


@pytest.mark.parametrize(
    "prefix",
    ["../", "backups/../", "a/../../b/", "./", "backups/./x/", "/backups/", "/", "..\\x/", "a//b/"],
)
def test_a_prefix_that_leaves_or_blurs_the_key_space_is_refused(tmp_path, example, prefix):
    data = copy.deepcopy(example)
    data["storage"]["prefix"] = prefix
    error = refused(tmp_path, data)
    assert [where for where, _ in error.problems] == ["storage.prefix"], error.problems


@pytest.mark.parametrize("prefix", ["", "backups/", "team.a/mongo-backups/", "x..y/"])
def test_ordinary_prefixes_still_load(tmp_path, example, prefix):
    data = copy.deepcopy(example)
    data["storage"]["prefix"] = prefix
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert load_plan(path).storage.prefix == prefix


def test_instance_names_that_differ_only_in_case_are_refused(tmp_path, example):
    # Two runs would write rs-Orders/ and rs-orders/ keys; a case-insensitive store or dashboard mixes them.
    data = copy.deepcopy(example)
    data["instances"][1]["name"] = "RS-Orders"
    error = refused(tmp_path, data)
    assert error.problems == [
        (
            "instances",
            "instance name 'RS-Orders' (instances.1.name) differs from 'rs-orders' (instances.0.name) only "
            "in case; names must differ in more than case",
        )
    ]
    assert "instances: instance name 'RS-Orders' (instances.1.name)" in str(error)
