"""--soak: memory, latency and accounting under sustained load.  Alternating
non-streaming and streaming wrk rounds at concurrency 32 for the given
seconds, the server's resident memory (its process tree's VmRSS) sampled after
each round; per minute: RSS at its end, p50/p99 per mode, requests and errors;
RSS growth per 100k requests over the last 20 minutes (or the last two thirds
of a shorter soak), p99 drift (last minute against the second), and for
Lockgate the usage records its SQLite store gained against the requests the
upstream answered."""

from __future__ import annotations

import os
import sqlite3
import statistics
import time
from pathlib import Path

from common import log
from measure import body_files, run_wrk, tree_rss_kb

PATH = "/v1/chat/completions"
MODES = ("nonstream", "stream")


def round_seconds(args) -> int:
    """Seconds per round: --soak-round, else a 15th of the soak, between 1 and 5
    (wrk counts whole seconds)."""
    s = args.soak_round or min(5.0, max(1.0, args.soak / 15))
    return max(1, round(s))


def soak_target(name: str, args, port: int, server_pid: int, upstream_pid: int, uport: int, tmp: Path) -> dict:
    bodies = body_files(tmp)
    rnd = round_seconds(args)
    log(
        f"{name}: soak for {args.soak:g}s: {rnd}s wrk rounds at c={args.soak_connections}, "
        "non-streaming and streaming in turn, RSS after each"
    )
    # the default store, in the server's cwd
    db = {"lockgate": tmp / "lockgate.db", "before": tmp / "before" / "lockgate.db"}.get(name)
    rows0 = usage_rows(db, settle=True)  # the measured runs' last records may still be on their way
    samples = [{"round": 0, "mode": None, "t_s": 0.0, "requests": 0, "rss_kb": tree_rss_kb(server_pid)}]
    served = errors = 0
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < args.soak and os.path.exists(f"/proc/{server_pid}"):
        mode = MODES[i % 2]
        w = run_wrk(args, port, PATH, bodies[mode], args.soak_connections, rnd, server_pid, upstream_pid, uport)
        i += 1
        served += w["upstream_served"]
        errors += w["errors_total"]
        samples.append(
            {
                "round": i,
                "mode": mode,
                "t_s": round(time.monotonic() - t0, 2),
                "requests": served,
                "rss_kb": tree_rss_kb(server_pid),
                "rps": round(w["rps"]),
                "served": w["upstream_served"],
                "errors": w["errors_total"],
                "p50_ms": w["p50_ms"],
                "p99_ms": w["p99_ms"],
            }
        )
    res = summarize(samples)
    res["minutes"] = per_minute(samples)
    res.update(late_window(samples))
    res.update(p99_drift(res["minutes"]))
    if rows0 is not None:
        rows1 = usage_rows(db, settle=True)
        res["usage_records_written"] = None if rows1 is None else rows1 - rows0
        res["usage_records_vs_requests"] = None if rows1 is None or not served else (rows1 - rows0) / served
    res.update(
        seconds=args.soak,
        round_s=rnd,
        connections=args.soak_connections,
        rounds=i,
        requests=served,
        errors=errors,
        server_alive=os.path.exists(f"/proc/{server_pid}"),
        samples=samples,
    )
    lv = {True: "yes", False: "NO", None: "too few rounds to tell"}[res["levelled_off"]]
    log(
        f"{name}: soak: {served:,} requests in {i} rounds, RSS {res['rss_kb_start'] / 1024:.1f} -> "
        f"{res['rss_kb_end'] / 1024:.1f} MB, {_kb(res['growth_kb_per_10k'])} per 10k requests "
        f"({_kb(res['late_growth_kb_per_10k'])} from the middle to the last third); levelled off: {lv}"
        + ("" if res["server_alive"] else "; the server DIED")
    )
    log(f"{name}: soak per minute:\n" + minutes_table(res))
    if rows0 is not None:
        log(f"{name}: soak: usage records written {res.get('usage_records_written')} for {served:,} requests answered")
    return res


def usage_rows(db: Path | None, settle: bool = False) -> int | None:
    """Rows in the usage store's usage_records (None without one).  settle: wait
    until the count holds still for 3 s (the writer flushes every second), at most 30 s."""
    if db is None or not db.exists():
        return None

    def count() -> int | None:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as c:
                return c.execute("SELECT count(*) FROM usage_records").fetchone()[0]
        except sqlite3.Error:
            return None

    n = count()
    if settle:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(3)
            m = count()
            if m == n:
                break
            n = m
    return n


def per_minute(samples: list[dict]) -> list[dict]:
    """The rounds grouped by the minute they ended in: RSS at the minute's last
    round, requests and errors summed, and per mode the median of the rounds'
    p50 and the largest of their p99 (wrk gives one histogram per round)."""
    out: dict[int, dict] = {}
    for s in samples[1:]:
        m = int((s["t_s"] - 1e-9) // 60) + 1
        row = out.setdefault(m, {"minute": m, "requests": 0, "errors": 0, "p50": {}, "p99": {}})
        row["requests"] += s["served"]
        row["errors"] += s["errors"]
        row["rss_kb"] = s["rss_kb"]
        row["p50"].setdefault(s["mode"], []).append(s["p50_ms"])
        row["p99"].setdefault(s["mode"], []).append(s["p99_ms"])
    rows = []
    for m in sorted(out):
        r = out[m]
        for mode in MODES:
            r[f"p50_ms_{mode}"] = statistics.median(r["p50"][mode]) if mode in r["p50"] else None
            r[f"p99_ms_{mode}"] = max(r["p99"][mode]) if mode in r["p99"] else None
        del r["p50"], r["p99"]
        rows.append(r)
    return rows


def late_window(samples: list[dict]) -> dict:
    """RSS growth per 100k requests (least-squares slope) over the last 20
    minutes, or over the last two thirds of a shorter soak, so that warm-up
    stays out of it."""
    end = samples[-1]["t_s"]
    window = min(1200.0, end * 2 / 3)
    pts = [s for s in samples if s["t_s"] >= end - window]
    xs = [s["requests"] for s in pts]
    ys = [s["rss_kb"] for s in pts]
    out = {"late_window_s": round(window), "late_requests": (xs[-1] - xs[0]) if xs else 0, "growth_kb_per_100k_late": None}
    if len(xs) >= 3 and max(xs) > min(xs):
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        out["growth_kb_per_100k_late"] = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx * 1e5
    return out


def p99_drift(minutes: list[dict]) -> dict:
    """p99 of the last full minute against the second (the first holds warm-up), per mode."""
    out: dict = {}
    full = minutes[:-1] if len(minutes) > 2 else minutes  # the last minute may be a stub
    if len(full) < 2:
        return out
    a, b = full[1] if len(full) > 2 else full[0], full[-1]
    for mode in MODES:
        x, y = a.get(f"p99_ms_{mode}"), b.get(f"p99_ms_{mode}")
        if x and y:
            out[f"p99_drift_{mode}"] = {
                "from_minute": a["minute"],
                "to_minute": b["minute"],
                "from_ms": x,
                "to_ms": y,
                "ratio": y / x,
            }
    return out


def minutes_table(res: dict) -> str:
    lines = ["  min  requests  errors  RSS MB   p50 ms ns  p99 ms ns   p50 ms st  p99 ms st"]
    f = lambda v: "-" if v is None else f"{v:.2f}"
    for r in res["minutes"]:
        lines.append(
            f"  {r['minute']:>3} {r['requests']:>9,} {r['errors']:>7} {r['rss_kb'] / 1024:>7.1f} "
            f"{f(r['p50_ms_nonstream']):>10} {f(r['p99_ms_nonstream']):>10} "
            f"{f(r['p50_ms_stream']):>11} {f(r['p99_ms_stream']):>10}"
        )
    return "\n".join(lines)


def _kb(v) -> str:
    return "-" if v is None else f"{v:+.0f} kB"


def summarize(samples: list[dict]) -> dict:
    """Growth of RSS per 10,000 requests over the whole soak (least-squares
    slope of RSS against requests served) and from the middle third of the
    samples to the last third (the difference of their means over the
    difference of their request counts).  Levelled off: the last third's mean
    RSS is within max(512 kB, 0.5%) of the middle third's; None with fewer than
    6 samples."""
    xs = [s["requests"] for s in samples]
    ys = [s["rss_kb"] for s in samples]
    out = {
        "rss_kb_start": ys[0],
        "rss_kb_end": ys[-1],
        "rss_kb_max": max(ys),
        "growth_kb_per_10k": None,
        "late_growth_kb_per_10k": None,
        "levelled_off": None,
    }
    if len(xs) >= 2 and max(xs) > min(xs):
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        out["growth_kb_per_10k"] = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx * 1e4
    n = len(samples)
    if n >= 6:
        mid, last = samples[n // 3 : 2 * n // 3], samples[2 * n // 3 :]
        m_rss = statistics.fmean(s["rss_kb"] for s in mid)
        l_rss = statistics.fmean(s["rss_kb"] for s in last)
        m_req = statistics.fmean(s["requests"] for s in mid)
        l_req = statistics.fmean(s["requests"] for s in last)
        out["rss_kb_middle_third"], out["rss_kb_last_third"] = m_rss, l_rss
        if l_req > m_req:
            out["late_growth_kb_per_10k"] = (l_rss - m_rss) / (l_req - m_req) * 1e4
        out["levelled_off_tolerance_kb"] = tol = max(512.0, 0.005 * m_rss)
        out["levelled_off"] = (l_rss - m_rss) <= tol
    return out
