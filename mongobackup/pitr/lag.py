"""Recovery point lag from the bucket: per instance, now minus the newest archived oplog entry's time.

Status and the watchdog judge each instance of a plan with a `pitr` section, from a listing of its archive
alone (no manifest read, no MongoDB, no Prefect):

    GREEN  the newest archived entry is at most `pitr.max_lag_s` old, and no gap is open
    RED    nothing archived; the lag is above `pitr.max_lag_s` (the archiver stopped, or falls behind); or a
           gap is open: the oplog rolled over unarchived and some database of the instance has no backup
           finished after the gap yet (the next base backup closes it; restores to points before the gap
           keep working meanwhile).

The lag counts from the newest entry, so an instance without writes looks as if it lagged: MongoDB writes a
no-op entry every 10 s (the periodic no-op writer) precisely so that this never happens on a live primary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from mongobackup import metrics
from mongobackup.metrics import Event
from mongobackup.pitr.chain import OplogArchive, scan_archive
from mongobackup.pitr.keys import ts_datetime
from mongobackup.pitr.settings import PitrPlan
from mongobackup.storage import Storage


@dataclass(frozen=True)
class LagRow:
    """One instance's recovery point: how far behind the archive is, GREEN or RED, and why."""

    instance: str
    green: bool
    reason: str
    lag_s: float | None = None
    newest: datetime | None = None  # time of the newest archived entry
    open_gap: datetime | None = None  # the newest gap, while no base backup has closed it

    def to_json_dict(self) -> dict[str, object]:
        return {
            "instance": self.instance,
            "health": "GREEN" if self.green else "RED",
            "reason": self.reason,
            "lag_s": self.lag_s,
            "newest_archived": self.newest.isoformat() if self.newest else None,
            "open_gap": self.open_gap.isoformat() if self.open_gap else None,
        }


def judge_lag(
    settings: PitrPlan,
    archives: Mapping[str, OplogArchive],
    newest_backups: Mapping[str, Sequence[datetime | None]],
    now: datetime,
) -> list[LagRow]:
    """Rows for each instance of `archives`; `newest_backups[instance]` are the finish times of the newest
    committed backup of each of its expected databases (None: none), which close a gap once all are after it."""
    rows = []
    for instance, archive in archives.items():
        lag = archive.lag_seconds(now)
        if lag is None:
            rows.append(
                LagRow(instance, False, f"no oplog archived (is `python -m flows.oplog` running for {instance}?)")
            )
            continue
        newest = ts_datetime(archive.newest.last)  # type: ignore[union-attr]
        gap = ts_datetime(archive.gaps[-1]) if archive.gaps else None
        finished = newest_backups.get(instance, ())
        if gap is not None and finished and all(f is not None and f > gap for f in finished):
            gap = None  # every database has a base backup after the gap: the window is whole again
        problems = []
        if lag > settings.max_lag_s:
            problems.append(f"recovery point lag {lag:.0f} s (more than {settings.max_lag_s:g} s)")
        if gap is not None:
            problems.append(f"gap in the oplog archive before {gap:%Y-%m-%dT%H:%M:%SZ}: awaiting a base backup")
        rows.append(LagRow(instance, not problems, "; ".join(problems), round(lag, 1), newest, gap))
    return rows


def read_archives(storage: Storage, prefix: str, instances: Sequence[str]) -> dict[str, OplogArchive]:
    """One listing of `<prefix>oplog/<instance>/` per instance."""
    return {instance: scan_archive(storage, prefix, instance) for instance in instances}


def lag_events(rows: Sequence[LagRow], now: datetime) -> list[Event]:
    """One `instance_oplog_lag` event per RED row, timed at `now`."""
    return [metrics.oplog_lag(row.instance, row.lag_s, now) for row in rows if not row.green]


def lag_table(rows: Sequence[LagRow], max_lag_s: float) -> str:
    """The point-in-time section of the status table."""
    header = ("PITR", "INSTANCE", "LAG_S", "NEWEST ARCHIVED (UTC)", "NOTE")
    body = [
        (
            "GREEN" if row.green else "RED",
            row.instance,
            "-" if row.lag_s is None else f"{row.lag_s:.1f}",
            row.newest.strftime("%Y-%m-%d %H:%M:%S") if row.newest else "-",
            row.reason,
        )
        for row in sorted(rows, key=lambda r: (r.green, r.instance))
    ]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header) - 1)]
    lines = [
        ("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[-1]).rstrip()
        for line in (header, *body)
    ]
    red = sum(not row.green for row in rows)
    verdict = "all GREEN" if not red else f"{red} of {len(rows)} RED"
    return "\n".join([*lines, f"recovery point lag, max {max_lag_s:g} s: {verdict}"])
