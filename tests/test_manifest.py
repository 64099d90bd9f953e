"""The manifest round-trips through JSON, and a reader refuses a format version it does not know."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mongobackup.keys import BackupLocation
from mongobackup.manifest import MANIFEST_VERSION, BackupManifest
from mongobackup.tiers import Tier
from tests.helpers import fake_manifest

LOCATION = BackupLocation("backups/", Tier.DAILY, "rs-a", "shop", datetime(2026, 11, 20, 1, 30, tzinfo=UTC), "abc123")
KEY = "s3://bucket/" + LOCATION.manifest_key


def stored() -> dict[str, Any]:
    return fake_manifest(LOCATION).to_json_dict()


def test_a_manifest_reads_back_as_written() -> None:
    data = stored()
    assert data["format_version"] == MANIFEST_VERSION == 1
    assert BackupManifest.from_json_dict(data, key=KEY) == fake_manifest(LOCATION)


@pytest.mark.parametrize("version", [2, 0, -1, "1", True, 1.0, None])
def test_a_version_this_tool_does_not_know_is_refused_by_name(version: object) -> None:
    data = {**stored(), "format_version": version}
    with pytest.raises(ValueError, match=rf"^manifest {KEY}: format_version {version!r} is not one this tool reads"):
        BackupManifest.from_json_dict(data, key=KEY)


def test_a_manifest_without_a_version_is_refused() -> None:
    data = stored()
    del data["format_version"]
    with pytest.raises(ValueError, match=rf"manifest {KEY}: format_version None is not one"):
        BackupManifest.from_json_dict(data, key=KEY)


def test_a_newer_manifest_is_refused_for_its_version_not_its_fields() -> None:
    newer = {"format_version": 2, "object": {"key": LOCATION.object_key}}  # a shape this tool never wrote
    with pytest.raises(ValueError, match="format_version 2 is not one this tool reads") as caught:
        BackupManifest.from_json_dict(newer, key=KEY)
    assert "Field required" not in str(caught.value)


def test_stored_json_that_is_no_object_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=rf"manifest {KEY}: not a JSON object but list"):
        BackupManifest.from_json_dict([stored()], key=KEY)  # type: ignore[arg-type]


def test_no_manifest_of_an_unknown_version_can_be_built() -> None:
    with pytest.raises(ValueError, match="format_version 2 is not one this tool writes or reads"):
        BackupManifest(**{**fake_manifest(LOCATION).model_dump(), "format_version": 2})


def test_docs_format_lists_every_manifest_field() -> None:
    """docs/FORMAT.md is the specification: its manifest table names exactly the fields the code writes."""
    text = (Path(__file__).parents[1] / "docs" / "FORMAT.md").read_text()
    section = text.split("## The manifest", 1)[1].split("\n### ", 1)[0]
    documented = {
        name
        for line in section.splitlines()
        if line.startswith("| `")
        for name in re.findall(r"`(\w+)`", line.split("|")[1])
    }
    assert documented == set(BackupManifest.model_fields)
    assert f"**{MANIFEST_VERSION}**" in section
