"""Pure conversions: a RequestRecord to a row, rows to daily roll-ups, latency to log buckets."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from lockgate.records import RequestRecord

Row = dict[str, Any]
GroupKey = tuple[str, str, str, str]  # (day ISO, key_id, team, model); '' for none

MAX_ERROR_MESSAGE = 500
# Latency buckets grow by 10%: a percentile read from roll-ups is within ~5% of the true value.
BUCKET_RATIO = 1.1
_LOG_RATIO = math.log(BUCKET_RATIO)


def to_row(record: RequestRecord) -> Row:
    """A JSON-safe row (it may be spooled to disk) with exactly the usage_records columns."""
    message = record.error_message
    if message and len(message) > MAX_ERROR_MESSAGE:
        message = message[:MAX_ERROR_MESSAGE] + "…"
    cost = getattr(record, "cost_usd", None)
    return {
        "request_id": record.request_id,
        "parent_request_id": record.parent_request_id,
        "attempt": record.attempt,
        "started_at": record.started_at,  # unix seconds; a datetime only when written
        "endpoint": record.endpoint,
        "model": record.public_model,
        "key_id": record.key_id,
        "user_id": record.user,
        "team": record.team,
        "provider": record.provider,
        "deployment": record.deployment,
        "upstream_model": record.upstream_model,
        "status": record.status,
        "error_type": record.error_type,
        "error_message": message,
        "streamed": record.streamed,
        "partial": record.partial,
        "usage_estimated": record.usage_estimated,
        "attempts": record.attempts,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "cached_tokens": record.cached_tokens,
        "cache_creation_tokens": record.cache_creation_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "cost_usd": cost,
        "cost_unknown": cost is None,
        "latency_ms": record.latency_ms,
        "ttft_ms": record.ttft_ms,
    }


def utc_datetime(unix_s: float) -> dt.datetime:
    """Naive UTC (the column is `timestamp without time zone`, in UTC on both back-ends)."""
    return dt.datetime.fromtimestamp(unix_s, dt.UTC).replace(tzinfo=None)


def for_insert(row: Row) -> Row:
    return {**row, "started_at": utc_datetime(row["started_at"])}


def latency_bucket(ms: float) -> int:
    return 0 if ms <= 1.0 else int(math.log(ms) / _LOG_RATIO)


def bucket_value(bucket: int) -> float:
    """The geometric middle of a bucket, in ms."""
    return BUCKET_RATIO ** (bucket + 0.5) if bucket > 0 else 1.0


def group_key(row: Row) -> GroupKey:
    day = utc_datetime(row["started_at"]).date().isoformat()
    return (day, row["key_id"] or "", row["team"] or "", row["model"] or "")


def rollups(rows: list[Row]) -> tuple[list[Row], list[Row]]:
    """Daily sums and latency histogram rows for the requests' own records.

    Per-attempt records (those with a parent) are stored raw but do not count
    as requests: their request is counted once, by its own record.
    """
    daily: dict[GroupKey, Row] = {}
    hist: dict[tuple[GroupKey, int], int] = {}
    for row in rows:
        if row["parent_request_id"] is not None:
            continue
        key = group_key(row)
        agg = daily.get(key)
        if agg is None:
            agg = daily[key] = {
                "requests": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0,
                "cached_tokens": 0, "cache_creation_tokens": 0, "reasoning_tokens": 0,
                "cost_usd": 0.0, "cost_unknown": 0,
            }  # fmt: skip
        agg["requests"] += 1
        agg["errors"] += 1 if row["status"] >= 400 else 0
        for col in ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_creation_tokens", "reasoning_tokens"):
            agg[col] += row[col]
        if row["cost_usd"] is None:
            agg["cost_unknown"] += 1
        else:
            agg["cost_usd"] += row["cost_usd"]
        hk = (key, latency_bucket(row["latency_ms"]))
        hist[hk] = hist.get(hk, 0) + 1

    def keyed(k: GroupKey) -> Row:
        return {"day": dt.date.fromisoformat(k[0]), "key_id": k[1], "team": k[2], "model": k[3]}

    # Sorted, so concurrent writers lock roll-up rows in the same order (no deadlocks).
    daily_rows = [{**keyed(k), **v} for k, v in sorted(daily.items())]
    hist_rows = [{**keyed(k), "bucket": b, "count": n} for (k, b), n in sorted(hist.items())]
    return daily_rows, hist_rows


def percentile(histogram: dict[int, int], q: float) -> float | None:
    """The q-quantile (0..1) of a bucket histogram, as its bucket's middle value in ms."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return round(bucket_value(bucket), 1)
    return None


def by_dimension(daily_rows: list[Row], hist_rows: list[Row]) -> tuple[list[Row], list[Row]]:
    """The batch's roll-ups along one dimension at a time (usage_rollup, usage_rollup_latency).

    From the (day, key, team, model) rows `rollups` made: each adds to its day's overall row
    (dim "all", value '') and to its day's key, team and model rows. Sorted, like `rollups`, so
    concurrent writers take the rows' locks in one order.
    """
    from lockgate.usage.tables import DIM_COLUMN, ROLLUP_SUMS

    sums: dict[tuple[str, dt.date, str], Row] = {}
    counts: dict[tuple[str, dt.date, str, int], int] = {}
    for row in daily_rows:
        for dim, value in _dims(row, DIM_COLUMN):
            agg = sums.setdefault((dim, row["day"], value), dict.fromkeys(ROLLUP_SUMS, 0))
            for col in ROLLUP_SUMS:
                agg[col] += row[col]
    for row in hist_rows:
        for dim, value in _dims(row, DIM_COLUMN):
            k = (dim, row["day"], value, row["bucket"])
            counts[k] = counts.get(k, 0) + row["count"]
    sum_rows = [{"dim": d, "day": day, "value": v, **agg} for (d, day, v), agg in sorted(sums.items())]
    count_rows = [{"dim": d, "day": day, "value": v, "bucket": b, "count": n} for (d, day, v, b), n in sorted(counts.items())]
    return sum_rows, count_rows


def _dims(row: Row, columns: dict[str, str]) -> list[tuple[str, str]]:
    return [("all", ""), *((dim, row[col]) for dim, col in columns.items())]
