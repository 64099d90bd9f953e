"""What a fire drill run shows in Prefect: its table and markdown artifacts, and the run's final state.

One row per backup drilled (the newest of each database, and each tier's archived pick), each with its tier,
why it was picked, the backup's age and the time of each stage; the thaw run's table says what was asked.
"""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Completed, Failed, State

from mongobackup.thaw import ThawOutcome
from tasks.drill import DrillRow

_STAGES = ("thaw_wait_s", "download_s", "restore_s", "verify_s", "total_s")


def publish_drill(rows: list[DrillRow], run_id: str, max_age_h: float) -> None:
    table = [
        {
            "instance": r.instance,
            "database": r.database,
            "tier": r.tier,
            "pick": r.pick,
            "key": r.key,
            "age_h": r.age_h,
            "verdict": r.verdict,
            "state": r.state,
            "error": r.error,
            "docs": r.docs,
            "bytes": r.bytes,
            "duration_s": r.duration_s,
            "restore_mb_s": r.restore_mb_s,
            **{stage: getattr(r, stage) for stage in _STAGES},
        }
        for r in rows
    ]
    create_table_artifact(table=table, key="restore-drill", description=f"Restore drill {run_id}")
    lines = [
        f"Restore drill {run_id}: the newest committed backup of each database (max age {max_age_h:g} h) and one "
        "archived backup per tier",
        "",
        "| instance | database | tier | pick | backup key | age h | verdict | thaw wait s | download s | restore s "
        "| verify s | total s | MB/s | state |",
        "|---|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r.instance} | {r.database} | {r.tier or '-'} | {r.pick} | `{r.key or '-'}` | {_hours(r.age_h)} | "
        f"{r.verdict} | {r.thaw_wait_s:.1f} | {r.download_s:.1f} | {r.restore_s:.1f} | {r.verify_s:.1f} | "
        f"{r.total_s:.1f} | {r.restore_mb_s:.1f} | {r.state}{': ' + r.error if r.error else ''} |"
        for r in rows
    ]
    create_markdown_artifact(
        markdown="\n".join(lines), key="restore-drill-summary", description=f"Restore drill {run_id}"
    )


def drill_state(rows: list[DrillRow], notified: bool) -> State:
    """Completed when every row passed and the events were written; Failed naming each failed backup."""
    failed = [r for r in rows if not r.passed]
    if not rows:
        return Failed(message="nothing to drill: the plan expects no database with a backup")
    if failed or not notified:
        parts = (
            [
                f"{len(failed)} of {len(rows)} drills failed: "
                + ", ".join(f"{r.instance}/{r.database} ({r.tier or 'no backup'}, {r.pick})" for r in failed)
            ]
            if failed
            else []
        )
        if not notified:
            parts.append("the drill events could not be written")
        return Failed(message="; ".join(parts))
    return Completed(message=f"{len(rows)} backups restored and verified")


def publish_thaws(rows: list[tuple[DrillRow, ThawOutcome | None, str]], drill_at: str) -> State:
    """The thaw run's table (one row per backup the drill will restore) and its state: Failed naming each
    backup whose thaw could not be asked for."""
    table = [
        {
            "instance": row.instance,
            "database": row.database,
            "tier": row.tier,
            "pick": row.pick,
            "key": row.key,
            "asked": bool(outcome and outcome.requested),
            "thaw": outcome.describe() if outcome is not None else f"FAILED: {error}",
        }
        for row, outcome, error in rows
    ]
    create_table_artifact(table=table, key="restore-drill-thaw", description=f"Thaws for the drill of {drill_at}")
    asked = sum(1 for _, outcome, _ in rows if outcome is not None and outcome.requested)
    under_way = sum(1 for _, o, _ in rows if o is not None and o.before.archived and not o.requested)
    failed = [f"{row.instance}/{row.database} ({row.tier}): {error}" for row, outcome, error in rows if outcome is None]
    message = (
        f"{asked} thaws asked, {under_way} already thawing or thawed, "
        f"{len(rows) - asked - under_way - len(failed)} backups need none (drill at {drill_at})"
    )
    if failed:
        return Failed(message=f"{message}; {len(failed)} failed: " + "; ".join(failed))
    return Completed(message=message)


def _hours(age_h: float | None) -> str:
    return "-" if age_h is None else f"{age_h:.1f}"
