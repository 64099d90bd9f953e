"""Set up (or check) everything the deployments need on a Prefect server, idempotently.

    python -m flows.setup --plan PLAN.yaml [--webhook-url URL | --notify-block TYPE/NAME] [--check]

Run it from the project folder (where prefect.yaml is) with PREFECT_API_URL set. It
- creates the work pool of prefect.yaml and its queues (`backups`, `control`) when missing;
- deploys each deployment of prefect.yaml that is missing or differs from the file (entrypoint, queue,
  concurrency limit, parameters with `plan_path` set to PLAN, schedules, tags), and leaves the others alone;
  the oplog archivers are the plan's, not the file's: one `oplog/<instance>` per instance of a plan with a
  `pitr:` section (none without), each shaped like the file's first `oplog` entry;
- checks that the blocks the plan names exist (AwsCredentials `storage.credentials_block`, Secret `*_secret`),
  naming each missing one with the command that creates it: blocks hold secrets, so it never invents them;
- creates or updates the notification block (`--webhook-url`: a custom webhook block `mongo-backup-alerts`;
  `--notify-block`: one you made, e.g. `slack-webhook/team-alerts`) and two automations: one notifies through it
  when a run of backup, firedrill, watchdog, retention or oplog ends Failed or Crashed; one marks a run of those flows
  Crashed when its heartbeats stop (a process killed with -9, a lost machine).
A second run changes nothing. Each line says what was done: `created`, `updated`, `ok`, or `MISSING` (exit 1);
`--check` only reports.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

# Re-exported: callers name both automations through the command that creates them.
from flows.automations import CRASH_AUTOMATION as CRASH_AUTOMATION
from flows.automations import (
    NOTIFY_AUTOMATION,
    WEBHOOK_BLOCK,
    crash_automation,
    ensure_automation,
    ensure_notification_block,
    notify_automation,
)
from flows.cli import load_plan_or_report
from flows.steps import Step, _outcome
from mongobackup.plan import BackupPlan

ROOT = Path(__file__).resolve().parent.parent
OPLOG_ENTRYPOINT = "flows/oplog.py:oplog"
#: A run is crashed after this many heartbeats in a row did not arrive.
MISSED_HEARTBEATS = 3

# --- prefect.yaml ----------------------------------------------------------------------------------------------


def project_spec(path: Path = ROOT / "prefect.yaml") -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def plan_spec(spec: dict[str, Any], plan: BackupPlan) -> dict[str, Any]:
    """prefect.yaml with the plan's oplog archivers in place of the file's (which name the demo's instances):
    one per instance when the plan has a `pitr:` section, on the template of the file's first oplog entry."""
    others = [d for d in spec["deployments"] if d["entrypoint"] != OPLOG_ENTRYPOINT]
    templates = [d for d in spec["deployments"] if d["entrypoint"] == OPLOG_ENTRYPOINT]
    if plan.pitr is None or not templates:
        return {**spec, "deployments": others}
    template = templates[0]
    archivers = [
        {
            **template,
            "name": instance.name,
            "description": f"Archive the oplog of instance {instance.name} continuously "
            f"(encrypted segments under oplog/{instance.name}/).",
            "parameters": {**template.get("parameters", {}), "instance": instance.name},
        }
        for instance in plan.instances
    ]
    return {**spec, "deployments": others + archivers}


def deployment_name(spec: dict[str, Any], deployment: dict[str, Any]) -> str:
    """`flow/deployment` as the server names it (the flow's name is the entrypoint function's @flow name)."""
    return f"{deployment['entrypoint'].rsplit(':', 1)[1]}/{deployment['name']}"


def heartbeat_frequency_s(spec: dict[str, Any]) -> int:
    """The longest heartbeat period any deployment's runs use (job variable PREFECT_FLOWS_HEARTBEAT_FREQUENCY)."""
    periods = [
        int(d["work_pool"].get("job_variables", {}).get("env", {}).get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", 180))
        for d in spec["deployments"]
    ]
    return max(periods)


def plan_parameter(plan_path: str) -> str:
    """The plan path as deployments should hold it: relative to the project folder when inside it."""
    resolved = Path(plan_path).resolve()
    try:
        return str(resolved.relative_to(ROOT))
    except ValueError:
        return str(resolved)


# --- work pool and queues ---------------------------------------------------------------------------------------


def ensure_work_pools(client: Any, spec: dict[str, Any], check: bool) -> list[Step]:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    steps = []
    queues: dict[str, set[str]] = {}
    for deployment in spec["deployments"]:
        pool = deployment["work_pool"]
        queues.setdefault(pool["name"], set()).add(pool.get("work_queue_name") or "default")
    for pool, names in sorted(queues.items()):
        try:
            # Any type is fine once it exists (a kubernetes pool made with the base job template, say).
            steps.append(Step("ok", f"work pool {pool}", f"type {client.read_work_pool(pool).type}"))
        except ObjectNotFound:
            if not check:
                client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            steps.append(Step(_outcome("create", check), f"work pool {pool}", "type process"))
        for name in sorted(names):
            try:
                client.read_work_queue_by_name(name, work_pool_name=pool)
                steps.append(Step("ok", f"work queue {pool}/{name}"))
            except ObjectNotFound:
                if not check:
                    client.create_work_queue(name=name, work_pool_name=pool)
                steps.append(Step(_outcome("create", check), f"work queue {pool}/{name}"))
    return steps


# --- deployments ------------------------------------------------------------------------------------------------


def deployment_differences(found: Any, wanted: dict[str, Any], plan_path: str) -> list[str]:
    """What differs between a deployment on the server and its prefect.yaml entry (empty: nothing)."""
    pool = wanted["work_pool"]
    limit = wanted.get("concurrency_limit") or {}
    held = found.global_concurrency_limit  # the deployment's limit lives in a concurrency limit of its own
    params = {**wanted.get("parameters", {}), "plan_path": plan_path}
    checks = {
        "entrypoint": (found.entrypoint, wanted["entrypoint"]),
        "work pool": (found.work_pool_name, pool["name"]),
        "work queue": (found.work_queue_name, pool.get("work_queue_name") or "default"),
        "concurrency limit": (
            (held.limit, found.concurrency_options.collision_strategy.value) if held else None,
            (limit["limit"], limit.get("collision_strategy", "ENQUEUE")) if limit else None,
        ),
        "parameters": (found.parameters, params),
        "tags": (sorted(found.tags), sorted(wanted.get("tags", []))),
        "schedules": (
            sorted((s.schedule.cron, s.schedule.timezone) for s in found.schedules),
            sorted((s["cron"], s["timezone"]) for s in wanted.get("schedules", [])),
        ),
        "job env": ((found.job_variables or {}).get("env"), pool.get("job_variables", {}).get("env")),
    }
    return [f"{what} {have!r} -> {want!r}" for what, (have, want) in checks.items() if have != want]


def ensure_deployments(client: Any, spec: dict[str, Any], plan_path: str, check: bool) -> list[Step]:
    from prefect.exceptions import ObjectNotFound

    steps, stale = [], []
    for wanted in spec["deployments"]:
        name = deployment_name(spec, wanted)
        try:
            differences = deployment_differences(client.read_deployment_by_name(name), wanted, plan_path)
            outcome = "update"
        except ObjectNotFound:
            differences, outcome = ["not on the server"], "create"
        if not differences:
            steps.append(Step("ok", f"deployment {name}"))
            continue
        stale.append(name)
        steps.append(Step(_outcome(outcome, check), f"deployment {name}", "; ".join(differences)))
    if stale and not check:
        _prefect_deploy(spec, stale)
        # `prefect deploy` of several deployments takes no parameter overrides: set the plan path afterwards.
        from prefect.client.schemas.actions import DeploymentUpdate

        for wanted in spec["deployments"]:
            name = deployment_name(spec, wanted)
            if name in stale:
                parameters = {**wanted.get("parameters", {}), "plan_path": plan_path}
                found = client.read_deployment_by_name(name)
                client.update_deployment(found.id, DeploymentUpdate(parameters=parameters))
    return steps


def _prefect_deploy(spec: dict[str, Any], names: list[str]) -> None:
    """`prefect deploy` of these entries (flow/deployment) of `spec`, written to a file of its own since the
    plan's archivers are not in prefect.yaml; run from the project folder, against which entrypoints resolve.
    Its output only when it fails."""
    with tempfile.TemporaryDirectory(prefix="mongo-backup-setup-") as folder:
        prefect_file = Path(folder) / "prefect.yaml"
        prefect_file.write_text(yaml.safe_dump(spec, sort_keys=False))
        argv = [
            str(Path(sys.executable).parent / "prefect"),
            "--no-prompt",
            "deploy",
            "--prefect-file",
            str(prefect_file),
        ]
        for name in names:
            argv += ["--name", name]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"prefect deploy {' '.join(names)} failed:\n{done.stdout}\n{done.stderr}")


# --- blocks the plan names ----------------------------------------------------------------------------------------


def plan_blocks(plan: BackupPlan) -> Iterator[tuple[str, str, str]]:
    """(field, block type slug, block name) of every Prefect block the plan refers to."""

    def walk(node: Any, path: str) -> Iterator[tuple[str, str, str]]:
        if isinstance(node, BaseModel):
            for name in type(node).model_fields:
                value = getattr(node, name)
                where = f"{path}.{name}" if path else name
                if isinstance(value, str) and name == "credentials_block":
                    yield where, "aws-credentials", value
                elif isinstance(value, str) and name.endswith("_secret"):
                    yield where, "secret", value
                elif isinstance(value, BaseModel) and getattr(value, "kind", None) == "secret":
                    # A secret reference (inline / env / Secret block): the plan file's field is `<name>_secret`.
                    yield f"{path + '.' if path else ''}{value.source}", "secret", value.secret
                else:
                    yield from walk(value, where)
        elif isinstance(node, list | tuple):
            for index, item in enumerate(node):
                yield from walk(item, f"{path}.{index}")

    yield from walk(plan, "")


CREATE_HINT = {
    "aws-credentials": 'python -c "from prefect_aws import AwsCredentials; AwsCredentials('
    "aws_access_key_id='...', aws_secret_access_key='...', region_name='...').save('{name}')\"",
    "secret": "python -c \"from prefect.blocks.system import Secret; Secret(value='...').save('{name}')\"",
}


def check_blocks(client: Any, plan: BackupPlan) -> list[Step]:
    from prefect.exceptions import ObjectNotFound

    steps = []
    for field, slug, name in plan_blocks(plan):
        try:
            client.read_block_document_by_name(name, block_type_slug=slug, include_secrets=False)
            steps.append(Step("ok", f"{slug} block {name}", f"plan field {field}"))
        except ObjectNotFound:
            hint = CREATE_HINT[slug].format(name=name)
            steps.append(Step("MISSING", f"{slug} block {name}", f"plan field {field} names it; create it: {hint}"))
    return steps


# --- the command ------------------------------------------------------------------------------------------------


def setup(
    plan: BackupPlan,
    plan_path: str,
    *,
    webhook_url: str | None = None,
    notify_block: str | None = None,
    heartbeat_window_s: int | None = None,
    check: bool = False,
) -> list[Step]:
    """Every step against the server PREFECT_API_URL names; the report lines, in order."""
    from prefect.client.orchestration import get_client

    spec = plan_spec(project_spec(), plan)
    window = heartbeat_window_s or MISSED_HEARTBEATS * heartbeat_frequency_s(spec)
    with get_client(sync_client=True) as client:
        steps = ensure_work_pools(client, spec, check)
        steps += ensure_deployments(client, spec, plan_parameter(plan_path), check)
        steps += check_blocks(client, plan)
        block_step, block_id = ensure_notification_block(client, webhook_url, notify_block, check)
        steps.append(block_step)
        if block_id is not None:
            steps.append(ensure_automation(client, notify_automation(block_id), check))
        else:
            steps.append(Step("MISSING", f"automation {NOTIFY_AUTOMATION!r}", "needs the notification block"))
        steps.append(ensure_automation(client, crash_automation(window), check))
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.setup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", required=True, help="backup plan YAML (its path becomes the deployments' plan_path)")
    alerts = parser.add_mutually_exclusive_group()
    alerts.add_argument("--webhook-url", help=f"notify by POSTing JSON here (creates the block {WEBHOOK_BLOCK})")
    alerts.add_argument("--notify-block", help="notify through this existing block, TYPE/NAME (slack-webhook/ops)")
    parser.add_argument(
        "--heartbeat-window-s",
        type=int,
        help=f"crash a run after this long without a heartbeat (default {MISSED_HEARTBEATS} heartbeat periods)",
    )
    parser.add_argument("--check", action="store_true", help="only report what is missing or differs")
    args = parser.parse_args(argv)
    plan = load_plan_or_report("setup", args.plan)
    if plan is None:
        return 2
    steps = setup(
        plan,
        args.plan,
        webhook_url=args.webhook_url,
        notify_block=args.notify_block,
        heartbeat_window_s=args.heartbeat_window_s,
        check=args.check,
    )
    for step in steps:
        print(step)
    missing = [s for s in steps if s.outcome == "MISSING" or (args.check and s.outcome != "ok")]
    print(f"setup: {len(missing)} missing" if missing else "setup: everything in place")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
