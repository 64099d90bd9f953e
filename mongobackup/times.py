"""The one reading of a time given as `--at` (backup, restore, retention, status, watchdog, and their flows).

The rule: an ISO-8601 date or date-time; one without a zone is UTC, like the timestamps in the object keys.
The result is a plain aware `datetime` in UTC, not pendulum's: `line_protocol.timestamp_ns` divides `time - epoch`
by a timedelta, which a pendulum Interval refuses.
"""

from __future__ import annotations

from datetime import UTC, datetime


def parse_at(text: str | datetime | None, option: str = "--at") -> datetime:
    """`text` as an aware UTC time; now when it is None or empty. ValueError naming `option` otherwise.

    A datetime (a flow parameter from the run form) follows the same rule: without a zone it is UTC."""
    if isinstance(text, datetime):
        return (text if text.tzinfo else text.replace(tzinfo=UTC)).astimezone(UTC)
    if not text:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{option} {text!r}: not an ISO-8601 time; give e.g. 2026-01-01T02:00:00Z (without a zone: UTC)"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
