"""No traceback for a run that failed on purpose.

Our flows end an expected failure (a database that could not be backed up, a RED status) by returning a Failed
state whose message names what failed, after logging one line per failed database. Run by a worker, Prefect's
engine then asks that state for its result, gets a `FailedRun` and logs "Engine execution exited with unexpected
exception" with a 40-line traceback of its own code, which says nothing the state message does not. This filter
drops exactly that record; any other exception, an unexpected one in our code included, keeps its traceback.
"""

from __future__ import annotations

import logging

ENGINE_MESSAGE = "Engine execution exited with unexpected exception"


class ExpectedFailureFilter(logging.Filter):
    """Drops the engine's traceback record when the exception is the FailedRun of a Failed state we returned."""

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.exceptions import FailedRun

        if record.getMessage() != ENGINE_MESSAGE or not record.exc_info:
            return True
        return not isinstance(record.exc_info[1], FailedRun)


def install() -> None:
    """Once per process (idempotent): on the logger Prefect's flow run loggers log through."""
    logger = logging.getLogger("prefect.flow_runs")
    if not any(isinstance(f, ExpectedFailureFilter) for f in logger.filters):
        logger.addFilter(ExpectedFailureFilter())
