"""Field types for admin request bodies that mean what the spec says.

JSON Schema counts 5.0 as an integer and never counts `true` as a number; pydantic's lax mode would take
`false` as a budget of 0 and an epoch number as a timestamp. These types take exactly what the spec states.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, Strict

# The database column is a 32-bit integer (PostgreSQL): larger is a 400, not a failed insert.
INT32_MAX = 2**31 - 1


def whole(value: Any) -> Any:
    """An integral float as its int (JSON Schema's integer); a boolean is refused by the strict int after."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _stamp_text(value: Any) -> Any:
    if value is not None and not isinstance(value, str | dt.datetime):
        raise ValueError("must be an ISO 8601 date-time string, e.g. 2026-12-31T00:00:00Z")
    return value


# A limit: a whole number 1 .. 2^31-1 (5 or 5.0, never true or "5"). The bounds sit inside the Annotated
# so that they reach the JSON schema as minimum/maximum.
Limit = Annotated[int, Strict(), Field(ge=1, le=INT32_MAX), BeforeValidator(whole)]
# Money: a number >= 0 (5 or 5.5, never false or "5").
Money = Annotated[float, Strict(), Field(ge=0)]
# A timestamp as text (unix seconds are refused: the spec says date-time).
Stamp = Annotated[dt.datetime, BeforeValidator(_stamp_text)]
