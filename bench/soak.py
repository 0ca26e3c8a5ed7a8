"""--soak: memory under sustained load.  Alternating non-streaming and
streaming wrk rounds at concurrency 32 for the given seconds, the server's
resident memory (its process tree's VmRSS) sampled after each round, and
whether it levelled off."""

from __future__ import annotations

import os
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
            }
        )
    res = summarize(samples)
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
    return res


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
