"""The backup fan-out: one run of a deployment per instance, waited for until a deadline.

The parent runs on a queue of its own (prefect.yaml: `control`), so while it waits it holds no slot of the workers
that run the instance runs (queue `backups`): with N backup workers N instances run at once, with fewer they queue,
and the parent can never wait on itself. It waits at most the plan's deadline; then it fails naming the instances
that did not finish, and cancels those that never started (those running are left to finish and commit).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.states import Cancelled, Completed, Failed, State

from mongobackup.errors import one_line

#: How often the parent reads its children's states.
POLL_S = 2.0


@dataclass
class Child:
    """One instance's run, as the parent last saw it."""

    instance: str
    flow_run_id: Any
    name: str
    state: State | None = None

    @property
    def final(self) -> bool:
        return self.state is not None and self.state.is_final()

    @property
    def started(self) -> bool:
        return self.state is not None and (self.state.is_running() or self.state.is_final())


def fan_out(
    deployment: str,
    plan_path: str,
    when: datetime,
    instances: Sequence[str],
    *,
    run_name: str,
    deadline: timedelta,
    parameter: str = "instances",
) -> State:
    """One run of `deployment` per instance, all for the scheduled time `when` (so the same tier), named
    `<run_name>-<instance>`; Completed when all complete, else Failed naming each instance that did not.

    `parameter`: the flow parameter that takes the one name (the snapshot flow's is `sources`)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    logger = get_run_logger()
    children = []
    for instance in instances:
        run = run_deployment(
            deployment,
            parameters={"plan_path": plan_path, "at": when.isoformat(), parameter: [instance]},
            flow_run_name=f"{run_name}-{instance}",
            timeout=0,
        )
        children.append(Child(instance, run.id, run.name))
    logger.info("fanned out %d instance runs of %s: %s", len(children), deployment, ", ".join(c.name for c in children))
    give_up = time.monotonic() + deadline.total_seconds()
    with get_client(sync_client=True) as client:
        while True:
            for child in children:
                if not child.final:
                    child.state = client.read_flow_run(child.flow_run_id).state
            if all(c.final for c in children) or time.monotonic() >= give_up:
                break
            time.sleep(POLL_S)
        late = [c for c in children if not c.final]
        for child in late:
            if not child.started:
                message = f"not started within the fan-out deadline of {_hours(deadline)}"
                client.set_flow_run_state(child.flow_run_id, Cancelled(message=message), force=True)
    _publish(children, deployment)
    return _verdict(children, late, deadline)


def _verdict(children: list[Child], late: list[Child], deadline: timedelta) -> State:
    failed = [c for c in children if c.final and not c.state.is_completed()]
    parts = []
    if late:
        parts.append(
            f"deadline of {_hours(deadline)} passed with {len(late)} of {len(children)} instances unfinished: "
            + ", ".join(f"{c.instance} ({'still running' if c.started else 'never started, cancelled'})" for c in late)
        )
    if failed:
        parts.append(
            f"{len(failed)} of {len(children)} instance runs failed: "
            + ", ".join(f"{c.instance} ({c.state.name})" for c in failed)
        )
    if parts:
        return Failed(message="; ".join(parts))
    return Completed(message=f"{len(children)} instance runs completed")


def _publish(children: list[Child], deployment: str) -> None:
    create_table_artifact(
        table=[
            {
                "state": c.state.name if c.state else "Unknown",
                "instance": c.instance,
                "flow run": c.name,
                "message": one_line(c.state.message or "" if c.state else "", 120),
            }
            for c in children
        ],
        key="backup-fan-out",
        description=f"Instance runs of {deployment}",
    )


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g} h" if hours >= 1 else f"{span.total_seconds():g} s"
