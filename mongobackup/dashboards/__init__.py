"""Grafana dashboards, alert rules and provisioning files, generated from `mongobackup.metrics`.

    python -m mongobackup.dashboards --out deployments/grafana [--flux-bucket backups]

Two flavours are written, one folder each, to be mounted as Grafana's provisioning folder
(`/etc/grafana/provisioning`): `influxql/` for InfluxDB 1.x and `flux/` for InfluxDB 2.x. Each holds a
datasource (URL and credentials from environment variables), a dashboard provider with the dashboard JSON,
and the alert rules.

Every query is built from the `MeasurementSpec`s of `mongobackup.metrics` through `_Names`, which refuses a
tag or field the measurement does not declare, so a panel cannot ask for a name the code does not write;
the tests check the generated text independently, and run the InfluxQL queries on a real InfluxDB 1.6.

The status panel is the team's: per instance, green when an `instance_backup_completed` point without a
database tag (written when every database of the instance succeeded) arrived in the last 24 h, threshold
0.5. It counts points rather than taking last("value"): the count is 1 or more exactly when last() would be
true, and is a number on every Grafana version, where a boolean field is not.

Modules: `queries` (the Query type, shared names, InfluxQL/Flux query builders), `panels` (panels and the
dashboard JSON), `alerts` (alert rules), `provisioning` (datasource, provider, files, `main`).
"""

from mongobackup.dashboards.alerts import AlertRule, alert_rules, alerting
from mongobackup.dashboards.panels import Panel, _green_red, _red_green, dashboard, panels
from mongobackup.dashboards.provisioning import (
    README,
    dashboard_provider,
    datasource,
    main,
    provisioning_files,
    write_provisioning,
)
from mongobackup.dashboards.queries import (
    DASHBOARD_TITLE,
    DASHBOARD_UID,
    DATASOURCE_UID,
    DEFAULT_FLUX_BUCKET,
    FLAVORS,
    FOLDER,
    GENERATED_NOTE,
    GRAFANA_DASHBOARD_PATH,
    STATUS_THRESHOLD,
    TIER_TIMINGS,
    Flavor,
    Query,
    _Names,
)

__all__ = [
    "DASHBOARD_TITLE",
    "DASHBOARD_UID",
    "DATASOURCE_UID",
    "DEFAULT_FLUX_BUCKET",
    "FLAVORS",
    "FOLDER",
    "GENERATED_NOTE",
    "GRAFANA_DASHBOARD_PATH",
    "README",
    "STATUS_THRESHOLD",
    "TIER_TIMINGS",
    "AlertRule",
    "Flavor",
    "Panel",
    "Query",
    "_Names",
    "_green_red",
    "_red_green",
    "alert_rules",
    "alerting",
    "dashboard",
    "dashboard_provider",
    "datasource",
    "main",
    "panels",
    "provisioning_files",
    "write_provisioning",
]
