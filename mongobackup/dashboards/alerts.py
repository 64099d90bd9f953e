"""The alert rules (Grafana unified alerting, file provisioning format) of one flavour."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mongobackup.dashboards.queries import (
    DASHBOARD_UID,
    DATASOURCE_UID,
    DEFAULT_FLUX_BUCKET,
    FOLDER,
    OPLOG_LAG_ALERT_S,
    STATUS_THRESHOLD,
    Flavor,
    Query,
    _text,
    alert_drill_query,
    alert_failed_query,
    alert_missing_query,
    alert_oplog_behind_query,
    alert_oplog_gap_query,
    alert_oplog_lag_query,
    alert_stale_query,
)

# ---------------------------------------------------------------------------------------------------------
# Alert rules (Grafana unified alerting, file provisioning format)


@dataclass(frozen=True)
class AlertRule:
    """AlertRule fires per series of `query` when its last value is `above`/below `threshold`."""

    uid: str
    title: str
    query: Query
    window_s: int
    threshold: float
    above: bool
    summary: str
    no_data: Literal["OK", "Alerting", "NoData"] = "OK"
    flux_threshold: float | None = None  # when the Flux query measures something else (hours, not a count)
    flux_above: bool | None = None


def alert_rules() -> list[AlertRule]:
    from mongobackup.snapshots.dashboards import snapshot_alert_rules  # it builds on this module

    return [*_database_alert_rules(), *snapshot_alert_rules()]


def _database_alert_rules() -> list[AlertRule]:
    return [
        AlertRule(
            "mongo-backup-missing",
            "Mongo backup missing: no completed backup in 24 h",
            alert_missing_query(),
            7 * 86400,
            STATUS_THRESHOLD,
            above=False,
            no_data="Alerting",
            summary="Instance {{ $labels.instance }}: no instance_backup_completed in the last 24 h.",
            flux_threshold=24.0,
            flux_above=True,
        ),
        AlertRule(
            "mongo-backup-stale",
            "Mongo backup stale (watchdog)",
            alert_stale_query(),
            2 * 3600,
            0,
            above=True,
            summary="{{ $labels.instance }}/{{ $labels.database }}: the watchdog found the newest "
            "committed backup too old or missing. Run flows.status for details.",
        ),
        AlertRule(
            "mongo-backup-failed",
            "Mongo backup failed",
            alert_failed_query(),
            6 * 3600,
            0,
            above=True,
            summary="{{ $labels.instance }}/{{ $labels.database }} failed at stage {{ $labels.stage }}.",
        ),
        AlertRule(
            "mongo-oplog-lag",
            "Mongo recovery point lag too high",
            alert_oplog_lag_query(),
            600,
            OPLOG_LAG_ALERT_S,
            above=True,
            no_data="Alerting",
            summary="The oplog archive of {{ $labels.instance }} is more than "
            f"{OPLOG_LAG_ALERT_S:g} s behind (or no archiver reported in 10 min): restores cannot reach the "
            "last minutes. Check the oplog/<instance> run.",
        ),
        AlertRule(
            "mongo-oplog-behind",
            "Mongo oplog archive behind (watchdog)",
            alert_oplog_behind_query(),
            2 * 3600,
            0,
            above=True,
            summary="{{ $labels.instance }}: the watchdog found the recovery point lag above pitr.max_lag_s "
            "(or nothing archived). Run flows.status for details.",
        ),
        AlertRule(
            "mongo-oplog-gap",
            "Mongo oplog archive has a gap",
            alert_oplog_gap_query(),
            86400,
            0,
            above=True,
            summary="{{ $labels.instance }}: the oplog rolled over while no archiver ran; points in the gap cannot "
            "be restored. Take a base backup of every database of the instance to close it.",
        ),
        AlertRule(
            "mongo-restore-drill-failed",
            "Mongo restore drill failed",
            alert_drill_query(),
            7 * 86400,
            0,
            above=True,
            summary="The restore drill of {{ $labels.instance }}/{{ $labels.database }} failed in the last 7 days.",
        ),
    ]


def _alert_json(rule: AlertRule, flavor: Flavor, bucket: str) -> dict[str, Any]:
    query: dict[str, Any] = {"refId": "A", "query": _text(rule.query, flavor, bucket)}
    if flavor == "influxql":
        query |= {"rawQuery": True, "resultFormat": "time_series"}
    threshold = rule.flux_threshold if flavor == "flux" and rule.flux_threshold is not None else rule.threshold
    above = rule.flux_above if flavor == "flux" and rule.flux_above is not None else rule.above
    return {
        "uid": f"{rule.uid}-{flavor}",
        "title": rule.title,
        "condition": "C",
        "data": [
            {
                "refId": "A",
                "relativeTimeRange": {"from": rule.window_s, "to": 0},
                "datasourceUid": DATASOURCE_UID[flavor],
                "model": query,
            },
            {
                "refId": "B",
                "datasourceUid": "__expr__",
                "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last"},
            },
            {
                "refId": "C",
                "datasourceUid": "__expr__",
                "model": {
                    "refId": "C",
                    "type": "threshold",
                    "expression": "B",
                    "conditions": [{"evaluator": {"type": "gt" if above else "lt", "params": [threshold]}}],
                },
            },
        ],
        "noDataState": rule.no_data,
        "execErrState": "Error",
        "for": "0s",
        "annotations": {"summary": rule.summary, "dashboardUid": f"{DASHBOARD_UID}-{flavor}"},
        "labels": {"service": "mongo-backup"},
    }


def alerting(flavor: Flavor, bucket: str = DEFAULT_FLUX_BUCKET) -> dict[str, Any]:
    """The alert rule provisioning document for one flavour."""
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": "mongo-backups",
                "folder": FOLDER,
                "interval": "5m",
                "rules": [_alert_json(rule, flavor, bucket) for rule in alert_rules()],
            }
        ],
    }
