"""The Kubernetes base job template: accepted by a real Prefect server, with resources that fit the budget."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deployments" / "k8s" / "base-job-template.json"
#: What `python -m bench.flow_runs --record` measured last: the largest peak RSS of a flow run's process tree.
RECORDED_PEAK = ROOT / "bench" / "recorded" / "flow_peak_rss.json"
#: The limit's stated headroom over that peak (see the template's memory_limit description).
HEADROOM = 1.5


def mebibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()
    return int(number) * (1024 if unit == "Gi" else 1)


def test_resources_fit_well_under_the_old_containers_500_mb():
    variables = json.loads(TEMPLATE.read_text())["variables"]["properties"]
    request, limit = mebibytes(variables["memory_request"]["default"]), mebibytes(variables["memory_limit"]["default"])
    assert request <= limit < 500


def test_the_limit_covers_the_last_recorded_peak_of_a_flow_run_with_headroom():
    variables = json.loads(TEMPLATE.read_text())["variables"]["properties"]
    limit = mebibytes(variables["memory_limit"]["default"])
    request = mebibytes(variables["memory_request"]["default"])
    peak = json.loads(RECORDED_PEAK.read_text())["peak_rss_tree_mb"]  # bench MB = 2**20 bytes = 1 Mi
    assert limit >= HEADROOM * peak, f"memory_limit {limit} Mi is under {HEADROOM}x the recorded peak {peak} MB"
    assert request >= peak, f"memory_request {request} Mi is under the recorded peak {peak} MB"


def test_a_prefect_server_accepts_it_as_a_work_pool_template(prefect):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    template = json.loads(TEMPLATE.read_text())
    name = f"k8s-{uuid.uuid4().hex[:6]}"
    with get_client(sync_client=True) as client:
        pool = client.create_work_pool(WorkPoolCreate(name=name, type="kubernetes", base_job_template=template))
        try:
            assert pool.base_job_template["variables"]["properties"]["memory_limit"]["default"] == "384Mi"
        finally:
            client.delete_work_pool(name)
