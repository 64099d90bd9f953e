"""The dashboard's panels, their layout and the dashboard JSON model of one flavour."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mongobackup import metrics
from mongobackup.dashboards.queries import (
    ARCHIVED,
    COMPLETED,
    DASHBOARD_TITLE,
    DASHBOARD_UID,
    DATASOURCE_UID,
    DEFAULT_FLUX_BUCKET,
    GAP,
    GENERATED_NOTE,
    I_,
    OPLOG_LAG_ALERT_S,
    STALE,
    STATUS_THRESHOLD,
    Flavor,
    Query,
    _text,
    drill_by_tier_query,
    drill_results_query,
    drill_speed_query,
    failed_drills_query,
    failures_query,
    instance_variable_query,
    last_errors_query,
    oplog_gaps_query,
    oplog_lag_query,
    per_database_query,
    restore_time_by_tier_query,
    stale_query,
    status_query,
)

# ---------------------------------------------------------------------------------------------------------
# Panels


@dataclass(frozen=True)
class Panel:
    """Panel is one dashboard panel: its kind, query, size and field settings."""

    title: str
    kind: str  # Grafana panel type: stat, timeseries, table, barchart
    query: Query
    width: int = 12
    height: int = 8
    unit: str | None = None
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)  # fieldConfig.defaults overrides
    repeat: str | None = None


def _red_green(threshold: float) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": "red", "value": None}, {"color": "green", "value": threshold}]}


def _green_red(threshold: float) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "red", "value": threshold}]}


def panels() -> list[Panel]:
    """The dashboard's panels, top to bottom (the key/value snapshots' last, from mongobackup.snapshots)."""
    from mongobackup.snapshots.dashboards import snapshot_panels  # it builds on this module

    stat_options = {
        "colorMode": "background",
        "graphMode": "none",
        "textMode": "value_and_name",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
    }
    return [
        Panel(
            f"Backed up in the last 24 h: ${I_}",
            "stat",
            status_query(),
            width=4,
            height=4,
            repeat=I_,
            description="Green when every database of the instance was backed up in the last 24 h (an "
            f"{COMPLETED.name} point without a database tag); red otherwise.",
            options=stat_options,
            defaults={"thresholds": _red_green(STATUS_THRESHOLD), "noValue": "0", "decimals": 0},
        ),
        Panel(
            "Stale or missing backups (watchdog)",
            "table",
            stale_query(),
            width=12,
            description=f"{STALE.name}: the watchdog found the newest committed backup too old, or none. "
            "Run `python -m flows.status --plan PLAN` for the current state.",
            defaults={"custom": {"align": "auto"}},
        ),
        Panel(
            "Failed backups by stage",
            "timeseries",
            failures_query(),
            width=12,
            defaults={"custom": {"drawStyle": "bars", "fillOpacity": 80}, "decimals": 0},
        ),
        Panel("Last error per database and stage", "table", last_errors_query(), width=24, height=6),
        Panel(
            "Stored bytes per database",
            "timeseries",
            per_database_query("bytes"),
            unit="bytes",
            defaults={"custom": {"drawStyle": "points", "pointSize": 6}},
        ),
        Panel(
            "Backup duration per database",
            "timeseries",
            per_database_query("duration_s"),
            unit="s",
            defaults={"custom": {"drawStyle": "points", "pointSize": 6}},
        ),
        Panel(
            "Documents per database",
            "timeseries",
            per_database_query("docs"),
            unit="short",
            defaults={"custom": {"drawStyle": "points", "pointSize": 6}},
        ),
        Panel(
            "Failed restore drills",
            "stat",
            failed_drills_query(),
            width=12,
            options=stat_options,
            defaults={"thresholds": _green_red(STATUS_THRESHOLD), "noValue": "0"},
        ),
        Panel("Restore drills: newest result per database", "table", drill_results_query(), width=12),
        Panel(
            "Restore drill speed",
            "timeseries",
            drill_speed_query(),
            unit="MBs",
            defaults={"custom": {"drawStyle": "points", "pointSize": 6}},
        ),
        Panel(
            "Time to restore by tier",
            "timeseries",
            restore_time_by_tier_query(),
            width=12,
            unit="s",
            defaults={"custom": {"drawStyle": "points", "pointSize": 6}},
        ),
        Panel("Restore drill: last result per tier", "table", drill_by_tier_query(), width=12),
        Panel(
            "Recovery point lag (oplog archive)",
            "timeseries",
            oplog_lag_query(),
            width=16,
            unit="s",
            description=f"{ARCHIVED.name}: now minus the newest archived oplog entry, right after each committed "
            f"segment; a point-in-time restore can reach that far. Red above {OPLOG_LAG_ALERT_S:g} s.",
            defaults={
                "custom": {"drawStyle": "line", "thresholdsStyle": {"mode": "line"}},
                "thresholds": _green_red(OPLOG_LAG_ALERT_S),
            },
        ),
        Panel(
            "Oplog archive gaps",
            "table",
            oplog_gaps_query(),
            width=8,
            description=f"{GAP.name}: the oplog rolled over while no archiver ran; points inside a gap cannot be "
            "restored until the next base backup.",
        ),
        *snapshot_panels(stat_options),
    ]


def _layout(items: Sequence[Panel]) -> list[tuple[Panel, dict[str, int]]]:
    """Grid positions: left to right in a 24-column grid, a new row when the next panel does not fit."""
    placed, x, y, row_height = [], 0, 0, 0
    for panel in items:
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        placed.append((panel, {"h": panel.height, "w": panel.width, "x": x, "y": y}))
        x, row_height = x + panel.width, max(row_height, panel.height)
    return placed


def _panel_json(panel: Panel, number: int, grid: dict[str, int], flavor: Flavor, bucket: str) -> dict[str, Any]:
    datasource = {"type": "influxdb", "uid": DATASOURCE_UID[flavor]}
    target: dict[str, Any] = {"refId": "A", "datasource": datasource, "query": _text(panel.query, flavor, bucket)}
    if flavor == "influxql":
        target |= {"rawQuery": True, "resultFormat": "table" if panel.query.table else "time_series"}
    defaults = {"unit": panel.unit} if panel.unit else {}
    result: dict[str, Any] = {
        "id": number,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "gridPos": grid,
        "datasource": datasource,
        "targets": [target],
        "fieldConfig": {"defaults": defaults | panel.defaults, "overrides": []},
        "options": panel.options,
    }
    if panel.repeat:
        result |= {"repeat": panel.repeat, "repeatDirection": "h", "maxPerRow": 6}
    return result


def _instance_variable(flavor: Flavor, bucket: str) -> dict[str, Any]:
    return _variable(I_, "Instance", instance_variable_query(), flavor, bucket)


def _variable(name: str, label: str, query: Query, flavor: Flavor, bucket: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": {"type": "influxdb", "uid": DATASOURCE_UID[flavor]},
        "query": _text(query, flavor, bucket),
        "definition": _text(query, flavor, bucket),
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    }


def dashboard(flavor: Flavor, bucket: str = DEFAULT_FLUX_BUCKET) -> dict[str, Any]:
    """The dashboard JSON model for one flavour (`bucket`: the InfluxDB 2.x bucket the Flux queries read)."""
    from mongobackup.snapshots.dashboards import source_variable_query  # it builds on this module

    return {
        "uid": f"{DASHBOARD_UID}-{flavor}",
        "title": f"{DASHBOARD_TITLE} ({'InfluxQL' if flavor == 'influxql' else 'Flux'})",
        "description": GENERATED_NOTE,
        "tags": ["mongo-backup"],
        "timezone": "utc",
        "editable": False,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "5m",
        "time": {"from": "now-7d", "to": "now"},
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                _instance_variable(flavor, bucket),
                _variable(metrics.SOURCE, "Snapshot source", source_variable_query(), flavor, bucket),
            ]
        },
        "panels": [
            _panel_json(panel, number, grid, flavor, bucket)
            for number, (panel, grid) in enumerate(_layout(panels()), start=1)
        ],
    }
