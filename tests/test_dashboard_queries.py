"""The generated InfluxQL dashboard and alert rules, run on a real InfluxDB 1.6 the way Grafana would run them.

Events are written as the flows write them (success, failure, stale, drill, and a sample point of every declared
measurement); every panel, variable and alert rule of the generated provisioning files (whatever panels exist) is
expanded as Grafana expands it (`tests/grafana.py`: template variables, `$timeFilter`, `$__interval`) and run.
Then the rows each panel needs are checked: the status panel has one repeat per instance, green after a backup and
red when an instance missed its event; each alert rule fires for its case. No Grafana server and no Flux engine can
be had here (see deployments/grafana/flux/README.md): the Flux flavour is checked for names in test_dashboards.py.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from devservices import INFLUX_DATABASE
from mongobackup import dashboards, metrics
from mongobackup.metrics import MEASUREMENTS, Event, MeasurementSpec
from mongobackup.notify import InfluxV1Sink
from tests.grafana import (
    InfluxQL,
    Variable,
    evaluate_rule,
    expand_macros,
    interpolate_variables,
    panel_max_data_points,
    stat_value,
    threshold_color,
    unexpanded,
)

DASHBOARD_RANGE = timedelta(days=7)  # the dashboard's "time": now-7d .. now


@dataclass(frozen=True)
class Scene:
    """Instances in every state a panel or rule must tell apart, with names unique to this test run."""

    fresh: str  # backed up an hour ago, drill passed
    late: str  # last backup 30 h ago; a failed upload since, the watchdog found it stale, its drill failed
    failing: str  # never backed up: the instance itself fails (unreachable)
    sample: str  # one point of every declared measurement, every tag and field set

    @property
    def instances(self) -> list[str]:
        return [self.fresh, self.late, self.failing, self.sample]


def sample_event(spec: MeasurementSpec, instance: str, when: datetime) -> Event:
    """A point of `spec` with every declared tag and field: the data any panel over it needs to show a row."""
    values = {bool: False, int: 1, float: 1.5, str: "sample"}
    tags = {name: instance if name in (metrics.INSTANCE, metrics.SOURCE) else "sample" for name in spec.tags}
    return Event(spec.name, tags, {name: values[kind] for name, kind in spec.fields.items()}, when)


@pytest.fixture(scope="module")
def influx(services) -> InfluxQL:
    return InfluxQL(services.url("influxdb"), INFLUX_DATABASE)


@pytest.fixture(scope="module")
def scene(services) -> Scene:
    tag = uuid.uuid4().hex[:6]
    s = Scene(f"rs-fresh-{tag}", f"rs-late-{tag}", f"rs-failing-{tag}", f"rs-sample-{tag}")
    now = datetime.now(UTC)
    ago = lambda **kw: now - timedelta(**kw)  # noqa: E731
    drill = metrics.INSTANCE_RESTORE_DRILL.name
    drill_fields = {"bytes": 1, "docs": 1, "duration_s": 1.0, "restore_mb_s": 2.5, "backup_age_h": 30.0}
    stages = {"thaw_wait_s": 0.0, "download_s": 1.0, "restore_s": 2.0, "verify_s": 0.5, "total_s": 3.5}
    thawed = {**stages, "thaw_wait_s": 60.0, "total_s": 63.5, "backup_age_h": 700.0}
    events = [
        metrics.backup_completed(s.fresh, "orders", "daily", 2048, 10, 3.5, ago(hours=1)),
        metrics.instance_completed(s.fresh, ago(hours=1)),
        Event(
            drill,
            {"instance": s.fresh, "database": "orders", "tier": "daily"},
            {"value": True, **drill_fields, **stages},
            ago(hours=2),
        ),
        Event(
            drill,
            {"instance": s.fresh, "database": "orders", "tier": "weekly"},
            {"value": True, **drill_fields, **thawed},
            ago(hours=2, minutes=1),
        ),
        metrics.backup_completed(s.late, "users", "daily", 4096, 20, 7.0, ago(hours=30)),
        metrics.instance_completed(s.late, ago(hours=30)),
        metrics.backup_failed(s.late, "users", "daily", "upload", "StorageError: s3://b/k: 503", ago(hours=2)),
        metrics.backup_stale(s.late, "users", 30.0, ago(minutes=10)),
        Event(
            drill,
            {"instance": s.late, "database": "users", "tier": "monthly"},
            {"value": False, **drill_fields, **stages},
            ago(hours=3),
        ),
        metrics.backup_failed(s.failing, None, "daily", "list", "SourceError: instance unreachable", ago(hours=1)),
        # Point-in-time recovery: fresh's archiver keeps up, late's fell behind and found a gap.
        metrics.oplog_archived(s.fresh, 20.0, 100, 4096, ago(minutes=1)),
        metrics.oplog_archived(s.late, 300.0, 10, 512, ago(minutes=2)),
        metrics.oplog_gap(s.late, 3600.0, ago(minutes=30)),
        metrics.oplog_lag(s.late, 400.0, ago(minutes=10)),
        # Key/value snapshot sources, named like the instances: fresh snapshotted an hour ago, late 30 h ago and
        # refused by its check since.
        metrics.snapshot_completed("etcd", s.fresh, "daily", 900, 4096, 1.5, 42, ago(hours=1)),
        metrics.snapshot_completed("consul", s.late, "daily", 700, 700, 0.5, 17, ago(hours=30)),
        metrics.snapshot_failed("consul", s.late, "daily", "check", "hash check failed for state.bin", ago(hours=2)),
    ]
    events += [sample_event(spec, s.sample, ago(hours=1)) for spec in MEASUREMENTS.values()]
    InfluxV1Sink(services.url("influxdb"), INFLUX_DATABASE).write(events)
    return s


def board() -> dict[str, Any]:
    return json.loads(dashboards.provisioning_files()["influxql/dashboards/mongo-backups.json"])


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(dashboards.provisioning_files()["influxql/alerting/mongo-backups.yaml"])
    return [rule for group in document["groups"] for rule in group["rules"]]


def chosen_variables(dashboard: dict[str, Any], values: dict[str, list[str]]) -> list[Variable]:
    return [Variable.from_json(spec, values.get(spec["name"])) for spec in dashboard["templating"]["list"]]


def run_panel(influx: InfluxQL, panel: dict[str, Any], variables: list[Variable], now: datetime) -> list[dict]:
    """Every target of the panel, interpolated and expanded as Grafana does, run; all series of all targets."""
    series = []
    for target in panel["targets"]:
        text = expand_macros(
            interpolate_variables(target["query"], variables),
            now - DASHBOARD_RANGE,
            now,
            panel_max_data_points(panel),
            1_000,
        )
        assert not unexpanded(text), f"panel {panel['title']!r}: {unexpanded(text)} left in {text}"
        series += influx.series(text)
    return series


def repeats(panel: dict[str, Any], variables: list[Variable]) -> list[tuple[str | None, list[Variable]]]:
    """A repeated panel once per chosen value of its variable (that value alone); any other panel once."""
    name = panel.get("repeat")
    if not name:
        return [(None, variables)]
    variable = next(v for v in variables if v.name == name)
    assert variable.chosen is not None, f"choose the values of {name} to repeat {panel['title']!r} over"
    return [
        (
            value,
            [
                Variable(v.name, v.multi, v.include_all, v.all_value, (value,)) if v is variable else v
                for v in variables
            ],
        )
        for value in variable.chosen
    ]


def variable_values(influx: InfluxQL, dashboard: dict[str, Any], name: str) -> set[str]:
    spec = next(v for v in dashboard["templating"]["list"] if v["name"] == name)
    return {row[-1] for series in influx.series(spec["query"]) for row in series["values"]}


def status_panel(dashboard: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in dashboard["panels"] if p.get("repeat") == metrics.INSTANCE and p["type"] == "stat")


def status_colors(influx: InfluxQL, dashboard: dict[str, Any], instances: list[str], now: datetime) -> dict:
    panel = status_panel(dashboard)
    defaults = panel["fieldConfig"]["defaults"]
    variables = chosen_variables(dashboard, {metrics.INSTANCE: instances})
    return {
        value: threshold_color(
            stat_value(run_panel(influx, panel, scoped, now), defaults.get("noValue")), defaults["thresholds"]
        )
        for value, scoped in repeats(panel, variables)
    }


# --- every query of every panel, variable and rule -----------------------------------------------------------


def test_every_panel_variable_and_rule_runs_on_influxdb_as_grafana_expands_it(influx, scene):
    dashboard, now = board(), datetime.now(UTC)
    assert dashboard["panels"] and dashboard["templating"]["list"] and rules()
    for spec in dashboard["templating"]["list"]:
        assert not unexpanded(spec["query"]), f"variable {spec['name']}: variables inside a variable query"
        influx.series(spec["query"])
    # Every variable with "All" chosen (its allValue), then with the scene's instances chosen.
    for values in ({}, {metrics.INSTANCE: scene.instances}):
        variables = chosen_variables(dashboard, values)
        for panel in dashboard["panels"]:
            for _, scoped in repeats(panel, variables) if values else [(None, variables)]:
                run_panel(influx, panel, scoped, now)
    for rule in rules():
        evaluate_rule(rule, influx, now)


def test_every_panel_shows_rows_for_the_chosen_instances(influx, scene):
    """With a point of every measurement written, no panel is empty: each query reads what the code writes."""
    dashboard, now = board(), datetime.now(UTC)
    variables = chosen_variables(dashboard, {metrics.INSTANCE: scene.instances})
    for panel in dashboard["panels"]:
        rows = [
            row
            for _, scoped in repeats(panel, variables)
            for s in run_panel(influx, panel, scoped, now)
            for row in s["values"]
        ]
        assert rows, f"panel {panel['title']!r}: no rows for {scene.instances}"


# --- the status panel ---------------------------------------------------------------------------------------


def test_the_instance_variable_offers_every_instance_even_one_never_backed_up(influx, scene):
    assert set(scene.instances) <= variable_values(influx, board(), metrics.INSTANCE)


def test_status_panel_is_green_after_a_backup_and_red_when_an_instance_missed_it(influx, scene):
    colors = status_colors(influx, board(), [scene.fresh, scene.late, scene.failing], datetime.now(UTC))
    assert colors == {scene.fresh: "green", scene.late: "red", scene.failing: "red"}


def test_status_panel_turns_green_when_the_backup_event_arrives(services, influx):
    instance = f"rs-new-{uuid.uuid4().hex[:6]}"
    sink = InfluxV1Sink(services.url("influxdb"), INFLUX_DATABASE)
    sink.write([metrics.backup_failed(instance, None, "daily", "list", "unreachable", datetime.now(UTC))])
    assert status_colors(influx, board(), [instance], datetime.now(UTC)) == {instance: "red"}
    sink.write([metrics.instance_completed(instance, datetime.now(UTC))])
    assert status_colors(influx, board(), [instance], datetime.now(UTC)) == {instance: "green"}


# --- the other panels: the rows they exist for ----------------------------------------------------------------


def panel_series(influx: InfluxQL, title: str, instances: list[str]) -> list[dict]:
    dashboard = board()
    panel = next(p for p in dashboard["panels"] if p["title"] == title)
    return run_panel(influx, panel, chosen_variables(dashboard, {metrics.INSTANCE: instances}), datetime.now(UTC))


def rows_by(series: list[dict], *tags: str) -> dict[tuple[str, ...], dict[str, Any]]:
    """Each series' last row as {column: value}, keyed by the values of `tags`."""
    return {
        tuple(s["tags"].get(t, "") for t in tags): dict(zip(s["columns"], s["values"][-1], strict=True)) for s in series
    }


def test_failure_panels_name_instance_database_stage_and_error(influx, scene):
    errors = rows_by(
        panel_series(influx, "Last error per database and stage", [scene.late, scene.failing]),
        "instance",
        "database",
        "stage",
    )
    assert errors[(scene.late, "users", "upload")]["error"] == "StorageError: s3://b/k: 503"
    assert errors[(scene.failing, "", "list")]["error"] == "SourceError: instance unreachable"
    by_stage = rows_by(panel_series(influx, "Failed backups by stage", [scene.late]), "instance", "stage")
    assert by_stage[(scene.late, "upload")]["sum"] == 1


def test_stale_and_drill_panels(influx, scene):
    stale = rows_by(
        panel_series(influx, "Stale or missing backups (watchdog)", [scene.late, scene.fresh]), "instance", "database"
    )
    assert list(stale) == [(scene.late, "users")] and stale[(scene.late, "users")]["max_age_h"] == 30.0
    drills = rows_by(
        panel_series(influx, "Restore drills: newest result per database", [scene.fresh, scene.late]),
        "instance",
        "database",
    )
    assert drills[(scene.fresh, "orders")]["value"] is True and drills[(scene.late, "users")]["value"] is False
    failed = panel_series(influx, "Failed restore drills", [scene.fresh, scene.late])
    assert stat_value(failed, "0") == 1


def test_time_to_restore_and_last_result_per_tier(influx, scene):
    by_tier = rows_by(panel_series(influx, "Restore drill: last result per tier", [scene.fresh, scene.late]), "tier")
    assert sorted(by_tier) == [("daily",), ("monthly",), ("weekly",)]
    assert by_tier[("daily",)]["value"] is True and by_tier[("daily",)]["total_s"] == 3.5
    weekly = by_tier[("weekly",)]
    assert weekly["thaw_wait_s"] == 60.0 and weekly["total_s"] == 63.5 and weekly["backup_age_h"] == 700.0
    assert weekly["download_s"] == 1.0 and weekly["restore_s"] == 2.0 and weekly["verify_s"] == 0.5
    assert by_tier[("monthly",)]["value"] is False
    times = rows_by(panel_series(influx, "Time to restore by tier", [scene.fresh, scene.late]), "tier")
    assert {tier: row["max"] for (tier,), row in times.items()} == {"daily": 3.5, "weekly": 63.5, "monthly": 3.5}


def test_size_panels_show_each_database(influx, scene):
    stored = rows_by(
        panel_series(influx, "Stored bytes per database", [scene.fresh, scene.late]), "instance", "database"
    )
    assert stored[(scene.fresh, "orders")]["last"] == 2048 and stored[(scene.late, "users")]["last"] == 4096


# --- alert rules ----------------------------------------------------------------------------------------------


def firing(rule_uid: str, influx: InfluxQL, instances: list[str]) -> dict[tuple[str, ...], bool]:
    rule = next(r for r in rules() if r["uid"] == f"{rule_uid}-influxql")
    return {
        (a.labels.get("instance", ""), a.labels.get("database", "")): a.firing
        for a in evaluate_rule(rule, influx, datetime.now(UTC))
        if a.labels.get("instance") in instances
    }


def test_every_alert_rule_fires_for_some_instance_of_the_scene(influx, scene):
    for rule in rules():
        fired = [
            a
            for a in evaluate_rule(rule, influx, datetime.now(UTC))
            if (a.labels.get("instance") or a.labels.get("source")) in scene.instances
        ]
        assert any(a.firing for a in fired), f"rule {rule['title']!r} never fires: {fired}"


def test_backup_missing_fires_for_the_late_instance_only(influx, scene):
    fired = firing("mongo-backup-missing", influx, [scene.fresh, scene.late])
    assert fired == {(scene.fresh, ""): False, (scene.late, ""): True}


def test_stale_failed_and_drill_rules_fire_for_their_case(influx, scene):
    assert firing("mongo-backup-stale", influx, [scene.fresh, scene.late]) == {(scene.late, "users"): True}
    failed = firing("mongo-backup-failed", influx, [scene.fresh, scene.late, scene.failing])
    assert failed == {(scene.late, "users"): True, (scene.failing, ""): True}
    assert firing("mongo-restore-drill-failed", influx, [scene.fresh, scene.late]) == {(scene.late, "users"): True}


def test_snapshot_panels_and_rules_tell_a_fresh_source_from_a_late_one(influx, scene):
    dashboard, now = board(), datetime.now(UTC)
    panel = next(p for p in dashboard["panels"] if p["title"].startswith("Key/value snapshots committed"))
    variables = chosen_variables(dashboard, {metrics.SOURCE: [scene.fresh, scene.late]})
    committed = rows_by(run_panel(influx, panel, variables, now), "source")
    assert committed[(scene.fresh,)]["moving_average"] >= 1 and committed[(scene.late,)]["moving_average"] == 0
    errors = rows_by(
        run_panel(
            influx,
            next(p for p in dashboard["panels"] if p["title"].startswith("Last key/value snapshot error")),
            variables,
            now,
        ),
        "source",
        "stage",
    )
    assert errors == {(scene.late, "check"): errors[(scene.late, "check")]}
    assert errors[(scene.late, "check")]["error"] == "hash check failed for state.bin"
    missing = next(r for r in rules() if r["uid"] == "kv-snapshot-missing-influxql")
    fired = {a.labels["source"]: a.firing for a in evaluate_rule(missing, influx, now) if a.labels.get("source")}
    assert fired[scene.fresh] is False and fired[scene.late] is True
    failed = next(r for r in rules() if r["uid"] == "kv-snapshot-failed-influxql")
    fired = {(a.labels["source"], a.labels["stage"]): a.firing for a in evaluate_rule(failed, influx, now)}
    assert fired[(scene.late, "check")] is True and not any(source == scene.fresh for source, _ in fired)


def test_recovery_point_lag_panel_and_oplog_rules(influx, scene):
    lag = rows_by(panel_series(influx, "Recovery point lag (oplog archive)", [scene.fresh, scene.late]), "instance")
    assert {instance: row["max"] for (instance,), row in lag.items()} == {scene.fresh: 20.0, scene.late: 300.0}
    gaps = rows_by(panel_series(influx, "Oplog archive gaps", [scene.fresh, scene.late]), "instance")
    assert list(gaps) == [(scene.late,)] and gaps[(scene.late,)]["lost_s"] == 3600.0
    assert firing("mongo-oplog-lag", influx, [scene.fresh, scene.late]) == {
        (scene.fresh, ""): False,
        (scene.late, ""): True,
    }
    assert firing("mongo-oplog-behind", influx, [scene.fresh, scene.late]) == {(scene.late, ""): True}
    assert firing("mongo-oplog-gap", influx, [scene.fresh, scene.late]) == {(scene.late, ""): True}
