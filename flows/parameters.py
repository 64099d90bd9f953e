"""Parameter types that make the Prefect UI's run form usable.

A parameter typed `datetime | None` shows in the form as a "date-time | None" switch that reads 'Property is type
"None"' until one picks the other side; `When` is the same value with the schema of a plain date-time, so the form
shows a date picker, and leaving it empty still means None (the run's scheduled time). Prefect still validates
and converts what is given (an ISO-8601 text from the command line or `prefect deployment run -p at=...`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import WithJsonSchema

When = Annotated[datetime | None, WithJsonSchema({"type": "string", "format": "date-time"})]
