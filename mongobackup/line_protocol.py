"""InfluxDB line protocol: how an `Event` of `mongobackup.metrics` is written on the wire."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from mongobackup.metrics import MEASUREMENTS, Event, FieldValue

#: Timestamp precision of the line protocol we write (the `precision=` of the write endpoints). Nanoseconds
#: keep the microseconds of `Event.time`, so two runs never collapse into one point by rounding; a retried
#: write of the same event has the same timestamp and overwrites itself instead of adding a second point.
PRECISION = "ns"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _escape(text: str, specials: str) -> str:
    # Only the separators are escaped. InfluxDB (1.x and 2.x) does not unescape a doubled backslash in
    # names or tag values, so escaping backslashes there would store them doubled; a backslash is kept
    # as it is and only reads as an escape in front of a separator, which we escape ourselves anyway.
    for char in specials:
        text = text.replace(char, "\\" + char)
    return text


def _measurement(name: str) -> str:
    return _escape(name, ", ")


def _key(name: str) -> str:  # tag keys, tag values and field keys
    return _escape(name, ",= ")


def _field_value(value: FieldValue) -> str:
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)  # shortest round-trip form; exponents ("1e-05") are valid line protocol
    # Strings: a backslash and a double quote are the only escapes inside quotes, and the server unescapes
    # both, so the backslash must go first or it would double the quote's escape.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def timestamp_ns(when: datetime) -> int:
    """timestamp_ns is the Unix time of an aware datetime in integer nanoseconds (exact: no float math)."""
    return (when - _EPOCH) // timedelta(microseconds=1) * 1000


def to_line_protocol(event: Event) -> str:
    """to_line_protocol renders one event as an InfluxDB line (no trailing newline), timestamp in nanoseconds.

    Tags are sorted by key (what InfluxDB recommends, and a stable text for tests); fields follow the
    order of the measurement's spec.
    """
    spec = MEASUREMENTS[event.measurement]
    tags = "".join(f",{_key(name)}={_key(event.tags[name])}" for name in sorted(event.tags))
    fields = ",".join(
        f"{_key(name)}={_field_value(event.fields[name])}" for name in spec.fields if name in event.fields
    )
    return f"{_measurement(event.measurement)}{tags} {fields} {timestamp_ns(event.time)}"


def to_line_protocol_batch(events: Sequence[Event]) -> str:
    """to_line_protocol_batch is the body of one write request: one line per event."""
    return "\n".join(to_line_protocol(event) for event in events)
