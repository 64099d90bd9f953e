"""The Kubernetes base job template: accepted by a real Prefect server, with resources that fit the budget."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "deployments" / "k8s" / "base-job-template.json"


def mebibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()
    return int(number) * (1024 if unit == "Gi" else 1)


def test_resources_fit_well_under_the_old_containers_500_mb():
    variables = json.loads(TEMPLATE.read_text())["variables"]["properties"]
    request, limit = mebibytes(variables["memory_request"]["default"]), mebibytes(variables["memory_limit"]["default"])
    assert request <= limit < 500


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
