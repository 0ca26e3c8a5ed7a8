"""Measuring one target: /proc CPU and memory accounting and the machine's
noise, wrk runs, the TTFT and paired clients, and the sequence run per target."""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import statistics
import subprocess
import time
from pathlib import Path

from client import HttpConn, smoke
from common import BODY_NS, BODY_S, CLK_TCK, HOST, KEY, MODEL, SLOW_DELAY_MS, SLOW_MODEL, WRK_SCRIPT, log, wrk_headers_env


# --------------------------------------------------------------------------
# CPU time and resident memory from /proc
# --------------------------------------------------------------------------
def _stat(pid: int):
    """(ppid, utime+stime ticks, cutime+cstime ticks) of pid, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(b")") + 2 :].split()
    # rest[0] is field 3 (state): field n is rest[n - 3]
    return int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14])


def _tree_stats(root: int) -> dict:
    """{pid: _stat(pid)} for root and all its live descendants."""
    stats = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            s = _stat(int(d))
            if s:
                stats[int(d)] = s
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    tree = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in stats and pid not in tree:
            tree[pid] = stats[pid]
            todo.extend(children.get(pid, ()))
    return tree


def tree_cpu_ms(root: int) -> float:
    """CPU ms of root and all its live descendants, plus their reaped children."""
    return sum(s[1] + s[2] for s in _tree_stats(root).values()) * 1000.0 / CLK_TCK


def tree_rss_kb(root: int) -> int:
    """Resident memory (VmRSS, kB) of root and all its live descendants, summed
    (pages shared between them, e.g. after fork, count once per process)."""
    total = 0
    for pid in _tree_stats(root):
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmRSS:"):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError, IndexError):
            pass  # gone meanwhile
    return total


def machine_busy_ms() -> float:
    """CPU ms all processes spent (everything but idle and iowait) since boot, summed over cores."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    busy = sum(vals[:8]) - vals[3] - vals[4]  # user nice system idle iowait irq softirq steal
    return busy * 1000.0 / CLK_TCK


def wait_for_quiet_machine(max_busy_pct: float, max_wait_s: float) -> float:
    """Wait (bounded) until the machine is mostly idle; returns the last busy % seen."""
    deadline = time.monotonic() + max_wait_s
    ncpu = os.cpu_count() or 1
    announced = False
    while True:
        b0, t0 = machine_busy_ms(), time.monotonic()
        time.sleep(1.0)
        pct = 100.0 * (machine_busy_ms() - b0) / ((time.monotonic() - t0) * 1000 * ncpu)
        if pct <= max_busy_pct or time.monotonic() >= deadline:
            if announced or pct > max_busy_pct:
                log(f"machine busy {pct:.0f}% " + ("(going on anyway)" if pct > max_busy_pct else "(quiet enough)"))
            return pct
        if not announced:
            log(f"machine busy {pct:.0f}% (other work): waiting up to {max_wait_s:.0f}s for <= {max_busy_pct:.0f}%")
            announced = True


def wait_quiet(pids: list[int], max_s: float = 8.0) -> None:
    """Wait until the given process trees stop burning CPU (in-flight work drains)."""
    deadline = time.monotonic() + max_s
    last = sum(tree_cpu_ms(p) for p in pids)
    quiet = 0
    while time.monotonic() < deadline:
        time.sleep(0.15)
        now = sum(tree_cpu_ms(p) for p in pids)
        if now - last <= 1000.0 / CLK_TCK:
            quiet += 1
            if quiet >= 2:
                return
        else:
            quiet = 0
        last = now


# --------------------------------------------------------------------------
# TTFT and the paired client
# --------------------------------------------------------------------------
async def _ttft(port: int, path: str, model: str, n: int, max_s: float) -> dict:
    body = json.dumps(dict(BODY_S, model=model)).encode()
    c = HttpConn(port)
    ttfts, totals, errors = [], [], 0
    deadline = time.monotonic() + max_s
    try:
        for _ in range(3):  # warm the connection
            await c.request("POST", path, body)
        while len(ttfts) + errors < n and time.monotonic() < deadline:
            try:
                st, _, _, ttft, total = await c.request("POST", path, body)
            except Exception:
                errors += 1
                await c.close()
                continue
            if st != 200 or ttft is None:
                errors += 1
                continue
            ttfts.append(ttft * 1000)
            totals.append(total * 1000)
    finally:
        await c.close()
    if not ttfts:
        return {"n": 0, "errors": errors}
    ttfts.sort()
    return {
        "n": len(ttfts),
        "errors": errors,
        "ttft_ms_p50": statistics.median(ttfts),
        "ttft_ms_p90": ttfts[int(0.9 * (len(ttfts) - 1))],
        "ttft_ms_min": ttfts[0],
        "total_ms_p50": statistics.median(totals),
    }


async def _paired(port: int, uport: int, path: str, mode: str, n: int, max_s: float) -> dict:
    """Alternate one request straight to the upstream and one through the proxy, n times.

    The machine's noise hits both sides of a pair alike, so the median of the
    per-pair differences is a steadier 'added latency' than the difference of
    two runs made at different moments.
    """
    body = json.dumps(BODY_S if mode == "stream" else BODY_NS).encode()
    direct, proxy = HttpConn(uport), HttpConn(port)
    key = "ttft" if mode == "stream" else "total"
    d_vals, p_vals, diffs = [], [], []
    deadline = time.monotonic() + max_s
    try:
        for _ in range(3):
            await direct.request("POST", path, body)
            await proxy.request("POST", path, body)
        while len(diffs) < n and time.monotonic() < deadline:
            try:
                st1, _, _, ttft1, tot1 = await direct.request("POST", path, body)
                st2, _, _, ttft2, tot2 = await proxy.request("POST", path, body)
            except Exception:
                await direct.close()
                await proxy.close()
                continue
            if st1 != 200 or st2 != 200:
                continue
            a = ttft1 if key == "ttft" else tot1
            b = ttft2 if key == "ttft" else tot2
            if a is None or b is None:
                continue
            d_vals.append(a * 1000)
            p_vals.append(b * 1000)
            diffs.append((b - a) * 1000)
    finally:
        await direct.close()
        await proxy.close()
    if not diffs:
        return {"n": 0}
    return {
        "n": len(diffs),
        "measure": "time to first token" if key == "ttft" else "whole response",
        "direct_ms_p50": statistics.median(d_vals),
        "proxy_ms_p50": statistics.median(p_vals),
        "added_ms_p50": statistics.median(diffs),
    }


# --------------------------------------------------------------------------
# upstream stats, wrk
# --------------------------------------------------------------------------
def upstream_count(uport: int) -> int:
    async def go():
        c = HttpConn(uport)
        try:
            _, _, body, _, _ = await c.request("GET", "/stats", key=None, timeout=5)
            return json.loads(body)["chat"]
        finally:
            await c.close()

    return asyncio.run(go())


def run_wrk(
    args,
    port: int,
    path: str,
    body_file: Path,
    conns: int,
    duration: float,
    server_pid: int | None,
    upstream_pid: int,
    uport: int,
    script: Path = WRK_SCRIPT,
    env_extra: dict | None = None,
) -> dict:
    """One wrk run; server_pid's CPU per request is divided by the chat completions
    the upstream (its /stats) answered meanwhile."""
    threads = 1 if conns == 1 else min(args.wrk_threads, conns)
    cmd = [
        args.wrk,
        f"-t{threads}",
        f"-c{conns}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        f"http://{HOST}:{port}{path}",
    ]
    env = dict(
        os.environ, BENCH_BODY_FILE=str(body_file), BENCH_KEY=KEY, BENCH_HEADERS=wrk_headers_env(port), **(env_extra or {})
    )
    pids = [upstream_pid] + ([server_pid] if server_pid and server_pid != upstream_pid else [])
    wait_quiet(pids, 3)
    cpu0 = {p: tree_cpu_ms(p) for p in pids}
    n0 = upstream_count(uport)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0 = machine_busy_ms()
    t0 = time.monotonic()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    wall = time.monotonic() - t0
    busy1 = machine_busy_ms()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_ms = ((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)) * 1000
    mid = {p: tree_cpu_ms(p) for p in pids}
    wait_quiet(pids)  # let abandoned in-flight requests finish before the CPU reading
    cpu1 = {p: tree_cpu_ms(p) for p in pids}
    n1 = upstream_count(uport)
    m = re.search(r"^WRKJSON (.*)$", out.stdout, re.M)
    if not m:
        raise RuntimeError(f"wrk failed: {out.stdout[-500:]} {out.stderr[-500:]}")
    res = json.loads(m.group(1))
    served = n1 - n0
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    res["upstream_served"] = served
    res["wall_s"] = wall
    lat = res["latency_us"]
    res["p50_ms"], res["p99_ms"] = lat["p50"] / 1000, lat["p99"] / 1000
    res["errors_total"] = sum(res["errors"].values())
    div = max(served, 1)
    sp = server_pid or upstream_pid
    res["server_cpu_ms"] = cpu1[sp] - cpu0[sp]
    res["server_cpu_ms_per_req"] = res["server_cpu_ms"] / div
    res["upstream_cpu_ms_per_req"] = (cpu1[upstream_pid] - cpu0[upstream_pid]) / div
    # how much of the machine other processes took while wrk ran (noise indicator)
    ours = wrk_ms + sum(mid[p] - cpu0[p] for p in pids)
    res["wrk_cpu_ms"] = wrk_ms
    res["other_cpu_pct"] = max(0.0, 100.0 * (busy1 - busy0 - ours) / (wall * 1000 * (os.cpu_count() or 1)))
    return res


# --------------------------------------------------------------------------
# one target, all modes
# --------------------------------------------------------------------------
def body_files(tmp: Path) -> dict:
    """The request bodies wrk posts, per mode, written to tmp."""
    bodies = {"nonstream": tmp / "body-nonstream.json", "stream": tmp / "body-stream.json"}
    bodies["nonstream"].write_text(json.dumps(BODY_NS))
    bodies["stream"].write_text(json.dumps(BODY_S))
    return bodies


def bench_target(name: str, args, port: int, server_pid: int | None, upstream_pid: int, uport: int, tmp: Path) -> dict:
    path = "/v1/chat/completions"
    res: dict = {"target": name, "port": port}
    idle_kb = tree_rss_kb(server_pid or upstream_pid)  # started and ready, nothing served yet
    problems = asyncio.run(smoke(port, path))
    res["smoke_problems"] = problems
    if problems:
        log(f"{name}: wire-format check FAILED: {problems}")
    else:
        log(f"{name}: wire-format check ok (JSON, SSE with 20 chunks, usage, [DONE])")
    bodies = body_files(tmp)
    # warm-up: imports, pools, JIT-ish caches
    for mode in ("nonstream", "stream"):
        run_wrk(args, port, path, bodies[mode], 16, args.warmup, server_pid, upstream_pid, uport)
    sp = server_pid or upstream_pid
    res["memory"] = {"rss_kb_idle": idle_kb, "rss_kb_after_warmup": tree_rss_kb(sp)}
    for mode in args.modes:
        r = res.setdefault(mode, {})
        for conns in (1, args.connections):
            log(f"{name}: {mode} c={conns} for {args.duration:g}s")
            w = run_wrk(args, port, path, bodies[mode], conns, args.duration, server_pid, upstream_pid, uport)
            r[f"c{conns}"] = w
            log(
                f"{name}: {mode} c={conns}: {w['rps']:.0f} req/s, p50 {w['p50_ms']:.2f} ms, "
                f"p99 {w['p99_ms']:.2f} ms, {w['server_cpu_ms_per_req']:.3f} CPU ms/req, "
                f"{w['errors_total']} errors; other processes took {w['other_cpu_pct']:.0f}% of the machine"
            )
        if mode == "stream":
            log(f"{name}: TTFT at c=1, {args.ttft_requests} sequential streams")
            r["ttft"] = asyncio.run(_ttft(port, path, MODEL, args.ttft_requests, args.duration))
            r["ttft_slow"] = asyncio.run(_ttft(port, path, SLOW_MODEL, args.ttft_slow_requests, args.duration))
            log(
                f"{name}: TTFT p50 {r['ttft'].get('ttft_ms_p50', float('nan')):.3f} ms; with "
                f"{SLOW_DELAY_MS} ms between upstream chunks: TTFT p50 "
                f"{r['ttft_slow'].get('ttft_ms_p50', float('nan')):.2f} ms, whole stream "
                f"{r['ttft_slow'].get('total_ms_p50', float('nan')):.1f} ms"
            )
        if port != uport:
            pr = asyncio.run(_paired(port, uport, path, mode, args.ttft_requests, args.duration))
            r["paired_c1"] = pr
            if pr.get("n"):
                log(
                    f"{name}: {mode} paired with the upstream at c=1 ({pr['measure']}): "
                    f"upstream {pr['direct_ms_p50']:.3f} ms, via {name} {pr['proxy_ms_p50']:.3f} ms, "
                    f"added {pr['added_ms_p50']:+.3f} ms (median of {pr['n']} pairs)"
                )
    wait_quiet([sp])
    mem = res["memory"]
    mem["rss_kb_after_runs"] = tree_rss_kb(sp)
    mem["processes"] = len(_tree_stats(sp))
    log(
        f"{name}: resident memory {mem['rss_kb_after_warmup'] / 1024:.1f} MB after warm-up, "
        f"{mem['rss_kb_after_runs'] / 1024:.1f} MB after the measured runs ({mem['processes']} "
        f"process{'es' if mem['processes'] != 1 else ''})"
    )
    return res
