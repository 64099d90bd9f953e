"""The provisioning files of both flavours (datasource, dashboard provider, dashboard, alert rules), and the
command line that writes them:

    python -m mongobackup.dashboards --out deployments/grafana [--flux-bucket backups]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from mongobackup.dashboards.alerts import alerting
from mongobackup.dashboards.panels import dashboard
from mongobackup.dashboards.queries import (
    DATASOURCE_UID,
    DEFAULT_FLUX_BUCKET,
    FLAVORS,
    FOLDER,
    GENERATED_NOTE,
    GRAFANA_DASHBOARD_PATH,
    Flavor,
)

#: The command line's description (the first line of the package's docstring).
DESCRIPTION = "Grafana dashboards, alert rules and provisioning files, generated from `mongobackup.metrics`."

# ---------------------------------------------------------------------------------------------------------
# Provisioning files


def datasource(flavor: Flavor, bucket: str = DEFAULT_FLUX_BUCKET) -> dict[str, Any]:
    """The datasource provisioning document; URL and secrets come from Grafana's environment."""
    source: dict[str, Any] = {
        "name": f"Mongo backups ({flavor})",
        "uid": DATASOURCE_UID[flavor],
        "type": "influxdb",
        "access": "proxy",
        "url": "${INFLUXDB_URL}",
        "editable": False,
    }
    if flavor == "influxql":
        source |= {
            "user": "${INFLUXDB_USER}",
            "jsonData": {"dbName": "${INFLUXDB_DATABASE}", "httpMode": "GET"},
            "secureJsonData": {"password": "${INFLUXDB_PASSWORD}"},
        }
    else:
        source |= {
            "jsonData": {"version": "Flux", "organization": "${INFLUXDB_ORG}", "defaultBucket": bucket},
            "secureJsonData": {"token": "${INFLUXDB_TOKEN}"},
        }
    return {"apiVersion": 1, "datasources": [source]}


def dashboard_provider() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "mongo-backups",
                "orgId": 1,
                "folder": FOLDER,
                "type": "file",
                "disableDeletion": False,
                "allowUiUpdates": False,
                "options": {"path": GRAFANA_DASHBOARD_PATH, "foldersFromFilesStructure": False},
            }
        ],
    }


#: Beside each flavour's files: what was and was not run (Grafana reads only the YAML and JSON there).
README: dict[Flavor, str] = {
    "influxql": """# InfluxQL flavour (InfluxDB 1.x)

{note}

Every panel, variable and alert rule here is run by the tests on a real InfluxDB 1.6, expanded as Grafana expands it
(template variables, `$timeFilter`, `$__interval`; see `tests/grafana.py` and `tests/test_dashboard_queries.py`), and
its rows are checked: one status panel per instance, green after a backup and red when one missed its event; each
alert rule firing for its case. No Grafana server can be had on the development machine (no package registry it
reaches has one), so the panels' rendering itself was never seen.
""",
    "flux": """# Flux flavour (InfluxDB 2.x)

{note}

**These Flux queries have never been executed.** No Grafana server and no Flux engine can be had on the development
machine: no package registry it reaches has Grafana or InfluxDB 2.x, InfluxDB 1.6 has no Flux, and VictoriaMetrics
(the stand-in for the 2.x write API) does not speak Flux. They are generated from the same metric declarations as
the InfluxQL flavour, which is run on a real InfluxDB 1.6 as Grafana would run it, and `tests/test_dashboards.py`
checks that they name only measurements, tags and fields the code writes. Before relying on them, open the
dashboard once on your Grafana with your InfluxDB 2.x and look at each panel, and preview each alert rule.
""",
}


def provisioning_files(bucket: str = DEFAULT_FLUX_BUCKET) -> dict[str, str]:
    """Every generated file's text by its path relative to the output folder."""
    files: dict[str, str] = {}
    for flavor in FLAVORS:
        files[f"{flavor}/README.md"] = README[flavor].format(note=GENERATED_NOTE)
        files[f"{flavor}/datasources/mongo-backups.yaml"] = _yaml(datasource(flavor, bucket))
        files[f"{flavor}/dashboards/mongo-backups.yaml"] = _yaml(dashboard_provider())
        files[f"{flavor}/dashboards/mongo-backups.json"] = json.dumps(dashboard(flavor, bucket), indent=2) + "\n"
        files[f"{flavor}/alerting/mongo-backups.yaml"] = _yaml(alerting(flavor, bucket))
    return files


def _yaml(document: dict[str, Any]) -> str:
    return f"# {GENERATED_NOTE}\n" + yaml.safe_dump(document, sort_keys=False, width=120, allow_unicode=True)


def write_provisioning(out: Path, bucket: str = DEFAULT_FLUX_BUCKET) -> list[Path]:
    """Writes every generated file under `out`; returns their paths."""
    written = []
    for relative, text in provisioning_files(bucket).items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mongobackup.dashboards", description=DESCRIPTION)
    parser.add_argument("--out", required=True, type=Path, help="folder to write influxql/ and flux/ into")
    parser.add_argument("--flux-bucket", default=DEFAULT_FLUX_BUCKET, help="InfluxDB 2.x bucket of the events")
    args = parser.parse_args(argv)
    for path in write_provisioning(args.out, args.flux_bucket):
        print(path)
    return 0
