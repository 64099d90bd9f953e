"""The generated Grafana dashboards and alert rules: they parse, they are what is committed under
deployments/grafana, and every query names only measurements, tags and fields that mongobackup.metrics declares
(checked by parsing the generated text here, not by asking the generator). The InfluxQL queries are run on a real
InfluxDB 1.6, expanded as Grafana expands them, in test_dashboard_queries.py.

There is no Grafana server and no Flux engine here: Flux queries are checked for names only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from mongobackup import dashboards, metrics
from mongobackup.metrics import MEASUREMENTS

COMMITTED = Path(__file__).resolve().parent.parent / "deployments" / "grafana"
FLUX_SPECIALS = {"_measurement", "_field", "_value", "_time", "_start", "_stop"}


def generated() -> dict[str, str]:
    return dashboards.provisioning_files()


def all_queries() -> list[tuple[str, str, str]]:
    """(flavour, where, query text) of every panel target, variable and alert rule, from the generated files."""
    found = []
    for path, text in generated().items():
        flavor = path.split("/")[0]
        if path.endswith(".json"):
            board = json.loads(text)
            found += [(flavor, f"panel {p['title']!r}", t["query"]) for p in board["panels"] for t in p["targets"]]
            found += [(flavor, f"variable {v['name']}", v["query"]) for v in board["templating"]["list"]]
        elif "/alerting/" in path:
            for group in yaml.safe_load(text)["groups"]:
                found += [
                    (flavor, f"alert {r['title']!r}", d["model"]["query"])
                    for r in group["rules"]
                    for d in r["data"]
                    if d["datasourceUid"] != "__expr__"
                ]
    return found


def test_committed_provisioning_files_are_what_the_generator_writes():
    on_disk = {str(p.relative_to(COMMITTED)): p.read_text() for p in COMMITTED.rglob("*") if p.is_file()}
    assert on_disk == generated(), "run: python -m mongobackup.dashboards --out deployments/grafana"


def test_every_file_parses_and_alerts_point_at_the_provisioned_datasource():
    files = generated()
    for flavor in dashboards.FLAVORS:
        source = yaml.safe_load(files[f"{flavor}/datasources/mongo-backups.yaml"])["datasources"][0]
        provider = yaml.safe_load(files[f"{flavor}/dashboards/mongo-backups.yaml"])["providers"][0]
        board = json.loads(files[f"{flavor}/dashboards/mongo-backups.json"])
        rules = yaml.safe_load(files[f"{flavor}/alerting/mongo-backups.yaml"])["groups"][0]["rules"]
        assert provider["options"]["path"] == "/etc/grafana/provisioning/dashboards"
        assert len({p["id"] for p in board["panels"]}) == len(board["panels"]) >= 8
        assert all(p["datasource"]["uid"] == source["uid"] for p in board["panels"])
        for rule in rules:
            ref_ids = {d["refId"] for d in rule["data"]}
            assert rule["condition"] in ref_ids
            assert {d["datasourceUid"] for d in rule["data"]} == {source["uid"], "__expr__"}
        assert len({r["uid"] for r in rules}) == len(rules) == 9
    assert (
        json.loads(files["flux/dashboards/mongo-backups.json"])["uid"]
        != json.loads(files["influxql/dashboards/mongo-backups.json"])["uid"]
    )


def test_the_status_panel_is_the_teams_per_instance_24_h_panel():
    for flavor in dashboards.FLAVORS:
        board = json.loads(generated()[f"{flavor}/dashboards/mongo-backups.json"])
        status = board["panels"][0]
        assert status["type"] == "stat" and status["repeat"] == "instance"
        steps = status["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps == [{"color": "red", "value": None}, {"color": "green", "value": 0.5}]
        assert status["fieldConfig"]["defaults"]["noValue"] == "0"  # no point in 24 h: 0, red
        query = status["targets"][0]["query"]
        assert "instance_backup_completed" in query and ("now() - 24h" in query or "-24h" in query)


def _influxql_names(query: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The measurements a query reads and its other identifiers, each with the role its position gives it."""
    measurements = [
        m for group in re.findall(r'FROM ((?:"\w+"(?:, )?)+)', query) for m in re.findall(r'"(\w+)"', group)
    ]
    aliases = set(re.findall(r'AS "(\w+)"', query))
    roles = [("field", n) for n in re.findall(r'\w+\("(\w+)"\)', query)]
    for clause in re.findall(r"GROUP BY (.*?)(?: fill\(|\) WHERE|$)", query):
        roles += [("tag", n) for n in re.findall(r'"(\w+)"', clause)]
    roles += [("tag", n) for n in re.findall(r'"(\w+)" (?:=~|=) (?:/|\')', query)]
    roles += [("field", n) for n in re.findall(r'"(\w+)" = (?:true|false)', query)]
    roles += [("tag", n) for n in re.findall(r'WITH KEY = "(\w+)"', query)]
    every = set(re.findall(r'"(\w+)"', query))
    classified = {n for _, n in roles} | set(measurements) | aliases
    assert every <= classified, f"unclassified identifiers {every - classified} in {query}"
    return measurements, [(role, name) for role, name in roles if name not in aliases]


def _flux_names(query: str) -> tuple[list[str], list[tuple[str, str]]]:
    measurements = re.findall(r'r\._measurement == "(\w+)"', query)
    roles = [("field", n) for n in re.findall(r'r\._field == "(\w+)"', query)]
    roles += [("tag", n) for n in re.findall(r"\br\.(\w+)", query) if n not in FLUX_SPECIALS]
    roles += [
        ("tag", n)
        for group in re.findall(r"columns: \[([^\]]*)\]", query)
        for n in re.findall(r'"(\w+)"', group)
        if n not in FLUX_SPECIALS
    ]
    roles += [("tag", n) for n in re.findall(r'\btag: "(\w+)"', query)]
    return measurements, roles


def test_every_query_uses_only_names_the_code_writes():
    queries = all_queries()
    assert len(queries) == 2 * (18 + 2 + 9)  # per flavour: 18 panels, 2 variables, 9 alert rules
    for flavor, where, query in queries:
        assert "__BUCKET__" not in query
        names = _influxql_names if flavor == "influxql" else _flux_names
        measurements, roles = names(query)
        assert measurements, f"{flavor} {where}: no measurement in {query}"
        specs = [MEASUREMENTS.get(m) for m in measurements]
        assert None not in specs, f"{flavor} {where}: unknown measurement in {measurements}"
        tags = set().union(*(s.tags for s in specs))
        fields = set().union(*(s.fields for s in specs))
        for role, name in roles:
            assert name in (tags if role == "tag" else fields), f"{flavor} {where}: undeclared {role} {name!r}"


def test_the_generator_refuses_an_undeclared_name():
    names = dashboards._Names(metrics.INSTANCE_BACKUP_STALE)
    with pytest.raises(ValueError, match="instance_backup_stale has no field 'bytes'"):
        names.field("bytes")
    with pytest.raises(ValueError, match="has no tag 'tier'"):
        names.tag("tier")


def test_write_provisioning_writes_every_file(tmp_path):
    written = dashboards.write_provisioning(tmp_path, bucket="events")
    assert len(written) == 10
    flux = json.loads((tmp_path / "flux/dashboards/mongo-backups.json").read_text())
    assert 'from(bucket: "events")' in flux["panels"][0]["targets"][0]["query"]
