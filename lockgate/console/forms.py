"""Reading what a console form sent, and turning its text fields into typed values with clear errors.

Forms are `application/x-www-form-urlencoded` (no uploads), read with a size cap. A field that does
not parse raises FormError naming the field; the page shows the message (400), never a trace.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs

from starlette.requests import Request

MAX_FORM_BYTES = 64 * 1024


class FormError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


async def read_form(request: Request) -> dict[str, str]:
    """The posted fields (the last value of a repeated one); {} for an empty body."""
    cached = getattr(request.state, "console_form", None)
    if cached is not None:
        return dict(cached)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormError("form", "the form is too large")
    if body and ctype != "application/x-www-form-urlencoded":
        raise FormError("form", "send the form as application/x-www-form-urlencoded")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        raise FormError("form", "the form could not be read") from None
    form = {k: v[-1] for k, v in parsed.items()}
    request.state.console_form = form
    return dict(form)


def text(form: dict[str, str], name: str, *, max_len: int = 200, required: bool = False) -> str | None:
    value = form.get(name, "").strip()
    if not value:
        if required:
            raise FormError(name, "is required")
        return None
    if len(value) > max_len:
        raise FormError(name, f"at most {max_len} characters")
    return value


def integer(form: dict[str, str], name: str, *, minimum: int = 1) -> int | None:
    value = form.get(name, "").strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        raise FormError(name, "must be a whole number") from None
    if number < minimum or number > 10**12:
        raise FormError(name, f"must be at least {minimum}")
    return number


def money(form: dict[str, str], name: str) -> float | None:
    value = form.get(name, "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        raise FormError(name, "must be a number of US dollars") from None
    if not (0 <= number < 1e12):
        raise FormError(name, "must be zero or more")
    return number


def words(form: dict[str, str], name: str) -> list[str] | None:
    value = form.get(name, "")
    items = [w.strip() for w in value.replace("\n", ",").split(",") if w.strip()]
    if any(len(w) > 200 for w in items) or len(items) > 200:
        raise FormError(name, "too many or too long names")
    return items or None


def when(form: dict[str, str], name: str) -> dt.datetime | None:
    value = form.get(name, "").strip()
    if not value:
        return None
    try:
        stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FormError(name, "must be a date and time like 2026-12-31T23:59") from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def choice(form: dict[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    value = form.get(name, "").strip()
    if not value:
        return None
    if value not in choices:
        raise FormError(name, f"must be one of {', '.join(choices)}")
    return value
