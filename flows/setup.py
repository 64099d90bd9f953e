"""Set up (or check) everything the deployments need on a Prefect server, idempotently.

    python -m flows.setup --plan PLAN.yaml [--webhook-url URL | --notify-block TYPE/NAME] [--check]

Run it from the project folder (where prefect.yaml is) with PREFECT_API_URL set. It
- creates the work pool of prefect.yaml and its queues (`backups`, `control`) when missing;
- deploys each deployment of prefect.yaml that is missing or differs from the file (entrypoint, queue,
  concurrency limit, parameters with `plan_path` set to PLAN, schedules, tags), and leaves the others alone;
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
import ipaddress
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel

from flows.cli import load_plan_or_report
from mongobackup.plan import BackupPlan

ROOT = Path(__file__).resolve().parent.parent
#: The flows whose runs the automations watch (flow names, as the UI shows them).
WATCHED_FLOWS = ("backup", "snapshot", "firedrill", "watchdog", "retention", "oplog")
NOTIFY_AUTOMATION = "mongo-backup notify on failed or crashed runs"
CRASH_AUTOMATION = "mongo-backup crash runs without heartbeats"
WEBHOOK_BLOCK = "mongo-backup-alerts"
#: A run is crashed after this many heartbeats in a row did not arrive.
MISSED_HEARTBEATS = 3
TERMINAL_EVENTS = ("Completed", "Failed", "Cancelled", "Crashed")


@dataclass(frozen=True)
class Step:
    """One line of the report: what, and whether it was created, updated, already right, or is missing."""

    outcome: str  # created | updated | ok | MISSING | would create | would update
    what: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.outcome:<12} {self.what}" + (f": {self.detail}" if self.detail else "")


# --- prefect.yaml ----------------------------------------------------------------------------------------------


def project_spec(path: Path = ROOT / "prefect.yaml") -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


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
        _prefect_deploy(stale)
        # `prefect deploy` of several deployments takes no parameter overrides: set the plan path afterwards.
        from prefect.client.schemas.actions import DeploymentUpdate

        for wanted in spec["deployments"]:
            name = deployment_name(spec, wanted)
            if name in stale:
                parameters = {**wanted.get("parameters", {}), "plan_path": plan_path}
                found = client.read_deployment_by_name(name)
                client.update_deployment(found.id, DeploymentUpdate(parameters=parameters))
    return steps


def _outcome(verb: str, check: bool) -> str:
    return f"would {verb}" if check else f"{verb}d"


def _prefect_deploy(names: list[str]) -> None:
    """`prefect deploy` of these prefect.yaml entries (flow/deployment); its output only when it fails."""
    argv = [str(Path(sys.executable).parent / "prefect"), "--no-prompt", "deploy"]
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


# --- notification block and automations --------------------------------------------------------------------------


def _is_private(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_private or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ensure_notification_block(
    client: Any, webhook_url: str | None, notify_block: str | None, check: bool
) -> tuple[Step, Any]:
    """The block the notify automation sends through, and its id (None when there is none)."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.exceptions import ObjectNotFound

    if notify_block:
        slug, _, name = notify_block.partition("/")
        try:
            document = client.read_block_document_by_name(name, block_type_slug=slug, include_secrets=False)
            return Step("ok", f"notification block {notify_block}"), document.id
        except ObjectNotFound:
            return Step("MISSING", f"notification block {notify_block}", "create it in the UI (Blocks) first"), None
    what = f"notification block custom-webhook/{WEBHOOK_BLOCK}"
    try:
        existing = CustomWebhookNotificationBlock.load(WEBHOOK_BLOCK)
    except ValueError:
        existing = None
    if webhook_url is None:
        if existing is None:
            return Step("MISSING", what, "give --webhook-url URL, or --notify-block TYPE/NAME of your own"), None
        return Step("ok", what), existing._block_document_id
    wanted = _webhook_block(webhook_url)
    fields = set(CustomWebhookNotificationBlock.model_fields) - {"secrets"}
    if existing is not None and existing.model_dump(include=fields) == wanted.model_dump(include=fields):
        return Step("ok", what), existing._block_document_id
    verb = "update" if existing else "create"
    if check:
        return Step(_outcome(verb, check), what), getattr(existing, "_block_document_id", None)
    block_id = wanted.save(WEBHOOK_BLOCK, overwrite=True)
    return Step(_outcome(verb, check), what, f"POST to {urlsplit(webhook_url).netloc}"), block_id


def _webhook_block(url: str) -> Any:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    return CustomWebhookNotificationBlock(
        name=WEBHOOK_BLOCK,
        url=url,
        method="POST",
        json_data={"title": "{{subject}}", "text": "{{body}}"},
        allow_private_urls=_is_private(url),
    )


def _flows_related() -> dict[str, Any]:
    return {"prefect.resource.role": "flow", "prefect.resource.name": list(WATCHED_FLOWS)}


def notify_automation(block_id: Any) -> Any:
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    return AutomationCore(
        name=NOTIFY_AUTOMATION,
        description=f"Notifies when a run of {', '.join(WATCHED_FLOWS)} ends Failed or Crashed (flows.setup).",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=_flows_related(),
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            SendNotification(
                block_document_id=block_id,
                subject="Prefect: {{ flow.name }} run {{ flow_run.name }} is {{ flow_run.state.name }}",
                body="{{ flow.name }} run {{ flow_run.name }} ended {{ flow_run.state.name }}: "
                "{{ flow_run.state.message }}\n{{ flow_run|ui_url }}",
            )
        ],
    )


def crash_automation(window_s: int) -> Any:
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    return AutomationCore(
        name=CRASH_AUTOMATION,
        description="Marks a run Crashed when its heartbeats stop: its process died without telling the server.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{state}" for state in TERMINAL_EVENTS)},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=_flows_related(),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=window_s),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"No heartbeat for {window_s} s: the run's process died (killed, out of memory, machine "
                "lost) without reporting; see the worker's log",
            )
        ],
    )


def _comparable(automation: Any) -> dict[str, Any]:
    """The parts of an automation setup decides, as JSON (the trigger's own random id left out)."""
    dumped = json.loads(automation.model_dump_json(include={"name", "description", "enabled", "trigger", "actions"}))
    dumped["trigger"].pop("id", None)
    for key in ("after", "expect", "for_each"):  # sets: their order in JSON is arbitrary
        if isinstance(dumped["trigger"].get(key), list):
            dumped["trigger"][key] = sorted(dumped["trigger"][key])
    return dumped


def ensure_automation(client: Any, wanted: Any, check: bool) -> Step:
    found = client.read_automations_by_name(wanted.name)
    what = f"automation {wanted.name!r}"
    if found and _comparable(found[0]) == _comparable(wanted):
        return Step("ok", what)
    if check:
        return Step(_outcome("update" if found else "create", check), what)
    if found:
        client.update_automation(found[0].id, wanted)
        for duplicate in found[1:]:
            client.delete_automation(duplicate.id)
        return Step("updated", what)
    client.create_automation(wanted)
    return Step("created", what)


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

    spec = project_spec()
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
