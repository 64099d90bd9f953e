"""A run that ends Failed by returning a Failed state logs no engine traceback; an unexpected error still does."""

from __future__ import annotations

import logging

import pytest

import flows  # noqa: F401  (installs the filter, as the worker's engine does when it loads a flow)
from flows.quiet import ENGINE_MESSAGE


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def engine_log():
    """What reaches the handlers of the logger the engine's error_logger writes to."""
    logger = logging.getLogger("prefect.flow_runs")
    records = Records()
    logger.addHandler(records)
    try:
        yield logger, records.messages
    finally:
        logger.removeHandler(records)


def run_as_a_worker_would(body, logger):
    """The engine's entry as `python -m prefect.engine` calls it: result wanted, errors to the run's logger."""
    from prefect import flow
    from prefect.flow_engine import run_flow

    return run_flow(flow(name="quiet-check")(body), error_logger=logger)


def test_a_failed_state_we_return_leaves_no_engine_traceback(prefect, engine_log):
    from prefect.exceptions import FailedRun
    from prefect.states import Failed

    logger, messages = engine_log
    with pytest.raises(FailedRun):
        run_as_a_worker_would(lambda: Failed(message="1 of 2 backups failed: rs-a/shop"), logger)
    assert ENGINE_MESSAGE not in messages


def test_an_unexpected_error_keeps_its_traceback(prefect, engine_log):
    def broken():
        raise ZeroDivisionError("a bug")

    logger, messages = engine_log
    with pytest.raises(ZeroDivisionError):
        run_as_a_worker_would(broken, logger)
    assert ENGINE_MESSAGE in messages


def test_a_task_failing_with_a_core_error_logs_its_message_without_traceback(prefect):
    from prefect import flow, task

    from mongobackup.errors import SourceError

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("prefect.task_runs")
    logger.addHandler(handler)

    @task(name="list-databases")
    def unreachable():
        raise SourceError("rs-down", None, "unreachable: 127.0.0.1:9: connection refused")

    @task(name="buggy")
    def buggy():
        raise KeyError("a bug")

    @flow(name="quiet-tasks")
    def run():
        return unreachable(return_state=True), buggy(return_state=True)

    try:
        run()
    finally:
        logger.removeHandler(handler)
    failed = [r for r in records if r.levelno >= logging.ERROR]
    ours = next(r for r in failed if "SourceError" in r.getMessage())
    assert (
        ours.getMessage()
        == "Task run failed: SourceError: instance rs-down: unreachable: 127.0.0.1:9: connection refused"
    )
    assert ours.exc_info is None
    bug = next(r for r in failed if "KeyError" in r.getMessage())
    assert bug.exc_info is not None  # an unexpected error keeps its traceback
