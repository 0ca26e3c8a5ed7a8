"""The results: the table, the ratios, the check against issue 2's targets,
the profile summary, the environment and the JSON files."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from common import BENCH, PEERS, REPO, SLOW_DELAY_MS


def _g(res, *keys):
    cur = res
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            return None
        cur = cur[k]
    return cur


def _fmt(v, nd=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{nd}f}"
    return str(v)


def _mb(kb):
    return None if kb is None else kb / 1024


def _kb(v):
    return "-" if v is None else f"{v:+,.0f}"


def _yes(levelled, alive):
    if alive is False:
        return "DIED"
    return None if levelled is None else ("yes" if levelled else "NO")


def report(results: dict, args, order: list[str]) -> str:
    """The text report; order: the targets' columns."""
    names = [t for t in order if t in results["targets"] and results["targets"][t].get("ok")]
    c = args.connections
    rows = []
    for mode, label in (("nonstream", "non-stream"), ("stream", "stream (20 chunks)")):
        if mode not in args.modes:
            continue
        rows += [
            (f"{label}: req/s @c{c}", lambda r, m=mode: _g(r, m, f"c{c}", "rps"), 0),
            (f"{label}: p50 ms @c1", lambda r, m=mode: _g(r, m, "c1", "p50_ms"), 3),
            (f"{label}: p99 ms @c1", lambda r, m=mode: _g(r, m, "c1", "p99_ms"), 3),
            (f"{label}: p50 ms @c{c}", lambda r, m=mode: _g(r, m, f"c{c}", "p50_ms"), 2),
            (f"{label}: p99 ms @c{c}", lambda r, m=mode: _g(r, m, f"c{c}", "p99_ms"), 2),
        ]
        if mode == "stream":
            rows += [
                ("stream: TTFT p50 ms @c1", lambda r: _g(r, "stream", "ttft", "ttft_ms_p50"), 3),
                (
                    f"stream: TTFT p50 ms @c1, {SLOW_DELAY_MS}ms/chunk upstream",
                    lambda r: _g(r, "stream", "ttft_slow", "ttft_ms_p50"),
                    2,
                ),
                (
                    f"stream: whole stream ms, {SLOW_DELAY_MS}ms/chunk upstream",
                    lambda r: _g(r, "stream", "ttft_slow", "total_ms_p50"),
                    1,
                ),
            ]
        rows.append(
            (
                f"{label}: added ms @c1, paired with upstream" + (" (TTFT)" if mode == "stream" else ""),
                lambda r, m=mode: _g(r, m, "paired_c1", "added_ms_p50"),
                3,
            )
        )
        rows += [
            (f"{label}: server CPU ms/req @c{c}", lambda r, m=mode: _g(r, m, f"c{c}", "server_cpu_ms_per_req"), 3),
            (f"{label}: server CPU ms/req @c1", lambda r, m=mode: _g(r, m, "c1", "server_cpu_ms_per_req"), 3),
            (f"{label}: errors (all runs)", lambda r, m=mode: sum(_g(r, m, k, "errors_total") or 0 for k in ("c1", f"c{c}")), 0),
        ]
    rows += [
        ("memory: server RSS MB at idle (ready, nothing served)", lambda r: _mb(_g(r, "memory", "rss_kb_idle")), 1),
        ("memory: server RSS MB after warm-up", lambda r: _mb(_g(r, "memory", "rss_kb_after_warmup")), 1),
        ("memory: server RSS MB after measured runs", lambda r: _mb(_g(r, "memory", "rss_kb_after_runs")), 1),
    ]
    if args.soak > 0:
        rows += [
            (f"soak {args.soak:g}s @c{args.soak_connections}: requests", lambda r: _g(r, "soak", "requests"), 0),
            ("soak: RSS MB at start", lambda r: _mb(_g(r, "soak", "rss_kb_start")), 1),
            ("soak: RSS MB at end", lambda r: _mb(_g(r, "soak", "rss_kb_end")), 1),
            ("soak: RSS growth kB per 10k requests", lambda r: _g(r, "soak", "growth_kb_per_10k"), 0),
            ("soak: same, middle third -> last third", lambda r: _g(r, "soak", "late_growth_kb_per_10k"), 0),
            ("soak: levelled off", lambda r: _yes(_g(r, "soak", "levelled_off"), _g(r, "soak", "server_alive")), 0),
            ("soak: RSS growth kB per 100k requests, late window", lambda r: _g(r, "soak", "growth_kb_per_100k_late"), 0),
            ("soak: p99 drift non-stream (last / 2nd minute)", lambda r: _g(r, "soak", "p99_drift_nonstream", "ratio"), 2),
            ("soak: p99 drift stream (last / 2nd minute)", lambda r: _g(r, "soak", "p99_drift_stream", "ratio"), 2),
            ("soak: errors", lambda r: _g(r, "soak", "errors"), 0),
            ("soak: usage records written", lambda r: _g(r, "soak", "usage_records_written"), 0),
            ("soak: usage records / requests answered", lambda r: _g(r, "soak", "usage_records_vs_requests"), 4),
        ]
    rows.append(
        (
            "noise: other processes' % of machine (max of runs)",
            lambda r: max([_g(r, m, k, "other_cpu_pct") or 0.0 for m in args.modes for k in ("c1", f"c{c}")] or [0.0]),
            0,
        )
    )
    w0 = max(len(r[0]) for r in rows) + 2
    lines = [
        "",
        "Results (server = the process under test, its workers included; for 'upstream' it is the fake upstream itself)",
        "",
    ]
    lines.append("".ljust(w0) + "".join(n.rjust(12) for n in names))
    for label, fn, nd in rows:
        vals = []
        for n in names:
            v = fn(results["targets"][n])
            vals.append((_fmt(float(v), nd) if isinstance(v, (int, float)) else _fmt(v)).rjust(12))
        lines.append(label.ljust(w0) + "".join(vals))

    # ratios
    t = results["targets"]
    ratios = {}
    lines += ["", "Ratios"]

    def ratio(a, b):
        return a / b if (a is not None and b) else None

    def add(key, val, text):
        ratios[key] = val
        if val is not None:
            lines.append(f"  {text}")

    up, lg = t.get("upstream", {}), t.get("lockgate", {})
    if up.get("ok") and lg.get("ok"):
        for mode in args.modes:
            v = ratio(_g(lg, mode, f"c{c}", "rps"), _g(up, mode, f"c{c}", "rps"))
            add(f"lockgate_over_upstream_rps_{mode}", v, f"lockgate / upstream req/s @c{c}, {mode}: {_fmt(v, 3)}")
            a = _g(lg, mode, "c1", "p50_ms")
            b = _g(up, mode, "c1", "p50_ms")
            if a is not None and b is not None:
                add(f"lockgate_added_p50_c1_ms_{mode}", a - b, f"lockgate adds to upstream p50 @c1, {mode}: {a - b:+.3f} ms")
        a, b = _g(lg, "stream", "ttft", "ttft_ms_p50"), _g(up, "stream", "ttft", "ttft_ms_p50")
        if a is not None and b is not None:
            add("lockgate_added_ttft_c1_ms", a - b, f"lockgate adds to upstream TTFT @c1: {a - b:+.3f} ms")
    for peer in PEERS:
        pr = t.get(peer, {})
        if not (lg.get("ok") and pr.get("ok")):
            continue
        for mode in args.modes:
            v = ratio(_g(pr, mode, f"c{c}", "server_cpu_ms_per_req"), _g(lg, mode, f"c{c}", "server_cpu_ms_per_req"))
            add(f"{peer}_over_lockgate_cpu_{mode}", v, f"{peer} / lockgate CPU ms/req, {mode}: {_fmt(v, 1)}x")
            v = ratio(_g(lg, mode, f"c{c}", "rps"), _g(pr, mode, f"c{c}", "rps"))
            add(f"lockgate_over_{peer}_rps_{mode}", v, f"lockgate / {peer} req/s @c{c}, {mode}: {_fmt(v, 1)}x")
            v = _g(pr, mode, "paired_c1", "added_ms_p50")
            add(f"{peer}_added_paired_c1_ms_{mode}", v, f"{peer} adds @c1, {mode}, paired: {_fmt(v, 3)} ms")
        a, b = _g(pr, "stream", "ttft", "ttft_ms_p50"), _g(up, "stream", "ttft", "ttft_ms_p50")
        if a is not None and b is not None:
            add(f"{peer}_added_ttft_c1_ms", a - b, f"{peer} adds to upstream TTFT @c1: {a - b:+.3f} ms")
    ng = t.get("nginx", {})
    if ng.get("ok") and lg.get("ok"):
        for mode in args.modes:
            v = ratio(_g(lg, mode, f"c{c}", "server_cpu_ms_per_req"), _g(ng, mode, f"c{c}", "server_cpu_ms_per_req"))
            add(f"lockgate_over_nginx_cpu_{mode}", v, f"lockgate / nginx CPU ms/req, {mode}: {_fmt(v, 1)}x")
    rss = lambda r: _g(r, "memory", "rss_kb_after_runs")
    for peer in PEERS:
        if lg.get("ok") and t.get(peer, {}).get("ok"):
            v = ratio(rss(t[peer]), rss(lg))
            add(f"{peer}_over_lockgate_rss", v, f"{peer} / lockgate RSS after the measured runs: {_fmt(v, 1)}x")
    if lg.get("ok") and ng.get("ok"):
        v = ratio(rss(lg), rss(ng))
        add("lockgate_over_nginx_rss", v, f"lockgate / nginx RSS after the measured runs: {_fmt(v, 1)}x")
    for n in names:
        s = t[n].get("soak")
        if s and s.get("growth_kb_per_10k") is not None:
            ratios[f"soak_growth_kb_per_10k_{n}"] = s["growth_kb_per_10k"]
            ratios[f"soak_levelled_off_{n}"] = s["levelled_off"]
            lines.append(
                f"  {n} soak: {_fmt(_mb(s['rss_kb_start']), 1)} -> {_fmt(_mb(s['rss_kb_end']), 1)} MB "
                f"over {s['requests']:,} requests, {s['growth_kb_per_10k']:+,.0f} kB per 10k (middle -> last "
                f"third: {_kb(s['late_growth_kb_per_10k'])}); levelled off: "
                f"{_yes(s['levelled_off'], s['server_alive']) or 'too few rounds'}"
            )
    results["ratios"] = ratios

    # targets from issue 2
    if lg.get("ok"):
        checks = []

        def check(label, val, limit, unit="ms"):
            if val is None:
                checks.append((label, None, limit, None))
            else:
                checks.append((label, val, limit, val <= limit))

        check("CPU per non-stream request (<= 1.5 ms)", _g(lg, "nonstream", f"c{c}", "server_cpu_ms_per_req"), 1.5)
        check("CPU per 20-chunk stream (<= 3 ms)", _g(lg, "stream", f"c{c}", "server_cpu_ms_per_req"), 3.0)
        check("added to upstream p50 @c1, non-stream, paired (< 1 ms)", _g(lg, "nonstream", "paired_c1", "added_ms_p50"), 1.0)
        check("added to upstream TTFT @c1, paired (< 1 ms)", _g(lg, "stream", "paired_c1", "added_ms_p50"), 1.0)
        check("added to upstream p50 @c1, non-stream, wrk runs (< 1 ms)", ratios.get("lockgate_added_p50_c1_ms_nonstream"), 1.0)
        check("added to upstream TTFT @c1, separate runs (< 1 ms)", ratios.get("lockgate_added_ttft_c1_ms"), 1.0)
        lines += ["", "Lockgate against the targets of issue 2 (one worker)"]
        for label, val, limit, ok in checks:
            verdict = "n/a" if ok is None else ("PASS" if ok else "MISS")
            lines.append(f"  {verdict:5} {label}: {_fmt(val, 3)}")
        results["targets_check"] = [{"check": lbl, "value": v, "limit": lim, "pass": ok} for lbl, v, lim, ok in checks]

    for n in order:
        r = t.get(n)
        if r is None:
            continue
        if not r.get("ok"):
            lines.append(f"\n{n}: not measured: {r.get('skipped')}")
        elif r.get("smoke_problems"):
            lines.append(f"\n{n}: wire-format problems: {r['smoke_problems']}")
    if any((_g(t[n], m, k, "errors_total") or 0) for n in names for m in args.modes for k in ("c1", f"c{c}")):
        lines.append("\nNote: some runs had errors (non-2xx, timeouts or socket errors); see the JSON.")
    return "\n".join(lines)


def env_info(args) -> dict:
    def cmd(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        except Exception:
            return None

    info = {
        "time": _dt.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "python_bench": sys.version.split()[0],
        "wrk": (cmd([args.wrk, "-v"]) or "").splitlines()[:1],
        "lockgate_git": cmd(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "lockgate_dirty": bool(cmd(["git", "-C", str(REPO), "status", "--porcelain", "--", "lockgate"])),
        "gateway_python": args.gateway_python,
        "duration_s": args.duration,
        "connections": args.connections,
        "soak_s": args.soak,
    }
    lv = Path(args.bench_venv) / "bin" / "python"
    if lv.exists():
        info["litellm_version"] = cmd([str(lv), "-c", "import importlib.metadata as m; print(m.version('litellm'))"])
    pk = BENCH / "peers" / "node_modules" / "@portkey-ai" / "gateway" / "package.json"
    if pk.exists():
        info["portkey_version"] = json.loads(pk.read_text()).get("version")
        info["node"] = cmd(["node", "--version"])
    ng = shutil.which("nginx") or "/usr/sbin/nginx"
    if Path(ng).exists():
        r = subprocess.run([ng, "-v"], capture_output=True, text=True)
        info["nginx"] = r.stderr.strip()
    return info


def print_profiles(results: dict) -> None:
    """The --profile summary of each profiled target, after the report."""
    for n, r in results["targets"].items():
        prof = r.get("profile") if isinstance(r, dict) else None
        if prof:
            print(f"\nProfile of {n} (py-spy, share of samples):")
            for mode, p in prof.items():
                print(f"  {mode}: flamegraph {p['flamegraph']}")
                top = p.get("top") or {}
                print("    self time by package: " + ", ".join(f"{k} {v}%" for k, v in top.get("self_by_package_pct", [])[:10]))
                for f, pct in top.get("self_pct", [])[:12]:
                    print(f"    self      {pct:5.1f}%  {f}")
                for f, pct in top.get("lockgate_inclusive_pct", [])[:12]:
                    print(f"    inclusive {pct:5.1f}%  {f}")


def write_json(results: dict, text: str, out_dir: Path, stamp: str) -> Path:
    """bench-<stamp>.json and latest.json in out_dir; returns the first."""
    results["report"] = text
    dest = out_dir / f"bench-{stamp}.json"
    dest.write_text(json.dumps(results, indent=2, default=str))
    (out_dir / "latest.json").write_text(json.dumps(results, indent=2, default=str))
    return dest
