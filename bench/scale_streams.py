"""scale.py streams: thousands of slow streams held open: memory per stream, CPU, event-loop lag."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import time

from client import HttpConn
from common import BODY_NS, BODY_S, HOST, KEY, log
from measure import machine_busy_ms, tree_cpu_ms, tree_rss_kb, wait_quiet
from scale_support import body_file, start_lockgate, start_upstream, table, workdir, wrk
from targets import lockgate_config


# --------------------------------------------------------------------------
# many open slow streams
# --------------------------------------------------------------------------
async def _open_streams(port: int, n: int, model: str, ready: asyncio.Event, stop: asyncio.Event, stats: dict) -> None:
    body = json.dumps(dict(BODY_S, model=model)).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()

    async def one() -> None:
        try:
            r, w = await asyncio.open_connection(HOST, port)
        except OSError:
            stats["connect_errors"] += 1
            return
        try:
            w.write(head + body)
            first = True
            while not stop.is_set():
                data = await r.read(65536)
                if not data:
                    break
                stats["bytes"] += len(data)
                if first and b"tok0" in data:
                    first = False
                    stats["first_chunk"] += 1
                    if stats["first_chunk"] >= n:
                        ready.set()
        except (OSError, asyncio.IncompleteReadError):
            stats["errors"] += 1
        finally:
            w.close()

    tasks = []
    for _ in range(n):
        tasks.append(asyncio.create_task(one()))
        if len(tasks) % 200 == 0:
            await asyncio.sleep(0.05)  # don't flood the accept queue
    await asyncio.gather(*tasks)


async def _probe(port: int, n: int) -> dict:
    """Sequential TTFT of a fast stream and GET /health/live latency, n each."""
    c = HttpConn(port)
    ttft, health = [], []
    body = json.dumps(BODY_S).encode()
    try:
        for _ in range(n):
            st, _, _, t, _ = await c.request("POST", "/v1/chat/completions", body)
            if st == 200 and t is not None:
                ttft.append(t * 1000)
            t0 = time.perf_counter()
            st, *_ = await c.request("GET", "/health/live")
            if st == 200:
                health.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0.05)
    finally:
        await c.close()

    def q(v, p):
        v = sorted(v)
        return v[min(len(v) - 1, int(p * len(v)))] if v else None

    return {
        "ttft_ms_p50": statistics.median(ttft) if ttft else None,
        "ttft_ms_p90": q(ttft, 0.9),
        "health_ms_p50": statistics.median(health) if health else None,
        "health_ms_p90": q(health, 0.9),
        "n": len(ttft),
    }


def exp_streams(args) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the children inherit it
    tmp = workdir("streams")
    up, uport = start_upstream(tmp)
    slow = "bench-model-delay1000"  # the fake upstream sleeps 1 s between chunks: 20 s a stream
    extra = (
        f"  - name: {slow}\n    deployments:\n      - provider: openai\n        model: {slow}\n"
        f"        api_base: http://{HOST}:{uport}/v1\n        api_key: sk-up\n"
        # a deployment pools 1,000 connections by default; beyond that a stream waits for one
        f"        max_connections: {max(args.streams) + 1000}\n"
    )
    cfg = lockgate_config(tmp, uport)
    cfg.write_text(cfg.read_text().replace("models:\n", "models:\n" + extra, 1))
    lg, port = start_lockgate(args, tmp, cfg)
    out: dict = {"counts": {}}
    rows = []
    try:
        bf = body_file(tmp, "ns", BODY_NS)
        wrk(args, port, "/v1/chat/completions", bf, 16, lg.pid, up.pid, uport)  # warm-up
        wait_quiet([lg.pid])
        idle_rss = tree_rss_kb(lg.pid)
        idle = asyncio.run(_probe(port, 40))
        out["idle"] = {"rss_kb": idle_rss, **idle}
        rows.append(
            [
                "idle",
                0,
                idle_rss / 1024,
                None,
                None,
                idle["ttft_ms_p50"],
                idle["ttft_ms_p90"],
                idle["health_ms_p50"],
                idle["health_ms_p90"],
                0,
            ]
        )
        for n in args.streams:

            async def go(n=n) -> dict:
                ready, stop = asyncio.Event(), asyncio.Event()
                stats = {"first_chunk": 0, "bytes": 0, "errors": 0, "connect_errors": 0}
                t0 = time.monotonic()
                holder = asyncio.create_task(_open_streams(port, n, slow, ready, stop, stats))
                try:
                    await asyncio.wait_for(ready.wait(), 60)
                except TimeoutError:
                    pass
                opened_s = time.monotonic() - t0
                await asyncio.sleep(1.0)
                rss = tree_rss_kb(lg.pid)
                cpu0, b0, w0 = tree_cpu_ms(lg.pid), machine_busy_ms(), time.monotonic()
                probe = await _probe(port, 30)  # while they stay open (each lasts 20 s)
                cpu1, b1, w1 = tree_cpu_ms(lg.pid), machine_busy_ms(), time.monotonic()
                rss2 = tree_rss_kb(lg.pid)
                stop.set()
                holder.cancel()
                try:
                    await holder
                except (asyncio.CancelledError, Exception):
                    pass
                return {
                    "open": stats["first_chunk"],
                    "opened_s": opened_s,
                    "errors": stats["errors"] + stats["connect_errors"],
                    "rss_kb": max(rss, rss2),
                    "cpu_pct_of_core": 100 * (cpu1 - cpu0) / ((w1 - w0) * 1000),
                    "machine_busy_pct": 100 * (b1 - b0) / ((w1 - w0) * 1000 * (os.cpu_count() or 1)),
                    **probe,
                }

            r = asyncio.run(go())
            r["rss_kb_per_stream"] = (r["rss_kb"] - idle_rss) / max(r["open"], 1)
            out["counts"][n] = r
            log(f"streams {n}: {r['open']} open, RSS {r['rss_kb'] / 1024:.1f} MB, TTFT meanwhile {r['ttft_ms_p50']} ms")
            rows.append(
                [
                    f"{n} open",
                    r["open"],
                    r["rss_kb"] / 1024,
                    r["rss_kb_per_stream"],
                    r["cpu_pct_of_core"],
                    r["ttft_ms_p50"],
                    r["ttft_ms_p90"],
                    r["health_ms_p50"],
                    r["health_ms_p90"],
                    r["errors"],
                ]
            )
            time.sleep(22)  # let the abandoned streams end upstream before the next count
            wait_quiet([lg.pid, up.pid], 10)
    finally:
        lg.stop()
        up.stop()
    text = table(
        "Slow streams held open (1 chunk/s upstream), one worker: memory, CPU, and a new request's latency meanwhile",
        ["state", "open", "RSS MB", "kB/stream", "LG CPU % core", "TTFT p50", "TTFT p90", "live p50", "live p90", "errors"],
        rows,
    )
    return {**out, "text": text}
