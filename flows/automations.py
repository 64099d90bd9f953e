"""The notification block and the two automations `flows.setup` creates: notify when a watched flow's run ends
Failed or Crashed, and mark a run Crashed when its heartbeats stop."""

from __future__ import annotations

import ipaddress
import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flows.steps import Step, _outcome

#: The flows whose runs the automations watch (flow names, as the UI shows them).
WATCHED_FLOWS = ("backup", "snapshot", "firedrill", "watchdog", "retention", "oplog")
NOTIFY_AUTOMATION = "mongo-backup notify on failed or crashed runs"
CRASH_AUTOMATION = "mongo-backup crash runs without heartbeats"
WEBHOOK_BLOCK = "mongo-backup-alerts"
TERMINAL_EVENTS = ("Completed", "Failed", "Cancelled", "Crashed")


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
