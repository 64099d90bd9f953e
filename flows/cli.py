"""What every flow's command line does the same way: load the plan first, run the flow, report its state.

A bad plan is the user's to fix, not a run to retry: it is reported (exit 2) before any run starts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from mongobackup.plan import BackupPlan, PlanError, load_plan


def load_plan_or_report(prog: str, path: str) -> BackupPlan | None:
    """The plan, or None after printing the error that names the file and field."""
    try:
        return load_plan(path)
    except PlanError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return None


def run_flow(prog: str, flow: Callable[..., Any], **parameters: Any) -> int:
    """Runs `flow` in this process; prints its final state; 0 when it completed, 1 otherwise."""
    state = flow(**parameters, return_state=True)
    print(f"{prog}: {state.name}: {state.message or ''}")
    return 0 if state.is_completed() else 1
