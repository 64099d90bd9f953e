"""What a backup run reports: one row per (instance, database), the run's artifacts and its final state.

The table artifact is read in the Prefect UI at a laptop's width: the state comes first, then what was backed up
and how big it is (a human size), then a short cause for a failure; the object key, long and rarely needed at a
glance, comes last. The short cause is the first clause of the error; the whole error is in the run's logs (the
failed task logs it, and so does the failure hook that writes `instance_backup_failed`).
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Completed, Failed, State

from mongobackup.errors import one_line
from mongobackup.units import human_size

#: The row of a failure that concerns a whole instance (unreachable, listing failed): no database was reached.
WHOLE_INSTANCE = "(all databases)"
#: Where drivers start the diagnostics they append to a message (pymongo's timeouts and topology description).
_DIAGNOSTICS = (" (configured timeouts", ", Timeout: ", ", Topology Description", " Topology Description")
CAUSE_CHARS = 100


@dataclass
class BackupRow:
    """One line of the run's artifact table."""

    instance: str
    database: str
    tier: str
    key: str
    bytes: int = 0
    docs: int = 0
    duration_s: float = 0.0
    state: str = "Pending"
    error: str = ""


def short_cause(error: str, limit: int = CAUSE_CHARS) -> str:
    """The error's first clause: up to the diagnostics a driver appends, one line, at most `limit` characters."""
    cut = min((error.find(marker) for marker in _DIAGNOSTICS if marker in error), default=len(error))
    return one_line(error[:cut], limit)


def table(rows: list[BackupRow]) -> list[dict[str, object]]:
    """The table artifact's rows, columns in reading order."""
    return [
        {
            "state": r.state,
            "instance": r.instance,
            "database": r.database,
            "size": human_size(r.bytes) if r.state.startswith("Completed") else "",
            "docs": r.docs if r.state.startswith("Completed") else "",
            "seconds": r.duration_s if r.state.startswith("Completed") else "",
            "cause": short_cause(r.error) if r.error else "",
            "tier": r.tier,
            "key": r.key,
        }
        for r in rows
    ]


def markdown(rows: list[BackupRow], title: str) -> str:
    """The same rows as a markdown table; cells escaped so that no name turns into markup."""
    lines = [
        f"**{title}**",
        "",
        "| state | instance | database | size | docs | seconds | cause | key |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    for row in table(rows):
        key = f"`{row['key']}`" if row["key"] else ""
        cells = [row["state"], row["instance"], row["database"], row["size"], row["docs"], row["seconds"]]
        lines.append("| " + " | ".join(_md(str(c)) for c in cells) + f" | {_md(str(row['cause']))} | {key} |")
    return "\n".join(lines)


def _md(text: str) -> str:
    """Markdown-safe table cell text: pipes, asterisks, underscores and backticks escaped."""
    for char in "\\|*_`[]<>":
        text = text.replace(char, "\\" + char)
    return text


def publish(rows: list[BackupRow], tier: str, run_id: str) -> None:
    """The run's `backup-run` table and `backup-run-summary` markdown artifacts."""
    title = f"Backups of run {run_id} (tier {tier})"
    create_table_artifact(table=table(rows), key="backup-run", description=title)
    create_markdown_artifact(markdown=markdown(rows, title), key="backup-run-summary", description=title)


def final_state(rows: list[BackupRow]) -> State:
    """Failed when any backup failed or a stored backup has no success event; the message names each."""
    failed = [r for r in rows if r.state == "Failed"]
    unnotified = [r for r in rows if r.state == "Completed (notify failed)"]
    stored = len(rows) - len(failed)
    if failed or unnotified:
        parts = []
        if failed:
            parts.append(
                f"{len(failed)} of {len(rows)} backups failed: "
                + ", ".join(
                    # `<instance>/*`: the whole instance failed (unreachable, not listed), no database was reached
                    f"{r.instance}/{'*' if r.database == WHOLE_INSTANCE else r.database}"
                    for r in failed
                )
            )
        if unnotified:
            parts.append(f"{len(unnotified)} stored backups have no success event (InfluxDB write failed)")
        return Failed(message="; ".join(parts))
    return Completed(message=f"{stored} backups stored and committed")
