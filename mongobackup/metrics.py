"""The backup events: `Event`, one validated point of a measurement declared in `mongobackup.measurements`, and
the constructors the code writes events with.

The names and specs are re-exported here, so that `metrics.INSTANCE`, `metrics.MEASUREMENTS` and the like keep
reading as one vocabulary with the constructors; `mongobackup.line_protocol` writes an `Event` on the wire.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from mongobackup.errors import one_line
from mongobackup.measurements import (
    AGE_H,
    BACKUP_AGE_H,
    BYTES,
    DATABASE,
    DOCS,
    DOWNLOAD_S,
    DURATION_S,
    ENTRIES,
    ERROR,
    ERROR_MAX_CHARS,
    GAP_S,
    INDEX,
    INSTANCE,
    INSTANCE_BACKUP_COMPLETED,
    INSTANCE_BACKUP_FAILED,
    INSTANCE_BACKUP_STALE,
    INSTANCE_OPLOG_ARCHIVED,
    INSTANCE_OPLOG_GAP,
    INSTANCE_OPLOG_LAG,
    INSTANCE_RESTORE_DRILL,
    LAG_S,
    MEASUREMENTS,
    RESTORE_MB_S,
    RESTORE_S,
    SNAPSHOT_BYTES,
    SNAPSHOT_COMPLETED,
    SNAPSHOT_FAILED,
    SOURCE,
    STAGE,
    THAW_WAIT_S,
    TIER,
    TOTAL_S,
    VALUE,
    VERIFY_S,
    FieldValue,
    MeasurementSpec,
)

__all__ = [
    "AGE_H",
    "BACKUP_AGE_H",
    "BYTES",
    "DATABASE",
    "DOCS",
    "DOWNLOAD_S",
    "DURATION_S",
    "ENTRIES",
    "ERROR",
    "ERROR_MAX_CHARS",
    "Event",
    "FieldValue",
    "GAP_S",
    "INDEX",
    "INSTANCE",
    "INSTANCE_BACKUP_COMPLETED",
    "INSTANCE_BACKUP_FAILED",
    "INSTANCE_BACKUP_STALE",
    "INSTANCE_OPLOG_ARCHIVED",
    "INSTANCE_OPLOG_GAP",
    "INSTANCE_OPLOG_LAG",
    "INSTANCE_RESTORE_DRILL",
    "LAG_S",
    "MEASUREMENTS",
    "MeasurementSpec",
    "RESTORE_MB_S",
    "RESTORE_S",
    "SNAPSHOT_BYTES",
    "SNAPSHOT_COMPLETED",
    "SNAPSHOT_FAILED",
    "SOURCE",
    "STAGE",
    "THAW_WAIT_S",
    "TIER",
    "TOTAL_S",
    "VALUE",
    "VERIFY_S",
    "backup_completed",
    "backup_failed",
    "backup_stale",
    "instance_completed",
    "one_line",
    "oplog_archived",
    "oplog_gap",
    "oplog_lag",
    "snapshot_completed",
    "snapshot_failed",
]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class Event:
    """Event is one point: a declared measurement, its tags and fields, and an aware time (kept in UTC).

    Construction validates everything the line protocol cannot carry, so `line_protocol.to_line_protocol` never
    produces a line a server would reject or misread.
    """

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time: datetime

    def __post_init__(self) -> None:
        spec = MEASUREMENTS.get(self.measurement)
        if spec is None:
            raise ValueError(f"unknown measurement {self.measurement!r}: declare it in mongobackup.metrics")
        # Copies: the caller's dicts must not change the event after it was checked.
        object.__setattr__(self, "tags", dict(self.tags))
        object.__setattr__(self, "fields", dict(self.fields))
        spec.check(self.tags, self.fields)
        for name, value in self.tags.items():
            _check_tag_value(self.measurement, name, value)
        for name, value in self.fields.items():
            _check_field_value(self.measurement, name, value)
        if self.time.tzinfo is None or self.time.utcoffset() is None:
            raise ValueError(f"measurement {self.measurement}: time {self.time.isoformat()} has no timezone")
        object.__setattr__(self, "time", self.time.astimezone(UTC))


def _check_tag_value(measurement: str, name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"measurement {measurement}: tag {name} must be str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"measurement {measurement}: tag {name} is empty (line protocol has no empty tags)")
    if "\n" in value or "\r" in value:
        raise ValueError(f"measurement {measurement}: tag {name} contains a line break")
    if value.endswith("\\"):
        # InfluxDB reads a backslash before the separator as escaping it; no escape sequence avoids that.
        raise ValueError(
            f"measurement {measurement}: tag {name} ends with a backslash, which line protocol cannot represent"
        )


def _check_field_value(measurement: str, name: str, value: FieldValue) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"measurement {measurement}: field {name} is {value} (line protocol has no NaN/inf)")
    if type(value) is int and not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"measurement {measurement}: field {name} = {value} does not fit in int64")
    if isinstance(value, str) and ("\n" in value or "\r" in value):
        raise ValueError(f"measurement {measurement}: field {name} contains a line break")


def _text(value: str | Enum) -> str:
    # A tier may arrive as an Enum; str() of a (str, Enum) member is "Tier.DAILY", not "daily".
    return str(value.value) if isinstance(value, Enum) else str(value)


def backup_completed(
    instance: str, database: str, tier: str | Enum, bytes: int, docs: int, duration_s: float, when: datetime
) -> Event:
    """backup_completed is the per-database success event, written after the manifest is committed.

    (`bytes` shadows the builtin inside this function only; the name matches the field it fills.)
    """
    return Event(
        measurement=INSTANCE_BACKUP_COMPLETED.name,
        tags={INSTANCE: instance, DATABASE: database, TIER: _text(tier)},
        # bytes/docs are not coerced: int() would quietly turn True into 1 and 2.7 into 2. A duration may
        # come as a whole number of seconds, and is a float field either way.
        fields={VALUE: True, BYTES: bytes, DOCS: docs, DURATION_S: float(duration_s)},
        time=when,
    )


def instance_completed(instance: str, when: datetime) -> Event:
    """instance_completed is `instance_backup_completed,instance=<rs> value=true`: every database succeeded.

    Only the instance tag and value=true, exactly the point the team's existing Grafana panel selects.
    """
    return Event(measurement=INSTANCE_BACKUP_COMPLETED.name, tags={INSTANCE: instance}, fields={VALUE: True}, time=when)


def backup_failed(
    instance: str, database: str | None, tier: str | Enum | None, stage: str, error: str, when: datetime
) -> Event:
    """backup_failed is the failure event; `error` must be redacted already (here it is flattened and cut).

    database and tier may be None for a failure of the whole instance (unreachable, listing failed).
    """
    tags = {INSTANCE: instance, STAGE: stage}
    if database is not None:
        tags[DATABASE] = database
    if tier is not None:
        tags[TIER] = _text(tier)
    return Event(
        measurement=INSTANCE_BACKUP_FAILED.name,
        tags=tags,
        fields={VALUE: 1, ERROR: one_line(error, ERROR_MAX_CHARS)},
        time=when,
    )


def backup_stale(instance: str, database: str | None, age_h: float | None, when: datetime) -> Event:
    """backup_stale is the watchdog's event: the newest committed backup of a database is too old or missing.

    `database` None: an instance backed up with `databases: all` has no backup of any database at all.
    `age_h` None: there is no committed backup, so there is no age (the field is left out, not zero).
    """
    tags = {INSTANCE: instance}
    if database is not None:
        tags[DATABASE] = database
    fields: dict[str, FieldValue] = {VALUE: 1}
    if age_h is not None:
        fields[AGE_H] = float(age_h)
    return Event(measurement=INSTANCE_BACKUP_STALE.name, tags=tags, fields=fields, time=when)


def snapshot_completed(
    kind: str,
    source: str,
    tier: str | Enum,
    bytes: int,
    snapshot_bytes: int,
    duration_s: float,
    index: int,
    when: datetime,
) -> Event:
    """snapshot_completed is `<kind>_snapshot_completed`: a snapshot was checked, stored and committed."""
    return Event(
        measurement=SNAPSHOT_COMPLETED[kind].name,
        tags={SOURCE: source, TIER: _text(tier)},
        fields={
            VALUE: True,
            BYTES: bytes,
            SNAPSHOT_BYTES: snapshot_bytes,
            DURATION_S: float(duration_s),
            INDEX: index,
        },
        time=when,
    )


def snapshot_failed(kind: str, source: str, tier: str | Enum | None, stage: str, error: str, when: datetime) -> Event:
    """snapshot_failed is `<kind>_snapshot_failed`; `error` must be redacted already (flattened and cut here)."""
    tags = {SOURCE: source, STAGE: stage}
    if tier is not None:
        tags[TIER] = _text(tier)
    return Event(
        measurement=SNAPSHOT_FAILED[kind].name, tags=tags, fields={VALUE: 1, ERROR: one_line(error)}, time=when
    )


def oplog_archived(instance: str, lag_s: float, entries: int, bytes: int, when: datetime) -> Event:
    """oplog_archived is the archiver's point per committed segment."""
    return Event(
        measurement=INSTANCE_OPLOG_ARCHIVED.name,
        tags={INSTANCE: instance},
        fields={VALUE: True, LAG_S: float(lag_s), ENTRIES: entries, BYTES: bytes},
        time=when,
    )


def oplog_gap(instance: str, gap_s: float, when: datetime) -> Event:
    """oplog_gap: entries of `gap_s` seconds were lost between two chains of the oplog archive."""
    return Event(
        measurement=INSTANCE_OPLOG_GAP.name,
        tags={INSTANCE: instance},
        fields={VALUE: 1, GAP_S: float(gap_s)},
        time=when,
    )


def oplog_lag(instance: str, lag_s: float | None, when: datetime) -> Event:
    """oplog_lag is the watchdog's event: the recovery point lag is too high (`lag_s` None: nothing archived)."""
    fields: dict[str, FieldValue] = {VALUE: 1}
    if lag_s is not None:
        fields[LAG_S] = float(lag_s)
    return Event(measurement=INSTANCE_OPLOG_LAG.name, tags={INSTANCE: instance}, fields=fields, time=when)
