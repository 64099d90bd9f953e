"""What Grafana does to an InfluxQL query before InfluxDB sees it, and what a panel or alert rule makes of the
answer: enough of Grafana to run the generated dashboard and alert rules on a real InfluxDB 1.6.

No Grafana server can be had here, so this follows Grafana's own code:
- template variables are interpolated first (the InfluxDB datasource's `interpolateQueryExpr`): a variable that
  is `multi` or `includeAll` becomes its values regex-escaped, one value as it is, several as `(a|b)`; "All"
  becomes the variable's `allValue` unescaped; a repeated panel sees one value of its repeat variable;
- then the backend (`pkg/tsdb/influxdb/models/query.go`, `Query.Build`) replaces `$timeFilter` with
  `time >= <from>ms and time <= <to>ms`, and `$interval`, `$__interval_ms`, `$__interval` with the query's
  interval: the time range divided by the query's max data points (a panel: its width in pixels; an alert
  rule: 43,200), at least 1 s, rounded down to a "nice" step (`gtime.RoundInterval`);
- a stat panel reduces each series to its last non-null value and shows `noValue` when there is none; an alert
  rule reduces each series with `last` and compares it with its threshold (`gt`/`lt`); no series at all is
  the rule's no-data state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

#: (upper bound inclusive, step), in milliseconds: gtime.RoundInterval of grafana-plugin-sdk-go.
_ROUND_STEPS_MS = (
    (10, 1),
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (750_000, 600_000),
    (1_050_000, 900_000),
    (1_500_000, 1_200_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (32_400_000, 21_600_000),
    (86_400_000, 43_200_000),
    (172_800_000, 86_400_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_800_000 - 1, 2_592_000_000),
)
#: Grafana's dashboard grid has 24 columns; at a 1500 px wide screen a column is about 60 px of panel.
GRID_COLUMN_PX = 60
#: What an alert query asks for when its model sets nothing (Grafana's alerting defaults).
ALERT_MAX_DATA_POINTS = 43_200
ALERT_MIN_INTERVAL_MS = 1_000


def round_interval_ms(interval_ms: float) -> int:
    for bound, step in _ROUND_STEPS_MS:
        if interval_ms <= bound:
            return step
    return 31_536_000_000


def format_interval(ms: int) -> str:
    """gtime.FormatInterval: the largest whole unit (y, d, h, m, s, ms)."""
    for unit, size in (("y", 31_536_000_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return f"{max(ms, 1)}ms"


def escape_regex(value: str) -> str:
    """@grafana/data escapeRegex: the characters special in a regular expression, and the slash."""
    return re.sub(r"([\\^$*+?.()|\[\]{}/])", r"\\\1", value)


@dataclass(frozen=True)
class Variable:
    """A dashboard template variable as its JSON declares it, with the values chosen on the dashboard."""

    name: str
    multi: bool
    include_all: bool
    all_value: str | None
    chosen: tuple[str, ...] | None = None  # None: "All"

    @classmethod
    def from_json(cls, spec: dict[str, Any], chosen: list[str] | None) -> Variable:
        return cls(
            spec["name"],
            bool(spec.get("multi")),
            bool(spec.get("includeAll")),
            spec.get("allValue"),
            tuple(chosen) if chosen is not None else None,
        )

    def text(self) -> str:
        if self.chosen is None:
            assert self.all_value is not None, f"variable {self.name}: choose values (it has no allValue)"
            return self.all_value
        if not self.multi and not self.include_all:
            return self.chosen[0]
        escaped = [escape_regex(value) for value in self.chosen]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate_variables(query: str, variables: list[Variable]) -> str:
    """`$name`, `${name}` and `[[name]]` of each variable, longest names first so `$a` never eats `$ab`."""
    for variable in sorted(variables, key=lambda v: -len(v.name)):
        text = variable.text()
        query = query.replace("${" + variable.name + "}", text).replace("[[" + variable.name + "]]", text)
        query = re.sub(r"\$" + re.escape(variable.name) + r"(?![A-Za-z0-9_])", lambda _, text=text: text, query)
    return query


def expand_macros(query: str, start: datetime, end: datetime, max_data_points: int, min_interval_ms: int) -> str:
    """Query.Build of Grafana's InfluxDB backend, for a raw query over [start, end]."""
    range_ms = (end - start) / timedelta(milliseconds=1)
    interval_ms = round_interval_ms(max(range_ms / max_data_points, min_interval_ms))
    time_filter = f"time >= {int(start.timestamp() * 1000)}ms and time <= {int(end.timestamp() * 1000)}ms"
    query = query.replace("$timeFilter", time_filter)
    query = query.replace("$interval", format_interval(interval_ms))
    query = query.replace("$__interval_ms", str(interval_ms))
    return query.replace("$__interval", format_interval(interval_ms))


def panel_max_data_points(panel: dict[str, Any]) -> int:
    return panel.get("maxDataPoints") or panel["gridPos"]["w"] * GRID_COLUMN_PX


def unexpanded(query: str) -> list[str]:
    """Anything that still looks like a Grafana variable or macro after expansion."""
    return re.findall(r"\$\{?\w+\}?|\[\[\w+\]\]", query)


class InfluxQL:
    """Runs queries on one InfluxDB 1.x database over HTTP, as Grafana's datasource does (GET /query)."""

    def __init__(self, url: str, database: str):
        self.url, self.database = url, database

    def series(self, query: str) -> list[dict[str, Any]]:
        reply = httpx.get(f"{self.url}/query", params={"db": self.database, "q": query, "epoch": "ms"}, timeout=10)
        reply.raise_for_status()
        result = reply.json()["results"][0]
        if "error" in result:
            raise AssertionError(f"InfluxDB refused the query: {result['error']}\n{query}")
        return result.get("series", [])


def last_not_null(series: dict[str, Any]) -> Any:
    """The stat panel's `lastNotNull` of a series' first value column (the column after `time`)."""
    column = 1 if series["columns"][0] == "time" else 0
    values = [row[column] for row in series["values"] if row[column] is not None]
    return values[-1] if values else None


def stat_value(series: list[dict[str, Any]], no_value: str | None) -> float | None:
    """What a single-series stat panel shows: the last non-null value, else its `noValue` text as a number."""
    values = [v for v in (last_not_null(s) for s in series) if v is not None]
    if values:
        return float(values[-1])
    return float(no_value) if no_value is not None else None


def threshold_color(value: float | None, thresholds: dict[str, Any]) -> str | None:
    """The color of the highest step whose value is at or below `value` (the base step has value null)."""
    if value is None:
        return None
    color = None
    for step in thresholds["steps"]:
        if step["value"] is None or value >= step["value"]:
            color = step["color"]
    return color


@dataclass(frozen=True)
class AlertInstance:
    """One series of an alert rule's evaluation: its labels, its reduced value, whether it fires."""

    labels: dict[str, str]
    value: float | None
    firing: bool


def evaluate_rule(rule: dict[str, Any], influx: InfluxQL, now: datetime) -> list[AlertInstance]:
    """A Grafana-managed rule of the shape the generator writes: query A, reduce B (last), threshold C."""
    by_ref = {d["refId"]: d for d in rule["data"]}
    query = by_ref["A"]
    window = query["relativeTimeRange"]
    start, end = now - timedelta(seconds=window["from"]), now - timedelta(seconds=window["to"])
    model = query["model"]
    text = expand_macros(
        model["query"],
        start,
        end,
        model.get("maxDataPoints") or ALERT_MAX_DATA_POINTS,
        model.get("intervalMs") or ALERT_MIN_INTERVAL_MS,
    )
    assert not unexpanded(text), f"rule {rule['title']!r}: {unexpanded(text)} left in {text}"
    reduce, condition = by_ref["B"]["model"], by_ref["C"]["model"]
    assert reduce["type"] == "reduce" and reduce["reducer"] == "last" and rule["condition"] == "C"
    evaluator = condition["conditions"][0]["evaluator"]
    results = []
    for series in influx.series(text):
        column = 1 if series["columns"][0] == "time" else 0
        last = series["values"][-1][column] if series["values"] else None
        value = float(last) if last is not None else None
        if value is None:
            firing = False
        elif evaluator["type"] == "gt":
            firing = value > evaluator["params"][0]
        elif evaluator["type"] == "lt":
            firing = value < evaluator["params"][0]
        else:
            raise AssertionError(f"rule {rule['title']!r}: evaluator {evaluator['type']} not emulated here")
        results.append(AlertInstance(series.get("tags", {}), value, firing))
    return results
