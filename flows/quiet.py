"""No tracebacks for failures we expected and explained.

Our flows end an expected failure (a database that could not be backed up, a RED status) by returning a Failed
state whose message names what failed; the task that failed raised one of the core's errors (`BackupError`), whose
message names the instance, database, key or field at fault. Prefect logs both with tracebacks of its own and our
code, 40 lines that say nothing the message does not:

- run by a worker, the engine asks the returned Failed state for its result, gets a `FailedRun` and logs "Engine
  execution exited with unexpected exception" with its traceback: that record is dropped (the state's message
  is logged by the engine as "Finished in state Failed(...)");
- a task that raised a `BackupError` is logged as "Task run failed with exception: ..." with a traceback: the
  record keeps the whole error message and loses the traceback.

Any other exception, an unexpected one in our code included, keeps its traceback.
"""

from __future__ import annotations

import logging

ENGINE_MESSAGE = "Engine execution exited with unexpected exception"
TASK_MESSAGE = "Task run failed with exception"


class ExpectedFailureFilter(logging.Filter):
    """Drops the engine's FailedRun traceback; turns a task's BackupError traceback into its message alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.exceptions import FailedRun

        from mongobackup.errors import BackupError

        if not record.exc_info or record.exc_info[1] is None:
            return True
        exc = record.exc_info[1]
        message = record.getMessage()
        if message == ENGINE_MESSAGE and isinstance(exc, FailedRun):
            return False
        if message.startswith(TASK_MESSAGE) and isinstance(exc, BackupError):
            record.msg, record.args = f"Task run failed: {type(exc).__name__}: {exc}", ()
            record.exc_info, record.exc_text = None, None
        return True


def install() -> None:
    """Once per process (idempotent): on the loggers Prefect's flow and task run loggers log through."""
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, ExpectedFailureFilter) for f in logger.filters):
            logger.addFilter(ExpectedFailureFilter())
