"""What every flow's command line does the same way: load the plan first, run the flow, report its outcome.

A bad plan is the user's to fix, not a run to retry: it is reported (exit 2) before any run starts.

The exit status and the one-line summary follow what the flow itself did (what it stored and committed),
not Prefect's bookkeeping of it. Prefect is plumbing here: without PREFECT_API_URL it starts a temporary
server of its own (uvicorn over sqlite under PREFECT_HOME) and waits PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS
(20 s) for it. On a busy machine importing that server alone can take longer than that, and two temporary
servers over one PREFECT_HOME fight for the sqlite file ("database is locked"); either way the command used
to die with Prefect's traceback and exit 1, as if the backup had failed. Now:

    0  the flow completed                  1  the flow failed (its message says what)
    2  bad plan or arguments                3  Prefect itself failed before the flow said how it ended
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import Flow
from prefect.client.schemas.objects import State

from mongobackup.errors import one_line
from mongobackup.plan import BackupPlan, PlanError, load_plan

EXIT_COMPLETED, EXIT_FAILED, EXIT_USAGE, EXIT_PREFECT = 0, 1, 2, 3
#: How long a command line waits for Prefect's temporary server (when PREFECT_API_URL is not set and the
#: user did not set PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS): long enough for a loaded 2-core machine.
TEMPORARY_SERVER_STARTUP_S = 180


def load_plan_or_report(prog: str, path: str) -> BackupPlan | None:
    """The plan, or None after printing the error that names the file and field."""
    try:
        return load_plan(path)
    except PlanError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return None


def run_flow(prog: str, flow: Flow, **parameters: Any) -> int:
    """Runs `flow` in this process; prints one line saying how it ended; returns the exit status above."""
    returned: list[State] = []

    @functools.wraps(flow.fn)
    def body(*args: Any, **kwargs: Any) -> Any:
        outcome = flow.fn(*args, **kwargs)
        returned.append(outcome)  # the flow's own verdict, kept even if Prefect fails to record it
        return outcome

    # Prefect validates the parameters against the function's signature, resolving string annotations in the
    # function's module: the wrapper lives here, so it carries the flow's signature with the types resolved.
    body.__signature__ = inspect.signature(flow.fn, eval_str=True)  # type: ignore[attr-defined]
    runnable = flow.with_options()
    runnable.fn = body
    try:
        with _patient_temporary_server():
            recorded: State | BaseException = runnable(**parameters, return_state=True)
    except Exception as exc:  # the flow's own errors come back as a Failed state: this is Prefect's
        recorded = exc
    code, line = summary(prog, recorded, returned[-1] if returned else None)
    print(line, file=sys.stdout if code in (EXIT_COMPLETED, EXIT_FAILED) else sys.stderr)
    return code


def summary(prog: str, recorded: State | BaseException, returned: Any) -> tuple[int, str]:
    """The exit status and the line to print, from what Prefect recorded (a final state, or the exception its
    engine raised) and what the flow body returned (a State, or None when it never returned)."""
    outcome = returned if isinstance(returned, State) else None
    if isinstance(recorded, State) and (outcome is None or recorded.type == outcome.type):
        if recorded.is_crashed() or (outcome is None and not recorded.is_final()):
            return EXIT_PREFECT, f"{prog}: Prefect failed, not the {prog}: run {recorded.name}: {_flat(recorded)}"
        return (
            EXIT_COMPLETED if recorded.is_completed() else EXIT_FAILED
        ), f"{prog}: {recorded.name}: {_flat(recorded)}"
    prefect_said = (
        f"{type(recorded).__name__}: {one_line(recorded)}"
        if isinstance(recorded, BaseException)
        else f"it recorded the run as {recorded.name}: {_flat(recorded)}"
    )
    if outcome is None:
        return EXIT_PREFECT, (
            f"{prog}: Prefect failed, not the {prog}, before the run said how it ended ({prefect_said}); "
            "see what was stored with python -m flows.status"
        )
    return (EXIT_COMPLETED if outcome.is_completed() else EXIT_FAILED), (
        f"{prog}: {outcome.name}: {_flat(outcome)} (Prefect then failed, not the {prog}: {prefect_said})"
    )


def _flat(state: State) -> str:
    """A state's message on one line: the summary is one line however the message was written."""
    return one_line(state.message or "", limit=2000)


@contextmanager
def _patient_temporary_server() -> Iterator[None]:
    """Gives Prefect's temporary server TEMPORARY_SERVER_STARTUP_S to start, unless the user chose a timeout
    or a server of their own."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

    if PREFECT_API_URL.value() or "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in os.environ:
        yield
        return
    with temporary_settings({PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: TEMPORARY_SERVER_STARTUP_S}):
        yield
