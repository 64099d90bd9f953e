"""Backup events: the line protocol we write, read back from a real InfluxDB 1.6 (InfluxQL) and a real
VictoriaMetrics (through influxdb-client's v2 write path), and the errors a sink raises.

VictoriaMetrics stands in for InfluxDB 2.x's write API. It maps `measurement` + `field` to a metric
`<measurement>_<field>` with the tags as labels and turns booleans into 1/0. It has no strings: 1.79 keeps
a string field as a series of zeros, so the `error` text of a failure event is not readable there. Points
are read with `/api/v1/export` after `/internal/force_flush`: that path does not wait out
`-search.latencyOffset` (30 s by default).
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from devservices import LocalServices
from mongobackup import metrics
from mongobackup.line_protocol import timestamp_ns, to_line_protocol
from mongobackup.metrics import Event
from mongobackup.notify import InfluxV1Sink, InfluxV2Sink, NotifyError, make_sink, public_url
from tests.helpers import free_port, influxql, unique, vm_export

WHEN = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
WHEN_NS = 1767323045123456000

PASSWORD = "pw-Secr3t-v1"
TOKEN = "tok-Secr3t-v2"

# How InfluxQL's SHOW FIELD KEYS names the Python types of a MeasurementSpec.
INFLUX_TYPES = {bool: "boolean", int: "integer", float: "float", str: "string"}


def of_instance(measurement: str, instance: str, select: str = "*") -> str:
    """InfluxQL selecting the points of one instance (single quotes and backslashes escaped)."""
    quoted = instance.replace("\\", "\\\\").replace("'", "\\'")
    return f'SELECT {select} FROM "{measurement}" WHERE "instance"=\'{quoted}\''


def influx_rows(base_url: str, query: str) -> list[dict[str, Any]]:
    """Rows of an InfluxQL SELECT as dicts, without the columns a point does not have (None)."""
    rows = []
    for series in influxql(base_url, query, epoch="ns"):
        for values in series["values"]:
            rows.append({k: v for k, v in zip(series["columns"], values, strict=True) if v is not None})
    return rows


def vm_by_name(series: list[dict[str, Any]]) -> dict[tuple[str, ...], dict[str, Any]]:
    """Samples keyed by (metric name, sorted label pairs...), for exact comparisons."""
    keyed = {}
    for item in series:
        labels = dict(item["metric"])
        name = labels.pop("__name__")
        keyed[(name, *sorted(f"{k}={v}" for k, v in labels.items()))] = item
    return keyed


def assert_clean(error: NotifyError, *secrets: str) -> None:
    text = str(error)
    for secret in secrets:
        assert secret not in text
        assert secret not in repr(error)


# --- line protocol (no server) ----------------------------------------------------------------------


def test_instance_point_is_exactly_what_the_grafana_panel_expects():
    event = metrics.instance_completed("rs-a", WHEN)
    assert event.tags == {"instance": "rs-a"}
    assert event.fields == {"value": True}
    assert to_line_protocol(event) == f"instance_backup_completed,instance=rs-a value=true {WHEN_NS}"


def test_database_point_has_tags_sizes_and_typed_fields():
    event = metrics.backup_completed("rs-a", "shop", "daily", 1234, 56, 7, WHEN)
    assert to_line_protocol(event) == (
        "instance_backup_completed,database=shop,instance=rs-a,tier=daily "
        f"value=true,bytes=1234i,docs=56i,duration_s=7.0 {WHEN_NS}"
    )


def test_failure_point_counts_as_1_and_carries_a_one_line_error():
    message = "S3 said:\n  NoSuchBucket\tbackups"
    event = metrics.backup_failed("rs-a", "shop", "weekly", "upload", message, WHEN)
    assert to_line_protocol(event) == (
        "instance_backup_failed,database=shop,instance=rs-a,stage=upload,tier=weekly "
        f'value=1i,error="S3 said: NoSuchBucket backups" {WHEN_NS}'
    )
    whole_instance = metrics.backup_failed("rs-a", None, None, "list-databases", "x" * 1000, WHEN)
    assert whole_instance.tags == {"instance": "rs-a", "stage": "list-databases"}
    assert len(whole_instance.fields["error"]) == metrics.ERROR_MAX_CHARS
    assert whole_instance.fields["error"].endswith("\u2026")


def test_tier_given_as_an_enum_is_written_as_its_value():
    from enum import Enum

    class Tier(Enum):  # str() of a member is "Tier.MONTHLY", which must not leak into a tag
        MONTHLY = "monthly"

    assert metrics.backup_completed("rs-a", "db", Tier.MONTHLY, 1, 1, 1.0, WHEN).tags["tier"] == "monthly"


@pytest.mark.parametrize(
    ("tag_value", "encoded"),
    [
        ("plain", "plain"),
        ("with space", r"with\ space"),
        ("a,b", r"a\,b"),
        ("k=v", r"k\=v"),
        ('say "hi"', 'say\\ "hi"'),  # quotes are literal in tags
        ("back\\slash", "back\\slash"),  # InfluxDB keeps a backslash in a tag as it is
        ("back\\,comma", "back\\\\,comma"),  # a backslash, then an escaped comma
        ("ünïcødé-名前", "ünïcødé-名前"),
    ],
)
def test_tag_values_escape_separators_only(tag_value: str, encoded: str):
    line = to_line_protocol(metrics.backup_completed("rs-a", tag_value, "daily", 1, 1, 1.0, WHEN))
    assert line.startswith(f"instance_backup_completed,database={encoded},instance=rs-a,tier=daily ")


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("plain", '"plain"'),
        ('he said "no"', r'"he said \"no\""'),
        ("C:\\path\\", r'"C:\\path\\"'),
        ('\\"', r'"\\\""'),  # backslash first, or the quote's escape would be doubled
        ("a, b = c", '"a, b = c"'),  # separators need no escape inside quotes
    ],
)
def test_string_fields_escape_quotes_and_backslashes(text: str, encoded: str):
    line = to_line_protocol(metrics.backup_failed("rs-a", "db", "daily", "dump", text, WHEN))
    assert f",error={encoded} " in line


def test_time_is_utc_nanoseconds_whatever_the_zone_it_was_given_in():
    paris = WHEN.astimezone(timezone(timedelta(hours=1)))
    event = metrics.instance_completed("rs-a", paris)
    assert event.time == WHEN and event.time.tzinfo is UTC
    assert timestamp_ns(event.time) == WHEN_NS
    assert timestamp_ns(datetime(1970, 1, 1, tzinfo=UTC)) == 0


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: metrics.instance_completed("rs-a", datetime(2026, 1, 1)), "no timezone"),
        (lambda: Event("backup_done", {"instance": "a"}, {"value": True}, WHEN), "unknown measurement"),
        (
            lambda: Event("instance_backup_completed", {"instance": "a", "host": "h"}, {"value": True}, WHEN),
            "undeclared tag(s) host",
        ),
        (
            lambda: Event("instance_backup_completed", {"instance": "a"}, {"value": True, "size": 1}, WHEN),
            "undeclared field(s) size",
        ),
        (lambda: Event("instance_backup_completed", {"database": "d"}, {"value": True}, WHEN), "missing instance"),
        (lambda: Event("instance_backup_completed", {"instance": "a"}, {"value": 1}, WHEN), "must be bool"),
        (lambda: Event("instance_backup_failed", {"instance": "a"}, {"value": True}, WHEN), "must be int"),
        (lambda: metrics.backup_completed("rs-a", "db", "daily", True, 1, 1.0, WHEN), "must be int"),
        (lambda: metrics.backup_completed("rs-a", "db", "daily", 1, 1, float("nan"), WHEN), "NaN"),
        (lambda: metrics.backup_completed("rs-a", "", "daily", 1, 1, 1.0, WHEN), "tag database is empty"),
        (lambda: metrics.backup_completed("rs-a", "a\nb", "daily", 1, 1, 1.0, WHEN), "line break"),
        (lambda: metrics.instance_completed("rs-a\\", WHEN), "ends with a backslash"),
        (lambda: metrics.backup_completed("rs-a", "db", "daily", 2**63, 1, 1.0, WHEN), "int64"),
    ],
)
def test_events_the_line_protocol_cannot_carry_are_refused(build, message: str):
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(").replace(")", r"\)")):
        build()


def test_every_measurement_spec_is_registered_and_requires_instance_or_source_and_value():
    assert set(metrics.MEASUREMENTS) == {
        "instance_backup_completed",
        "instance_backup_failed",
        "instance_restore_drill",
        "instance_backup_stale",
        "instance_oplog_archived",
        "instance_oplog_gap",
        "instance_oplog_lag",
        "consul_snapshot_completed",
        "consul_snapshot_failed",
        "etcd_snapshot_completed",
        "etcd_snapshot_failed",
    }
    for spec in metrics.MEASUREMENTS.values():
        who = metrics.SOURCE if spec.name.endswith(("_snapshot_completed", "_snapshot_failed")) else metrics.INSTANCE
        assert who in spec.tags and who in spec.required_tags and metrics.VALUE in spec.fields
        assert set(spec.fields.values()) <= {bool, int, float, str}
        with pytest.raises(TypeError):
            spec.fields["new"] = str  # type: ignore[index]


def test_urls_in_messages_lose_credentials_and_query():
    assert public_url("https://admin:pw@influx.example:8086/proxy/?u=a&p=pw#x") == "https://influx.example:8086/proxy"
    assert public_url("http://[::1]:8086") == "http://[::1]:8086"


def test_make_sink_knows_v1_and_v2_and_hides_secrets_in_repr():
    v1 = make_sink("v1", url="http://u:inurl-pw@127.0.0.1:8086/", database="backups", password=PASSWORD)
    v2 = make_sink("V2", url="http://127.0.0.1:8086", org="o", bucket="b", token=TOKEN)
    assert isinstance(v1, InfluxV1Sink) and isinstance(v2, InfluxV2Sink)
    for sink in (v1, v2):
        assert PASSWORD not in repr(sink) and TOKEN not in repr(sink) and "inurl-pw" not in repr(sink)
    with pytest.raises(ValueError, match="'v3'"):
        make_sink("v3", url="http://127.0.0.1:8086")
    with pytest.raises(ValueError, match="bad settings") as caught:
        make_sink("v1", url="http://127.0.0.1:8086", database="backups", pasword=PASSWORD)
    assert PASSWORD not in str(caught.value)
    with pytest.raises(ValueError, match="must be http"):
        make_sink("v1", url="127.0.0.1:8086", database="backups")


def test_no_events_means_no_request():
    InfluxV1Sink(f"http://127.0.0.1:{free_port()}", "backups").write([])
    InfluxV2Sink(f"http://127.0.0.1:{free_port()}", "o", "b", TOKEN).write([])


# --- InfluxDB 1.6: the v1 write endpoint, read back with InfluxQL -----------------------------------


@pytest.fixture(scope="module")
def influx_url(services: LocalServices) -> str:
    return services.url("influxdb")


def test_v1_events_read_back_with_influxql(influx_url: str):
    rs = unique("rs")
    now = datetime.now(UTC).replace(microsecond=123456)
    events = [
        metrics.backup_completed(rs, "shop", "daily", 10_485_760, 4321, 12.25, now),
        metrics.backup_completed(rs, "crm-eu", "daily", 2048, 7, 0.5, now),
        metrics.instance_completed(rs, now + timedelta(seconds=1)),
        metrics.backup_failed(rs, "logs", "daily", "upload", 'S3 "NoSuchBucket": bucket backups\\x', now),
    ]
    InfluxV1Sink(influx_url, "backups").write(events)

    completed = influx_rows(influx_url, of_instance("instance_backup_completed", rs))
    ns = timestamp_ns(now)
    assert sorted(completed, key=lambda row: (row["time"], row.get("database", ""))) == [
        {
            "time": ns,
            "instance": rs,
            "database": "crm-eu",
            "tier": "daily",
            "value": True,
            "bytes": 2048,
            "docs": 7,
            "duration_s": 0.5,
        },
        {
            "time": ns,
            "instance": rs,
            "database": "shop",
            "tier": "daily",
            "value": True,
            "bytes": 10_485_760,
            "docs": 4321,
            "duration_s": 12.25,
        },
        # the per-instance point: only the instance tag and value=true
        {"time": ns + 1_000_000_000, "instance": rs, "value": True},
    ]
    failed = influx_rows(influx_url, of_instance("instance_backup_failed", rs))
    assert failed == [
        {
            "time": ns,
            "instance": rs,
            "database": "logs",
            "tier": "daily",
            "stage": "upload",
            "value": 1,
            "error": 'S3 "NoSuchBucket": bucket backups\\x',
        }
    ]


def test_v1_field_types_and_tag_keys_match_the_metric_specs(influx_url: str):
    rs = unique("rs")
    now = datetime.now(UTC)
    InfluxV1Sink(influx_url, "backups").write(
        [
            metrics.backup_completed(rs, "shop", "daily", 1, 1, 1.0, now),
            metrics.backup_failed(rs, "shop", "daily", "dump", "boom", now),
        ]
    )
    for spec in (metrics.INSTANCE_BACKUP_COMPLETED, metrics.INSTANCE_BACKUP_FAILED):
        (fields,) = influxql(influx_url, f'SHOW FIELD KEYS FROM "{spec.name}"')
        assert dict(fields["values"]) == {name: INFLUX_TYPES[kind] for name, kind in spec.fields.items()}
        (tags,) = influxql(influx_url, f'SHOW TAG KEYS FROM "{spec.name}"')
        assert {row[0] for row in tags["values"]} == set(spec.tags)


def test_v1_grafana_panel_query_sees_the_instance_point_for_24_hours(influx_url: str):
    sink = InfluxV1Sink(influx_url, "backups")
    stale = unique("rs")
    sink.write(
        [
            metrics.instance_completed("rs-a", datetime.now(UTC)),
            metrics.instance_completed(stale, datetime.now(UTC) - timedelta(hours=25)),
        ]
    )

    def panel(instance: str) -> list[dict[str, Any]]:
        # The team's existing panel query, verbatim but for the instance.
        return influxql(
            influx_url,
            'SELECT last("value") FROM "instance_backup_completed" '
            f"WHERE \"instance\"='{instance}' AND time > now() - 24h",
        )

    (series,) = panel("rs-a")
    assert series["columns"] == ["time", "last"] and series["values"][0][1] is True  # green
    assert panel(stale) == []  # red: nothing within 24 h


def test_v1_odd_names_round_trip(influx_url: str):
    rs = "rs a,b=c " + uuid.uuid4().hex[:6]
    database = "odd db,name=1 \\ ünï"
    error = 'quote " backslash \\ comma , equals = end\\'
    now = datetime.now(UTC)
    event = metrics.backup_failed(rs, database, "yearly", "dump", error, now)
    InfluxV1Sink(influx_url, "backups").write([event])
    (row,) = influx_rows(influx_url, of_instance("instance_backup_failed", rs))
    assert (row["instance"], row["database"], row["error"]) == (rs, database, error)
    assert row["time"] == timestamp_ns(now)


def test_v1_unknown_database_is_a_permanent_error_naming_url_and_database(influx_url: str):
    sink = InfluxV1Sink(influx_url, "no_such_db", username="writer", password=PASSWORD)
    with pytest.raises(NotifyError) as caught:
        sink.write([metrics.instance_completed("rs-a", datetime.now(UTC))])
    error = caught.value
    assert influx_url in str(error) and "'no_such_db'" in str(error)
    assert "HTTP 404" in str(error) and "database not found" in str(error)
    assert (error.status, error.transient, error.target) == (404, False, "no_such_db")
    assert_clean(error, PASSWORD)


def test_v1_unreachable_server_is_a_transient_error_naming_url_and_database():
    url = f"http://writer:{PASSWORD}@127.0.0.1:{free_port()}"
    with pytest.raises(NotifyError) as caught:
        InfluxV1Sink(url, "backups", timeout=3).write([metrics.instance_completed("rs-a", datetime.now(UTC))])
    error = caught.value
    assert public_url(url) in str(error) and "'backups'" in str(error) and "no answer" in str(error)
    assert error.transient and error.status is None
    assert_clean(error, PASSWORD)


# --- servers with authentication, started for this module only --------------------------------------


@pytest.fixture(scope="module")
def auth_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An InfluxDB 1.6 with auth-enabled (admin user `admin`/PASSWORD, database `backups`) and a
    VictoriaMetrics behind HTTP basic auth: the session's servers accept anyone, so a wrong credential
    cannot be tested against them. Started by us, stopped by the PIDs we hold."""
    root = tmp_path_factory.mktemp("notify-auth")
    influx_port, influx_rpc, vm_port = free_port(), free_port(), free_port()
    config = root / "influxdb.conf"
    config.write_text(
        "reporting-enabled = false\n"
        f'bind-address = "127.0.0.1:{influx_rpc}"\n'
        f'[meta]\n  dir = "{root / "meta"}"\n'
        f'[data]\n  dir = "{root / "data"}"\n  wal-dir = "{root / "wal"}"\n  query-log-enabled = false\n'
        "[monitor]\n  store-enabled = false\n"
        f'[http]\n  bind-address = "127.0.0.1:{influx_port}"\n  log-enabled = false\n  auth-enabled = true\n'
    )
    children: list[subprocess.Popen[bytes]] = []
    try:
        children.append(_start(["influxd", "run", "-config", str(config)], root / "influxd.log"))
        children.append(
            _start(
                [
                    "victoria-metrics",
                    f"-storageDataPath={root / 'vm'}",
                    f"-httpListenAddr=127.0.0.1:{vm_port}",
                    "-httpAuth.username=vm",
                    f"-httpAuth.password={PASSWORD}",
                ],
                root / "vm.log",
            )
        )
        influx, vm = f"http://127.0.0.1:{influx_port}", f"http://127.0.0.1:{vm_port}"
        _wait_for(f"{influx}/ping", children)
        _wait_for(f"{vm}/health", children)
        # The first admin user may be created without credentials; everything after needs them.
        for query in (f"CREATE USER admin WITH PASSWORD '{PASSWORD}' WITH ALL PRIVILEGES", "CREATE DATABASE backups"):
            response = httpx.post(f"{influx}/query", data={"q": query}, auth=("admin", PASSWORD), timeout=10)
            response.raise_for_status()
        yield {"influxdb": influx, "victoria": vm}
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)


def _wait_for(url: str, children: list[subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert all(child.poll() is None for child in children), f"a server exited before {url} answered"
        try:
            if httpx.get(url, timeout=1).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def test_v1_wrong_password_is_refused_without_echoing_it(auth_servers: dict[str, str]):
    url = auth_servers["influxdb"]
    wrong = "not-" + PASSWORD
    with pytest.raises(NotifyError) as caught:
        InfluxV1Sink(url, "backups", username="admin", password=wrong).write(
            [metrics.instance_completed("rs-a", datetime.now(UTC))]
        )
    error = caught.value
    assert (error.status, error.transient) == (401, False)
    assert url in str(error) and "'backups'" in str(error) and "'admin'" in str(error)
    assert "authorization failed" in str(error)
    assert_clean(error, wrong, PASSWORD)


def test_v1_credentials_work_as_arguments_or_in_the_url(auth_servers: dict[str, str]):
    base = auth_servers["influxdb"]
    rs = unique("rs")
    now = datetime.now(UTC)
    by_arguments = InfluxV1Sink(base, "backups", username="admin", password=PASSWORD)
    by_arguments.write([metrics.instance_completed(rs, now)])
    in_url = base.replace("http://", f"http://admin:{PASSWORD}@")
    InfluxV1Sink(in_url, "backups").write([metrics.instance_completed(rs, now + timedelta(seconds=1))])
    (series,) = influxql(base, of_instance("instance_backup_completed", rs, 'count("value")'), auth=("admin", PASSWORD))
    assert series["values"][0][1] == 2


def test_v2_rejected_token_is_a_permanent_error_without_the_token(auth_servers: dict[str, str]):
    url = auth_servers["victoria"]
    with pytest.raises(NotifyError) as caught:
        InfluxV2Sink(url, "backups-org", "backups", TOKEN).write(
            [metrics.instance_completed("rs-a", datetime.now(UTC))]
        )
    error = caught.value
    assert (error.status, error.transient) == (401, False)
    assert url in str(error) and "'backups'" in str(error)
    assert_clean(error, TOKEN)


# --- VictoriaMetrics: influxdb-client's v2 write path --------------------------------------------------


@pytest.fixture(scope="module")
def victoria_url(services: LocalServices) -> str:
    return services.url("victoria")


def test_v2_events_read_back_from_victoriametrics(victoria_url: str):
    rs = unique("rs")
    now = datetime.now(UTC).replace(microsecond=250000)
    InfluxV2Sink(victoria_url, "backups-org", "backups", TOKEN).write(
        [
            metrics.backup_completed(rs, "shop", "weekly", 10_485_760, 4321, 12.25, now),
            metrics.instance_completed(rs, now),
            metrics.backup_failed(rs, "logs", "weekly", "encrypt", "gpg: no public key", now),
        ]
    )
    series = vm_export(victoria_url, f'{{__name__=~"instance_backup_.*",instance="{rs}"}}', expected=6)
    got = {key: (item["values"], item["timestamps"]) for key, item in vm_by_name(series).items()}
    ms = timestamp_ns(now) // 1_000_000
    per_db = ("database=shop", f"instance={rs}", "tier=weekly")
    failed = ("database=logs", f"instance={rs}", "stage=encrypt", "tier=weekly")
    expected = {
        ("instance_backup_completed_value", f"instance={rs}"): ([1], [ms]),  # the panel's point
        ("instance_backup_completed_value", *per_db): ([1], [ms]),
        ("instance_backup_completed_bytes", *per_db): ([10_485_760], [ms]),
        ("instance_backup_completed_docs", *per_db): ([4321], [ms]),
        ("instance_backup_completed_duration_s", *per_db): ([12.25], [ms]),
        ("instance_backup_failed_value", *failed): ([1], [ms]),
    }
    # VictoriaMetrics has no strings: 1.79 keeps `error` as a series of 0 (newer versions may drop it).
    got.pop(("instance_backup_failed_error", *failed), None)
    assert got == expected


def test_v2_separators_in_tags_round_trip_through_victoriametrics(victoria_url: str):
    # Backslashes are left out: VictoriaMetrics unescapes `\\` in tags where InfluxDB keeps it (the v1
    # round trip above covers InfluxDB's reading).
    rs = "rs a,b=c-" + uuid.uuid4().hex[:6]
    database = "odd db,name=1 ünï"
    InfluxV2Sink(victoria_url, "backups-org", "backups", None).write(
        [metrics.backup_completed(rs, database, "daily", 1, 2, 3.0, datetime.now(UTC))]
    )
    selector = f'{{__name__="instance_backup_completed_docs",instance="{rs}"}}'
    (item,) = vm_export(victoria_url, selector, expected=1)
    assert item["metric"] == {
        "__name__": "instance_backup_completed_docs",
        "instance": rs,
        "database": database,
        "tier": "daily",
    }
    assert item["values"] == [2]


def test_v2_against_influxdb_1_6_is_a_404_naming_url_and_bucket(influx_url: str):
    # InfluxDB 1.6 has no /api/v2/write (1.8 added it): the synchronous write API must raise, not
    # hand the points to a background thread that logs the failure and carries on.
    with pytest.raises(NotifyError) as caught:
        InfluxV2Sink(influx_url, "backups-org", "backups", TOKEN).write(
            [metrics.instance_completed("rs-a", datetime.now(UTC))]
        )
    error = caught.value
    assert influx_url in str(error) and "'backups'" in str(error) and "HTTP 404" in str(error)
    assert (error.status, error.transient) == (404, False)
    assert_clean(error, TOKEN)


def test_v2_unreachable_server_is_a_transient_error():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(NotifyError) as caught:
        InfluxV2Sink(url, "backups-org", "backups", TOKEN, timeout=3).write(
            [metrics.instance_completed("rs-a", datetime.now(UTC))]
        )
    error = caught.value
    assert url in str(error) and "'backups'" in str(error) and "no answer" in str(error)
    assert error.transient and error.status is None
    assert_clean(error, TOKEN)
