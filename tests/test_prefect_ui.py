"""What an operator sees of a backup run in the Prefect UI, in Debian's Chromium (headless, driven by Playwright):
readable task names on the run page, and an artifact whose every row shows state, instance, database and a human
size within the first screen width (1500 px). Screenshots are saved in `.test-output/screenshots/` (gitignored;
the paths are printed) for a human to look at.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from pymongo import MongoClient

from devservices import S3_TEST_CREDENTIALS
from flows.backup import backup
from tests.helpers import free_port
from tests.planfiles import write_plan

CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/bootstrap.sh); Playwright downloads no browser here
SCREEN = {"width": 1500, "height": 1000}
#: Where the screenshots go: a folder of the checkout that git ignores, kept after the run (pytest's tmp folders
#: are rotated away by later sessions).
SHOTS = Path(__file__).resolve().parent.parent / ".test-output" / "screenshots"
HUMAN_SIZE = re.compile(r"^\d+(\.\d+)? (B|KiB|MiB|GiB|TiB)$")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def finished_run(prefect, services, s3_client, gpg_key, tmp_path_factory) -> dict:
    """A backup run on the session's Prefect server: two databases of one instance stored, one instance down."""
    folder = tmp_path_factory.mktemp("ui")
    instance, down, databases = f"rs-ui{uuid.uuid4().hex[:4]}", "rs-down", ["shop", "users"]
    prefix = uuid.uuid4().hex[:6]
    with MongoClient(services.mongo_uri("mongo-a")) as client:
        for name in databases:
            client[f"{prefix}-{name}"].c.insert_many([{"n": n, "pad": "x" * 200} for n in range(500)])
    bucket = f"ui-{prefix}"
    s3_client.create_bucket(Bucket=bucket)
    plan = write_plan(
        folder / "plan.yaml",
        instances=[
            {"name": instance, "uri": services.mongo_uri("mongo-a"), "databases": [f"{prefix}-{d}" for d in databases]},
            {
                "name": down,
                "uri": f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
                "databases": "all",
                "connect_timeout_s": 1,
            },
        ],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
    )
    with pytest.MonkeyPatch.context() as env:  # the flow builds its S3 client from the default chain
        env.setenv("AWS_ACCESS_KEY_ID", S3_TEST_CREDENTIALS["aws_access_key_id"])
        env.setenv("AWS_SECRET_ACCESS_KEY", S3_TEST_CREDENTIALS["aws_secret_access_key"])
        state = backup(plan_path=str(plan), return_state=True)
    assert state.is_failed()  # rs-down
    return {
        "id": state.state_details.flow_run_id,
        "instance": instance,
        "down": down,
        "databases": [f"{prefix}-{d}" for d in databases],
        "ui": services.url("prefect").removesuffix("/api"),
        "shots": SHOTS,
    }


def screenshot(page, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def fully_visible(page, locator) -> bool:
    """Whether the element lies within the first screen width and is what the browser shows at its center
    (not clipped by a scrolling table, not covered by another panel)."""
    box = locator.bounding_box()
    if box is None or box["x"] < 0 or box["x"] + box["width"] > SCREEN["width"]:
        return False
    return locator.evaluate(
        "(el, p) => { const hit = document.elementFromPoint(p.x, p.y); return hit !== null && el.contains(hit); }",
        {"x": box["x"] + box["width"] / 2, "y": box["y"] + box["height"] / 2},
    )


def test_the_run_page_shows_task_names_with_instance_and_database(browser, finished_run):
    page = browser.new_page(viewport=SCREEN)
    page.goto(f"{finished_run['ui']}/runs/flow-run/{finished_run['id']}?tab=Task+Runs", wait_until="networkidle")
    instance, first = finished_run["instance"], finished_run["databases"][0]
    page.get_by_text(f"transfer {instance}/{first}", exact=True).filter(visible=True).first.wait_for(timeout=30_000)
    screenshot(page, finished_run["shots"], "run-task-runs")
    text = page.inner_text("body")
    for database in finished_run["databases"]:
        for step in ("transfer", "verify", "commit"):
            assert f"{step} {instance}/{database}" in text
    assert f"list-databases {finished_run['down']}" in text
    assert not re.search(r"\b(transfer|verify|commit)-[0-9a-f]{3}\b", text), "a task still named with a hash"


def test_the_artifact_shows_every_database_with_state_and_human_size_in_the_first_screen_width(browser, finished_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["backup-run"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[finished_run["id"]]),
            )
        )
    page = browser.new_page(viewport=SCREEN)
    page.goto(f"{finished_run['ui']}/artifacts/artifact/{artifact.id}", wait_until="networkidle")
    page.locator("table tr td").first.wait_for(timeout=30_000)
    screenshot(page, finished_run["shots"], "run-artifact")

    headers = [h.inner_text().strip() for h in page.locator("table tr th").all()]
    assert headers[0] == "state", headers
    rows = {}
    for row in page.locator("table tbody tr").all():
        cells = row.locator("td").all()
        values = dict(zip(headers, (c.inner_text().strip() for c in cells), strict=True))
        rows[(values["instance"], values["database"])] = (values, dict(zip(headers, cells, strict=True)))
    wanted = {(finished_run["instance"], d) for d in finished_run["databases"]}
    assert wanted <= set(rows), rows.keys()
    for key in wanted:
        values, cells = rows[key]
        assert values["state"] == "Completed" and HUMAN_SIZE.match(values["size"]), values
        for column in ("state", "instance", "database", "size"):
            assert fully_visible(page, cells[column]), f"{key} {column} is not in the first {SCREEN['width']} px"
    (failed, cells) = next(v for (instance, _), v in rows.items() if instance == finished_run["down"])
    assert failed["state"] == "Failed" and "unreachable" in failed["cause"] and "Topology" not in failed["cause"]
    assert all(fully_visible(page, cells[c]) for c in ("state", "instance", "database"))
