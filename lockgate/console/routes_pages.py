"""The read-only pages: Overview (and its chart data), Usage (and CSV), Request log, Deployments, Audit log.

Usage figures come from the same function as GET /admin/usage (usage/queries.report, the daily
roll-ups), so the page, its CSV and the JSON API agree by construction.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from lockgate.console.forms import FormError
from lockgate.console.queries import LogFilter, daily_totals, log_detail, log_page, recent_failures, top_spend
from lockgate.console.sessions import Session
from lockgate.console.web import Console
from lockgate.errors import NotFound
from lockgate.usage.queries import DEFAULT_DAYS, GROUPS, parse_day, report

USAGE_PAGE = 50  # groups per usage page (like every list); the CSV has them all
CSV_FIELDS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_usd",
    "cost_unknown_requests",
    "errors",
    "latency_ms_p50",
    "latency_ms_p95",
)


def usage_query(params: Any) -> tuple[str, dt.date, dt.date]:
    """group_by, start and end as /admin/usage reads them (defaults: key, the last 30 days)."""
    group_by = params.get("group_by") or "key"
    if group_by not in GROUPS:
        raise FormError("group_by", f"one of {', '.join(GROUPS)}")
    today = dt.datetime.now(dt.UTC).date()
    try:
        end = parse_day(params["end"]) if params.get("end") else today
        start = parse_day(params["start"]) if params.get("start") else end - dt.timedelta(days=DEFAULT_DAYS - 1)
    except ValueError:
        raise FormError("start", "start and end must be dates like 2026-11-20") from None
    if start > end:
        raise FormError("start", "must not be after end")
    if (end - start).days > 3660:
        raise FormError("start", "at most ten years")
    return group_by, start, end


def usage_after(group_by: str, value: str | None) -> Any:
    """The usage page's cursor: the last group shown (a date for group_by=day; '' is the "(none)" group)."""
    if value is None or (not value and group_by == "day"):
        return None
    if len(value) > 200:
        raise FormError("after", "not a page cursor from this console")
    if group_by == "day":
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise FormError("after", "not a page cursor from this console") from None
    return value


def _window(days: list[dict[str, Any]], today: dt.date, n: int) -> dict[str, float]:
    first = (today - dt.timedelta(days=n - 1)).isoformat()
    rows = [d for d in days if d["day"] >= first]
    requests = sum(d["requests"] for d in rows)
    errors = sum(d["errors"] for d in rows)
    return {
        "cost_usd": sum(d["cost_usd"] for d in rows),
        "requests": requests,
        "errors": errors,
        "error_rate": (errors / requests) if requests else 0.0,
    }


def add(router: APIRouter, console: Console, viewer: Any) -> None:
    @router.get("")
    @router.get("/")
    async def overview(request: Request, session: Session = Depends(viewer)) -> Response:
        engine = console.engine(request)
        today = dt.datetime.now(dt.UTC).date()
        start = today - dt.timedelta(days=29)
        groups = ("key", "team", "model")
        # Four independent roll-up queries, on four pooled connections at once.
        days, *top_rows = await asyncio.gather(
            daily_totals(engine, start, today), *(top_spend(engine, GROUPS[g], start, today) for g in groups)
        )
        windows = {label: _window(days, today, n) for label, n in (("today", 1), ("7 days", 7), ("30 days", 30))}
        tops = dict(zip(groups, top_rows))
        return console.render(
            request, "overview.html", windows=windows, tops=tops, start=start.isoformat(), end=today.isoformat()
        )

    @router.get("/overview.json")
    async def overview_series(request: Request, session: Session = Depends(viewer)) -> Response:
        today = dt.datetime.now(dt.UTC).date()
        days = await report(console.engine(request), "day", today - dt.timedelta(days=29), today)
        by_day = {d["day"]: d for d in days}
        series: dict[str, list[Any]] = {"x": [], "cost_usd": [], "requests": [], "p50": [], "p95": []}
        for i in range(30):
            day = today - dt.timedelta(days=29 - i)
            d = by_day.get(day.isoformat())
            series["x"].append(int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()))
            series["cost_usd"].append(d["cost_usd"] if d else 0)
            series["requests"].append(d["requests"] if d else 0)
            series["p50"].append(d["latency_ms_p50"] if d else None)
            series["p95"].append(d["latency_ms_p95"] if d else None)
        return Response(orjson.dumps(series), media_type="application/json")

    @router.get("/usage")
    async def usage(request: Request, session: Session = Depends(viewer)) -> Response:
        group_by, start, end = usage_query(request.query_params)
        after = usage_after(group_by, request.query_params.get("after"))
        field = GROUPS[group_by]
        # A page of groups at a time (keyset on the group), so 100,000 keys are not one page.
        rows = await report(console.engine(request), group_by, start, end, after=after, limit=USAGE_PAGE + 1)
        more = len(rows) > USAGE_PAGE
        rows = rows[:USAGE_PAGE]
        params = {"group_by": group_by, "start": start.isoformat(), "end": end.isoformat()}
        return console.render(
            request,
            "usage.html",
            rows=rows,
            next=(rows[-1][field] or "") if more else None,
            params=params,
            group_by=group_by,
            field=GROUPS[group_by],
            groups=tuple(GROUPS),
            start=start,
            end=end,
        )

    @router.get("/usage.csv")
    async def usage_csv(request: Request, session: Session = Depends(viewer)) -> Response:
        group_by, start, end = usage_query(request.query_params)
        rows = await report(console.engine(request), group_by, start, end)
        field = GROUPS[group_by]
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([field, *CSV_FIELDS])
        for row in rows:
            writer.writerow([_cell(row[field]), *(_cell(row[f]) for f in CSV_FIELDS)])
        filename = f"lockgate-usage-{group_by}-{start.isoformat()}-{end.isoformat()}.csv"
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{filename}"'},
        )

    @router.get("/logs")
    async def logs(request: Request, session: Session = Depends(viewer)) -> Response:
        filters = LogFilter.from_query(request.query_params)
        page = await log_page(console.engine(request), filters, request.query_params.get("after"))
        params = {k: v for k, v in request.query_params.items() if k != "after" and v}
        return console.render(request, "logs.html", page=page, f=filters, params=params)

    @router.get("/logs/{request_id}")
    async def log_entry(request_id: str, request: Request, session: Session = Depends(viewer)) -> Response:
        row, attempts = await log_detail(console.engine(request), request_id[:64])
        if row is None:
            raise NotFound("No request with that id (records are written within a second or two).")
        return console.render(request, "log.html", row=row, attempts=attempts)

    @router.get("/deployments")
    async def deployments(request: Request, session: Session = Depends(viewer)) -> Response:
        gateway = request.app.state.gateway
        failures: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for f in await recent_failures(console.engine(request)):
            failures.setdefault((f["model"] or "", f["deployment"] or ""), []).append(f)
        return console.render(
            request,
            "deployments.html",
            groups=gateway.router.describe(),
            failures=failures,
            shared=gateway.config.router.cooldown.backend == "redis",
        )

    @router.get("/audit")
    async def audit(request: Request, session: Session = Depends(viewer)) -> Response:
        q = request.query_params
        before = q.get("before")
        if before is not None and not before.isdigit():
            raise FormError("before", "not a page cursor from this console")
        filters = {k: (q.get(k) or "").strip()[:200] or None for k in ("action", "actor", "target_id", "outcome")}
        rows = await console.audit(request).page(before_id=int(before) if before else None, limit=51, **filters)
        more = len(rows) > 50
        rows = rows[:50]
        params = {k: v for k, v in filters.items() if v}
        return console.render(
            request, "audit.html", rows=rows, next=rows[-1]["id"] if more else None, filters=filters, params=params
        )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    # A cell a spreadsheet would run as a formula (CSV injection) is quoted as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
