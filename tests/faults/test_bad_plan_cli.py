"""Bad plans through the command line a user runs (`python -m flows.backup --plan P --dry-run`): each refused
with the field named, exit 2 when the plan file itself is wrong, 1 when the plan loads but a value it points
at is unusable (a URI in an environment variable, or one only pymongo can tell is malformed); and the MongoDB
password in any of them is never echoed. Before, a malformed URI ended the dry run in a pymongo traceback
that named neither the instance nor the field.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from flows.backup import main
from tests.faults.contract import assert_names, assert_no_secret

PASSWORD = f"Pw-{uuid.uuid4().hex[:12]}"


def plan_file(tmp_path: Path, instance: dict, **sections: dict) -> Path:
    plan = {
        "instances": [{"name": "rs-bad", "databases": "all", **instance}],
        "storage": {"bucket": "faults-bucket"},
        "encryption": {"passphrase_env": "UNUSED"},
        "tiers": {"timezone": "UTC"},
        **sections,
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


CASES = [
    # (instance fields, other sections, exit status, what the message must name)
    ({"uri": f"http://bk:{PASSWORD}@127.0.0.1:1/"}, {}, 2, ["instances.0.uri", "not a mongodb://"]),
    ({"uri": f"mongodb://bk:{PASSWORD}@127.0.0.1:1/", "uri_env": "FAULTS_URI"}, {}, 2, ["instances.0", "uri_env"]),
    ({"uri": f"mongodb://bk:{PASSWORD}@"}, {}, 1, ["instance rs-bad", "instances.0.uri", "Empty host"]),
    ({"uri": f"mongodb://bk:{PASSWORD}@127.0.0.1:port/"}, {}, 1, ["instance rs-bad", "instances.0.uri", "Port"]),
    ({"uri_env": "FAULTS_URI"}, {}, 1, ["instance rs-bad", "instances.0.uri_env", "Port"]),
    ({"uri": f"mongodb://bk:{PASSWORD}@127.0.0.1:1/"}, {"storage": {"bucket": "Bad_Bucket"}}, 2, ["storage.bucket"]),
    (
        {"uri": f"mongodb://bk:{PASSWORD}@127.0.0.1:1/"},
        {"storage": {"bucket": "b12", "prefix": "../"}},
        2,
        ["storage.prefix", ".."],
    ),
    ({"uri": f"mongodb://bk:{PASSWORD}@127.0.0.1:1/"}, {"tiers": {"timezone": "Mars/Olympus"}}, 2, ["tiers.timezone"]),
]


@pytest.mark.parametrize(("instance", "sections", "status", "names"), CASES)
def test_a_bad_plan_is_refused_naming_the_field_and_never_its_password(
    tmp_path, monkeypatch, capsys, instance, sections, status, names
):
    monkeypatch.setenv("FAULTS_URI", f"mongodb://bk:{PASSWORD}@127.0.0.1:port/")
    path = plan_file(tmp_path, instance, **sections)
    assert main(["--plan", str(path), "--dry-run"]) == status
    out, err = capsys.readouterr()
    assert out == ""
    assert_names(err, names)
    assert_no_secret([PASSWORD], [err], "the command's output")
