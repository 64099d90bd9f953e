"""The one retry policy of the flows, in two layers that never overlap.

- On the wire, inside a step: botocore's standard retry mode for S3 (`mongobackup.s3.WIRE_RETRIES`: 4
  attempts with backoff on throttling, 5xx and connection faults) and pymongo's own retryable reads.
- Around a step: Prefect task retries (`retrying`), with exponential backoff and jitter from the plan's
  `retries` section, and only when the step failed with an error the core marked transient
  (`mongobackup.errors.is_transient`). An error the core does not recognise is permanent: it fails at once,
  so bad credentials, a missing bucket, an unknown key or a refused parameter are reported in seconds.
"""

from __future__ import annotations

from typing import Any

from prefect import Task
from prefect.client.schemas.objects import State, TaskRun

from mongobackup.errors import is_transient
from mongobackup.plan import BackupPlan


def retry_condition(task: Task, task_run: TaskRun, state: State) -> bool:
    """Prefect's `retry_condition_fn`: retry only an error the core marked transient."""
    try:
        state.result(raise_on_failure=True)
    except BaseException as exc:
        return is_transient(exc)
    return False


def retrying(plan: BackupPlan, **options: Any) -> dict[str, Any]:
    """Task options for a network step: exponential backoff with jitter, transient faults only."""
    from prefect.tasks import exponential_backoff

    return {
        "retries": plan.retries.attempts,
        "retry_delay_seconds": exponential_backoff(backoff_factor=plan.retries.backoff_s),
        "retry_jitter_factor": plan.retries.jitter,
        "retry_condition_fn": retry_condition,
        **options,
    }
