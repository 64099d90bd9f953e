"""The backup plan schema: the example a user would write loads as is; every bad field is named."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from mongobackup.plan import BackupPlan, InfluxV1Plan, InfluxV2Plan, PlanError, load_plan
from mongobackup.tiers import Tier

REPO = Path(__file__).parents[1]
EXAMPLE = REPO / "deployments" / "plans" / "example.yaml"
LOCAL_PLAN = REPO / "deployments" / "plans" / "local.yaml"


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def write(tmp_path: Path, data: Any, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_example_plan_loads_as_it_is():
    plan = load_plan(EXAMPLE)
    orders, users = plan.instances
    assert (orders.name, orders.uri.source, orders.uri.env) == ("rs-orders", "uri_env", "ORDERS_MONGO_URI")
    assert orders.databases == "all" and orders.exclude == ["scratch_*"]
    assert orders.read_preference == "secondaryPreferred"
    assert users.uri.source == "uri" and users.databases == ["accounts", "sessions"]
    assert users.read_preference == "primaryPreferred" and users.engine == "pymongo"
    assert plan.storage.bucket == "acme-mongo-backups" and plan.storage.prefix == ""
    assert plan.storage.endpoint_url == "http://127.0.0.1:5055" and plan.storage.region == "eu-west-1"
    assert plan.storage.credentials_block is None and plan.storage.part_size_mib == 8
    assert plan.encryption.recipients == ["6F3A1C0D2B9E4F5A8C7D1E2F3A4B5C6D7E8F9A0B"]
    assert plan.encryption.public_key_files == [EXAMPLE.parent / "keys" / "backup-team.asc"]
    assert plan.encryption.method == "public-key" and plan.encryption.cipher == "AES256"
    assert (plan.compression.level, plan.compression.threads) == (3, 2)
    assert plan.tiers.timezone == "Europe/London" and plan.tiers.weekly_day == "monday"
    assert plan.tiers.retention_days[Tier.YEARLY] == 43800 and plan.tiers.glacier_after_days == 9
    assert isinstance(plan.notify.influxdb, InfluxV1Plan)
    assert (plan.notify.influxdb.url, plan.notify.influxdb.database) == ("http://127.0.0.1:8086", "backups")
    assert plan.warnings() == []


def test_the_demo_plan_loads_and_points_at_the_demo_key():
    plan = load_plan(LOCAL_PLAN)
    assert plan.instance_names == ["rs-a", "rs-b"]
    assert plan.instance("rs-b")[1].uri.inline == "mongodb://127.0.0.1:27102/?directConnection=true"
    assert plan.instance("rs-b")[1].exclude == ["scratch_*"]
    assert plan.storage.bucket == "demo-mongo-backups" and plan.storage.endpoint_url == "http://127.0.0.1:5055"
    assert plan.encryption.public_key_files == [REPO / "demo" / "keys" / "demo-backup.pub.asc"]
    assert plan.notify.influxdb.api == "v1"


def test_a_minimal_plan_gets_defaults(tmp_path):
    plan = load_plan(
        write(
            tmp_path,
            {
                "instances": [{"name": "rs", "uri_secret": "orders-uri"}],
                "storage": {"bucket": "b12"},
                "encryption": {"passphrase_env": "BACKUP_PASSPHRASE"},
                "tiers": {"timezone": "UTC"},
            },
        )
    )
    assert plan.instances[0].databases == "all" and plan.instances[0].max_parallel == 1
    assert plan.encryption.method == "symmetric"
    assert (plan.compression.level, plan.compression.threads) == (3, 0)
    assert (plan.retries.attempts, plan.retries.backoff_s, plan.retries.jitter) == (3, 10.0, 0.5)
    assert plan.notify is None
    assert [w.split(":")[0] for w in plan.warnings()] == ["notify.influxdb"]


def test_relative_paths_resolve_against_the_plan_folder(tmp_path, example):
    data = copy.deepcopy(example)
    data["encryption"].update(public_key_files=["keys/a.asc", "/abs/b.asc", "../c.asc"], gnupghome="home")
    (tmp_path / "sub").mkdir()
    plan = load_plan(write(tmp_path / "sub", data))
    assert plan.encryption.public_key_files == [
        tmp_path / "sub" / "keys" / "a.asc",
        Path("/abs/b.asc"),
        tmp_path / "c.asc",
    ]
    assert plan.encryption.gnupghome == tmp_path / "sub" / "home"


def test_influxdb_v2(tmp_path, example):
    data = copy.deepcopy(example)
    data["notify"] = {
        "influxdb": {
            "api": "v2",
            "url": "https://influx:8086",
            "org": "ops",
            "bucket": "backups",
            "token_secret": "influx-token",
        }
    }
    influx = load_plan(write(tmp_path, data)).notify.influxdb
    assert isinstance(influx, InfluxV2Plan) and influx.token.secret == "influx-token" and influx.token.env is None


def edit(example: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of the example with `dotted` (a.0.b) set to `value`; value DELETE removes the key."""
    data = copy.deepcopy(example)
    *parents, last = [int(p) if p.isdigit() else p for p in dotted.split(".")]
    target = data
    for part in parents:
        target = target[part]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return data


DELETE = object()


@pytest.mark.parametrize(
    ("dotted", "value", "field", "words"),
    [
        ("storage.bucketname", "x", "storage.bucketname", "unknown field (did you mean bucket?)"),
        ("instances.0.databse", ["a"], "instances.0.databse", "unknown field (did you mean databases?)"),
        ("notify.influxdb.token", "t", "notify.influxdb.token", "unknown field"),
        ("retention", 3, "retention", "unknown field"),
        ("storage.bucket", "Acme_Backups", "storage.bucket", "not a valid S3 bucket name"),
        ("storage.bucket", "ab", "storage.bucket", "3 to 63 characters"),
        ("storage.bucket", "192.168.1.1", "storage.bucket", "IP address"),
        ("storage.bucket", "a..b", "storage.bucket", "no dot next to"),
        ("storage.prefix", "backups", "storage.prefix", "end with '/'"),
        ("storage.endpoint_url", "127.0.0.1:5055", "storage.endpoint_url", "not an http:// or https:// URL"),
        ("storage.part_size_mib", 4, "storage.part_size_mib", "greater than or equal to 5"),
        ("storage.credentials_block", "My Creds", "storage.credentials_block", "Prefect block name"),
        ("storage", DELETE, "storage", "required field is missing"),
        (
            "instances.1.uri_env",
            "USERS_URI",
            "instances.1",
            "exactly one of uri, uri_env, uri_secret must be set (got uri, uri_env)",
        ),
        (
            "instances.0.uri_env",
            DELETE,
            "instances.0",
            "exactly one of uri, uri_env, uri_secret must be set (got none)",
        ),
        ("instances.0.uri_env", "ORDERS-URI", "instances.0.uri_env", "environment variable name"),
        ("instances.1.uri", "postgres://h/db", "instances.1.uri", "not a mongodb:// or mongodb+srv:// URI"),
        (
            "instances.1.databases",
            ["accounts", "a.b"],
            "instances.1.databases",
            "'a.b' contains characters MongoDB forbids: .",
        ),
        ("instances.1.databases", ["my db"], "instances.1.databases", "forbids: space"),
        ("instances.1.databases", ["x" * 64], "instances.1.databases", "longer than 63 bytes"),
        ("instances.1.databases", ["é" * 32], "instances.1.databases", "longer than 63 bytes"),
        ("instances.1.databases", ["a", "a"], "instances.1.databases", "more than once: a"),
        ("instances.1.databases", [], "instances.1.databases", "non-empty list"),
        ("instances.1.databases", "everything", "instances.1.databases", "`all` or a list"),
        ("instances.1.databases", [2024], "instances.1.databases", "quote it in YAML"),
        ("instances.1.exclude", ["acc*"], "instances.1", "also excluded by a pattern: accounts"),
        ("instances.0.read_preference", "secondary_preferred", "instances.0.read_preference", "'secondaryPreferred'"),
        ("instances.0.engine", "mongoexport", "instances.0.engine", "'mongodump'"),
        ("instances.0.name", "rs/orders", "instances.0.name", "instance name 'rs/orders'"),
        ("instances.0.name", "..", "instances.0.name", "not only dots"),
        (
            "instances.1.name",
            "rs-orders",
            "instances",
            "'rs-orders' is used twice (instances.0.name and instances.1.name)",
        ),
        ("instances", [], "instances", "at least 1 item"),
        ("encryption.passphrase_secret", "gpg-pass", "encryption", "not both"),
        ("encryption", {}, "encryption", "never stored unencrypted"),
        ("encryption", {"passphrase_env": "A", "passphrase_secret": "b"}, "encryption", "not both"),
        ("encryption.recipients", ["2B9E4F5A"], "encryption.recipients", "full fingerprint"),
        ("encryption.recipients", ["backup@acme.example"], "encryption.recipients", "e-mail"),
        ("encryption.cipher", "3DES", "encryption.cipher", "'AES256'"),
        ("compression.level", 0, "compression.level", "greater than or equal to 1"),
        ("compression.level", 23, "compression.level", "less than or equal to 22"),
        ("compression.threads", -1, "compression.threads", "greater than or equal to 0"),
        ("tiers.timezone", "Europe/Londres", "tiers.timezone", "unknown timezone 'Europe/Londres'"),
        ("tiers.weekly_day", "someday", "tiers.weekly_day", "'monday'"),
        ("tiers.retention_days", {"daily": 9}, "tiers.retention_days", "missing: weekly, monthly, quarterly, yearly"),
        ("tiers.retention_days.hourly", 1, "tiers.retention_days.hourly", "'daily'"),
        ("tiers.glacier_after_days", 40, "tiers", "weekly (40)"),
        ("tiers", DELETE, "tiers", "required field is missing"),
        ("notify.influxdb.api", "v3", "notify.influxdb.api", "unknown value 'v3' (expected one of 'v1', 'v2')"),
        ("notify.influxdb.api", DELETE, "notify.influxdb.api", "required field is missing"),
        ("notify.influxdb.password_env", "INFLUX_PW", "notify.influxdb", "username is not"),
        ("notify.influxdb.url", "influx:8086", "notify.influxdb.url", "http://"),
        ("notify.influxdb", {"api": "v2", "url": "http://h", "bucket": "b"}, "notify.influxdb.org", "required"),
    ],
)
def test_each_bad_field_is_named(tmp_path, example, dotted, value, field, words):
    path = write(tmp_path, edit(example, dotted, value))
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    message = str(caught.value)
    assert f"plan {path}: {field}: " in message, message
    assert words in message, message
    assert any(where == field for where, _ in caught.value.problems), caught.value.problems


def test_every_problem_is_reported_at_once(tmp_path, example):
    data = edit(edit(example, "storage.bucket", "Bad_Bucket"), "compression.level", 99)
    with pytest.raises(PlanError) as caught:
        load_plan(write(tmp_path, data))
    assert [where for where, _ in caught.value.problems] == ["storage.bucket", "compression.level"]
    assert len(str(caught.value).splitlines()) == 2


def test_secrets_in_bad_values_are_not_echoed(tmp_path, example):
    data = edit(example, "instances.1.uri", "http://admin:hunter2@db:27017/")
    with pytest.raises(PlanError) as caught:
        load_plan(write(tmp_path, data))
    assert "hunter2" not in str(caught.value) and "admin:***@db" in str(caught.value)


def test_yaml_syntax_errors_name_the_file_and_line(tmp_path):
    path = write(tmp_path, "instances:\n  - name: rs\n    uri: [oops\nstorage: {}\n")
    with pytest.raises(PlanError, match=rf"^plan {path}: line \d+, column \d+: invalid YAML: "):
        load_plan(path)


def test_duplicate_yaml_keys_are_refused(tmp_path):
    path = write(tmp_path, "storage:\n  bucket: a-bucket\nstorage:\n  bucket: b-bucket\n")
    with pytest.raises(PlanError, match=rf"^plan {path}: line 3, column 1: invalid YAML: duplicate key 'storage'"):
        load_plan(path)


@pytest.mark.parametrize(("text", "words"), [("", "found nothing"), ("- a\n- b\n", "found a list")])
def test_a_plan_must_be_a_mapping(tmp_path, text, words):
    with pytest.raises(PlanError, match=words):
        load_plan(write(tmp_path, text))


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(PlanError, match=rf"^plan {tmp_path / 'nope.yaml'}: cannot read the file"):
        load_plan(tmp_path / "nope.yaml")


def test_an_inline_uri_is_never_in_the_repr_and_is_flagged(tmp_path, example):
    data = edit(example, "instances.1.uri", "mongodb://app:hunter2@db:27017/")
    plan = load_plan(write(tmp_path, data))
    assert "hunter2" not in repr(plan) and "hunter2" not in str(plan.instances[1])
    assert plan.instances[1].uri.describe() == "uri mongodb://app:***@db:27017/"
    assert plan.instances[0].uri.describe() == "environment variable ORDERS_MONGO_URI"
    assert plan.warnings() == ["instances.1.uri: holds a password in the plan file; prefer uri_env or uri_secret"]


def test_instance_lookup():
    plan = load_plan(EXAMPLE)
    assert plan.instance("rs-users")[0] == 1
    with pytest.raises(KeyError, match="no instance named 'rs-nope'"):
        plan.instance("rs-nope")


def instance_plan(**settings: Any) -> BackupPlan:
    return BackupPlan.model_validate(
        {
            "instances": [{"name": "rs", "uri": "mongodb://h/", **settings}],
            "storage": {"bucket": "b12"},
            "encryption": {"passphrase_env": "P"},
            "tiers": {"timezone": "UTC"},
        }
    )


AVAILABLE = ["admin", "config", "local", "shop", "scratch_1", "scratch_2", "users", "test-x", "Scratch_3"]


@pytest.mark.parametrize(
    ("settings", "selected"),
    [
        ({}, ["shop", "scratch_1", "scratch_2", "users", "test-x", "Scratch_3"]),
        ({"exclude": ["scratch_*"]}, ["shop", "users", "test-x", "Scratch_3"]),  # patterns are case-sensitive
        ({"exclude": ["scratch_?", "test-*", "[Su]*"]}, ["shop"]),
        ({"databases": ["users", "admin", "shop"]}, ["users", "admin", "shop"]),  # listed: admin kept, plan order
        ({"databases": ["shop", "missing"]}, ["shop", "missing"]),  # the caller reports missing ones
        ({"databases": ["config"], "exclude": ["scratch_*"]}, ["config"]),
    ],
)
def test_select_databases(settings, selected):
    plan = instance_plan(**settings)
    assert plan.select_databases(plan.instances[0], AVAILABLE) == selected
    assert plan.select_databases("rs", AVAILABLE) == selected


def test_select_databases_all_skips_system_databases_and_duplicates():
    plan = instance_plan()
    assert plan.select_databases(plan.instances[0], ["local", "a", "a", "config", "admin"]) == ["a"]
    assert plan.select_databases(plan.instances[0], []) == []
