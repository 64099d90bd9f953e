"""The key/value snapshot panels, variable and alert rules of the generated Grafana dashboards.

Built like the database ones in `mongobackup.dashboards` (whose generator adds these to both flavours), from
the `<kind>_snapshot_completed` / `<kind>_snapshot_failed` specs of `mongobackup.metrics`: every name goes
through `_Names`, which refuses one the code does not write. Consul's and etcd's measurements have the same
shape, so each query reads both and groups by `source`.

The "committed in the last 24 h" panel and the "snapshot missing" alert count hourly with fill(0) over 7
days and sum the last 25 hours, as the database alert does: a source whose snapshots stopped shows 0 (red,
firing) instead of vanishing from the result.
"""

from __future__ import annotations

from typing import Any

from mongobackup import metrics
from mongobackup.dashboards.alerts import AlertRule
from mongobackup.dashboards.panels import Panel, _red_green
from mongobackup.dashboards.queries import STATUS_THRESHOLD, Query, _Names

SOURCE = metrics.SOURCE
COMPLETED = [_Names(spec) for spec in metrics.SNAPSHOT_COMPLETED.values()]
FAILED = [_Names(spec) for spec in metrics.SNAPSHOT_FAILED.values()]


def _from(names: list[_Names]) -> str:
    return ", ".join(n.m for n in names)


def _flux(names: list[_Names], field: str, *, start: str = "v.timeRangeStart", source_filter: bool = True) -> str:
    stop = ", stop: v.timeRangeStop" if start == "v.timeRangeStart" else ""
    measured = " or ".join(f'r._measurement == "{n.spec.name}"' for n in names)
    lines = [
        'from(bucket: "__BUCKET__")',
        f"  |> range(start: {start}{stop})",
        f"  |> filter(fn: (r) => {measured})",
        f'  |> filter(fn: (r) => r._field == "{names[0].field(field)}")',
    ]
    if source_filter:
        lines.append(f"  |> filter(fn: (r) => r.{names[0].tag(SOURCE)} =~ /^${{{SOURCE}:regex}}$/)")
    return "\n".join(lines)


def committed_24h_query(*, source_filter: bool = True) -> Query:
    """Per source: snapshots committed in the last 24-25 h, 0 when none (hourly counts, fill(0), 7 days back)."""
    c = COMPLETED[0]
    where = f"{c.t(SOURCE)} =~ /^${SOURCE}$/ AND " if source_filter else ""
    return Query(
        f"SELECT moving_average(count({c.f('value')}), 25) * 25 FROM {_from(COMPLETED)} WHERE {where}"
        f"time > now() - 7d GROUP BY time(1h), {c.t(SOURCE)} fill(0)",
        # Flux: hours since the newest committed snapshot of each source.
        _flux(COMPLETED, "value", start="-7d", source_filter=source_filter)
        + f'\n  |> group(columns: ["{c.tag(SOURCE)}"])\n  |> last()'
        + f"\n  |> map(fn: (r) => ({{{c.tag(SOURCE)}: r.{c.tag(SOURCE)}, _time: r._time, "
        "_value: float(v: int(v: now()) - int(v: r._time)) / 3600000000000.0}))",
    )


def size_query() -> Query:
    c = COMPLETED[0]
    return Query(
        f'SELECT last({c.f("bytes")}) AS "stored", last({c.f("snapshot_bytes")}) AS "snapshot" '
        f"FROM {_from(COMPLETED)} WHERE {c.t(SOURCE)} =~ /^${SOURCE}$/ AND $timeFilter "
        f"GROUP BY time($__interval), {c.t(SOURCE)} fill(none)",
        _flux(COMPLETED, "bytes")
        + f'\n  |> group(columns: ["{c.tag(SOURCE)}"])'
        + "\n  |> aggregateWindow(every: v.windowPeriod, fn: last, createEmpty: false)",
    )


def failures_query() -> Query:
    f = FAILED[0]
    return Query(
        f"SELECT sum({f.f('value')}) FROM {_from(FAILED)} WHERE {f.t(SOURCE)} =~ /^${SOURCE}$/ AND $timeFilter "
        f"GROUP BY time($__interval), {f.t(SOURCE)}, {f.t('stage')} fill(none)",
        _flux(FAILED, "value")
        + f'\n  |> group(columns: ["{f.tag(SOURCE)}", "{f.tag("stage")}"])'
        + "\n  |> aggregateWindow(every: v.windowPeriod, fn: sum, createEmpty: false)",
    )


def last_errors_query() -> Query:
    f = FAILED[0]
    return Query(
        f'SELECT last({f.f("error")}) AS "error" FROM {_from(FAILED)} WHERE {f.t(SOURCE)} =~ /^${SOURCE}$/ '
        f"AND $timeFilter GROUP BY {f.t(SOURCE)}, {f.t('stage')}",
        _flux(FAILED, "error") + f'\n  |> group(columns: ["{f.tag(SOURCE)}", "{f.tag("stage")}"])\n  |> last()',
        table=True,
    )


def source_variable_query() -> Query:
    """The sources the dashboard offers: every source that committed or failed a snapshot."""
    names = COMPLETED + FAILED
    return Query(
        f"SHOW TAG VALUES FROM {_from(names)} WITH KEY = {names[0].t(SOURCE)}",
        'import "influxdata/influxdb/schema"\n'
        f'schema.tagValues(bucket: "__BUCKET__", tag: "{names[0].tag(SOURCE)}", start: -90d, predicate: (r) => '
        + " or ".join(f'r._measurement == "{n.spec.name}"' for n in names)
        + ")",
    )


def alert_failed_query() -> Query:
    f = FAILED[0]
    return Query(
        f"SELECT sum({f.f('value')}) FROM {_from(FAILED)} WHERE $timeFilter GROUP BY {f.t(SOURCE)}, {f.t('stage')}",
        _flux(FAILED, "value", source_filter=False)
        + f'\n  |> group(columns: ["{f.tag(SOURCE)}", "{f.tag("stage")}"])\n  |> sum()'
        + "\n  |> map(fn: (r) => ({r with _value: float(v: r._value)}))",
    )


def snapshot_panels(stat_options: dict[str, Any]) -> list[Panel]:
    points = {"custom": {"drawStyle": "points", "pointSize": 6}}
    return [
        Panel(
            "Key/value snapshots committed in the last 24 h, per source",
            "stat",
            committed_24h_query(),
            width=12,
            description="Consul and etcd snapshots (the snapshot flow): green when at least one snapshot of the "
            "source passed its integrity check and was committed in the last 24 h; 0 and red when none.",
            options=stat_options,
            defaults={"thresholds": _red_green(STATUS_THRESHOLD), "noValue": "0", "decimals": 0},
        ),
        Panel(
            "Key/value snapshot size per source", "timeseries", size_query(), width=12, unit="bytes", defaults=points
        ),
        Panel(
            "Failed key/value snapshots by stage",
            "timeseries",
            failures_query(),
            description="stage check: the snapshot failed its own integrity check and was not stored.",
            defaults={"custom": {"drawStyle": "bars", "fillOpacity": 80}, "decimals": 0},
        ),
        Panel("Last key/value snapshot error per source and stage", "table", last_errors_query(), width=12),
    ]


def snapshot_alert_rules() -> list[AlertRule]:
    return [
        AlertRule(
            "kv-snapshot-missing",
            "Key/value snapshot missing: none committed in 24 h",
            committed_24h_query(source_filter=False),
            7 * 86400,
            STATUS_THRESHOLD,
            above=False,
            no_data="Alerting",
            summary="Snapshot source {{ $labels.source }}: no Consul or etcd snapshot committed in the last 24 h.",
            flux_threshold=24.0,
            flux_above=True,
        ),
        AlertRule(
            "kv-snapshot-failed",
            "Key/value snapshot failed",
            alert_failed_query(),
            6 * 3600,
            0,
            above=True,
            summary="Snapshot source {{ $labels.source }} failed at stage {{ $labels.stage }}.",
        ),
    ]
