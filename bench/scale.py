"""How Lockgate's cost grows with the work: a companion of bench/run.py.

Each experiment starts its own fake upstream and Lockgate (one worker, the
default configuration unless said), prints a table and writes JSON to
bench/results/scale-<experiment>-<time>.json:

  prompt    CPU per request for 1 KB, 100 KB, 1 MB and 10 MB request bodies,
            the upstream alone against through Lockgate;
  streams   1,000 and 5,000 slow streams (one chunk a second) held open:
            resident memory per open stream, Lockgate's CPU while they are
            open, and the event loop's lag seen from outside (TTFT of a new
            fast stream and GET /health/live latency, idle against loaded);
  keys      100,000 virtual keys in the SQLite store: the master key, one
            virtual key (cache hit) and random keys of the 100,000 (cache
            misses) — CPU per request;
  models    1,000 model groups in the config against 1: CPU per request;
  pg        the usage store on PostgreSQL (a throwaway database on
            127.0.0.1:5432) against SQLite and usage off, at saturation:
            req/s, CPU per request, records written per second;
  workers   --workers 2 against 1, the fake upstream on 2 processes;
  ingress   /v1/responses and /v1/messages (translated to a chat upstream)
            against /v1/chat/completions for the same exchange.

Run it with bench/.venv's python (bench/run.sh makes it):
    bench/.venv/bin/python bench/scale.py prompt streams keys models pg workers ingress
    bench/.venv/bin/python bench/scale.py prompt --duration 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from client import HttpConn, wait_ready
from common import BENCH, BODY_NS, BODY_S, HOST, KEY, MODEL, REPO, RESULTS, Proc, _tmpdirs, free_port, log
from measure import machine_busy_ms, run_wrk, tree_cpu_ms, tree_rss_kb, wait_quiet
from targets import lockgate_config

VARY = BENCH / "wrk" / "vary.lua"
SIZES = (("1 KB", 1_000), ("100 KB", 100_000), ("1 MB", 1_000_000), ("10 MB", 10_000_000))


# --------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------
def start_upstream(tmp: Path, workers: int = 1) -> tuple[Proc, int]:
    port = free_port()
    argv = [sys.executable, str(BENCH / "fake_upstream.py"), "--host", HOST, "--port", str(port), "--workers", str(workers)]
    up = Proc(f"upstream-{port}", argv, logfile=tmp / f"upstream-{port}.log")
    if not wait_ready(port, "/health", up, 15):
        raise RuntimeError(f"fake upstream did not start:\n{up.tail()}")
    return up, port


def start_lockgate(args, tmp: Path, cfg: Path, workers: int = 1) -> tuple[Proc, int]:
    port = free_port()
    env = dict(os.environ)
    env.pop("LOCKGATE_CONFIG", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    argv = [args.gateway_python, "-m", "lockgate", "serve", "--config", str(cfg), "--host", HOST, "--port", str(port)]
    proc = Proc(f"lockgate-{port}", argv + ["--workers", str(workers)], env=env, cwd=tmp, logfile=tmp / f"lockgate-{port}.log")
    if not wait_ready(port, "/health/live", proc, 90):
        tail = proc.tail()
        proc.stop()
        raise RuntimeError(f"lockgate did not start:\n{tail}")
    return proc, port


def workdir(name: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=f"lockgate-scale-{name}-"))
    _tmpdirs.append(d)
    return d


def body_file(tmp: Path, name: str, body: dict | str) -> Path:
    f = tmp / f"body-{name}.json"
    f.write_text(body if isinstance(body, str) else json.dumps(body))
    return f


def wrk(args, port, path, bfile, conns, server_pid, up_pid, uport, **kw) -> dict:
    env = dict(BENCH_WRK_DIR=str(BENCH / "wrk"), **kw.pop("env", {}))
    return run_wrk(args, port, path, bfile, conns, args.duration, server_pid, up_pid, uport, script=VARY, env_extra=env)


def table(title: str, head: list[str], rows: list[list]) -> str:
    def f(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    cells = [[f(v) for v in r] for r in rows]
    w = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    out = [title, "  ".join(h.rjust(w[i]) if i else h.ljust(w[i]) for i, h in enumerate(head))]
    for c in cells:
        out.append("  ".join(v.rjust(w[i]) if i else v.ljust(w[i]) for i, v in enumerate(c)))
    return "\n".join(out)


def noise_pct(runs: list[dict]) -> float:
    return max([r.get("other_cpu_pct", 0.0) for r in runs] or [0.0])


# --------------------------------------------------------------------------
# prompt size
# --------------------------------------------------------------------------
def exp_prompt(args) -> dict:
    tmp = workdir("prompt")
    up, uport = start_upstream(tmp)
    lg, port = start_lockgate(args, tmp, lockgate_config(tmp, uport))
    rows, out, runs = [], {}, []
    try:
        for label, n in SIZES:
            body = dict(BODY_NS, messages=[{"role": "user", "content": "x" * n}])
            bf = body_file(tmp, f"prompt-{n}", body)
            conns = 8 if n <= 100_000 else 2
            a = wrk(args, uport, "/v1/chat/completions", bf, conns, up.pid, up.pid, uport)
            b = wrk(args, port, "/v1/chat/completions", bf, conns, lg.pid, up.pid, uport)
            runs += [a, b]
            out[label] = {"bytes": len(bf.read_bytes()), "upstream_alone": a, "lockgate": b}
            added = b["server_cpu_ms_per_req"]
            rows.append(
                [
                    label,
                    a["server_cpu_ms_per_req"],
                    b["upstream_cpu_ms_per_req"],
                    added,
                    added / (n / 1e6) if n >= 100_000 else None,
                    a["rps"],
                    b["rps"],
                    b["errors_total"],
                ]
            )
            log(f"prompt {label}: upstream alone {a['rps']:.0f} req/s, lockgate {b['rps']:.0f} req/s, {added:.2f} CPU ms/req")
    finally:
        lg.stop()
        up.stop()
    text = table(
        "CPU per non-streaming request against request body size (upstream alone vs through Lockgate, one worker)",
        [
            "body",
            "upstream alone ms",
            "upstream behind LG ms",
            "Lockgate ms",
            "LG ms per MB",
            "req/s alone",
            "req/s LG",
            "errors",
        ],
        rows,
    )
    return {"sizes": out, "noise_pct": noise_pct(runs), "text": text}


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


# --------------------------------------------------------------------------
# keys and models
# --------------------------------------------------------------------------
_MAKE_KEYS = r"""
import sys, datetime, sqlalchemy as sa
from lockgate.auth.keys import hash_key, display_prefix
from lockgate.store.tables import api_keys
db, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
eng = sa.create_engine(f"sqlite:///{db}")
now = datetime.datetime.now(datetime.timezone.utc)
with eng.begin() as c:
    for lo in range(0, n, 5000):
        c.execute(api_keys.insert(), [
            {"id": f"key_bench{i:07d}", "key_hash": hash_key(f"{prefix}{i:07d}"), "key_prefix": display_prefix(f"{prefix}{i:07d}"),
             "name": f"bench {i}", "created_at": now, "revoked": False}
            for i in range(lo, min(n, lo + 5000))])
print(c.execute(sa.select(sa.func.count()).select_from(api_keys)).scalar() if False else n)
"""


def exp_keys(args) -> dict:
    tmp = workdir("keys")
    up, uport = start_upstream(tmp)
    cfg = lockgate_config(tmp, uport)
    prefix = "lg-benchkey"
    # the store is made (migrated) by a first start; then 100,000 keys go straight into it
    lg, port = start_lockgate(args, tmp, cfg)
    lg.stop()
    t0 = time.monotonic()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([args.gateway_python, "-c", _MAKE_KEYS, str(tmp / "lockgate.db"), prefix, str(args.keys)], check=True, env=env)
    log(f"keys: {args.keys:,} keys written in {time.monotonic() - t0:.1f}s")
    lg, port = start_lockgate(args, tmp, cfg)
    rows, out, runs = [], {}, []
    try:
        bf = body_file(tmp, "ns", BODY_NS)
        wrk(args, port, "/v1/chat/completions", bf, 16, lg.pid, up.pid, uport)  # warm-up
        cases = [
            ("master key", {}),
            ("one virtual key (cache hit)", {"BENCH_KEY_PREFIX": prefix, "BENCH_KEY_COUNT": "1"}),
            (f"random of {args.keys:,} keys (misses)", {"BENCH_KEY_PREFIX": prefix, "BENCH_KEY_COUNT": str(args.keys)}),
            ("unknown keys (401)", {"BENCH_KEY_PREFIX": "lg-nosuchkey", "BENCH_KEY_COUNT": str(args.keys)}),
        ]
        for label, env_ in cases:
            w = wrk(args, port, "/v1/chat/completions", bf, 64, lg.pid, up.pid, uport, env=env_)
            runs.append(w)
            # a 401 never reaches the upstream: divide by the requests wrk made instead
            per_req = w["server_cpu_ms"] / max(w["requests"], 1) if "401" in label else w["server_cpu_ms_per_req"]
            out[label] = dict(w, cpu_ms_per_req=per_req, rss_kb=tree_rss_kb(lg.pid))
            rows.append([label, w["rps"], per_req, w["p50_ms"], w["p99_ms"], w["errors"]["status"], out[label]["rss_kb"] / 1024])
            log(f"keys {label}: {w['rps']:.0f} req/s, {per_req:.3f} CPU ms/req")
    finally:
        lg.stop()
        up.stop()
    text = table(
        f"Admission with {args.keys:,} virtual keys in SQLite (non-stream @c64, one worker)",
        ["keys used", "req/s", "CPU ms/req", "p50 ms", "p99 ms", "non-2xx", "RSS MB"],
        rows,
    )
    return {"cases": out, "noise_pct": noise_pct(runs), "text": text}


def exp_models(args) -> dict:
    tmp = workdir("models")
    up, uport = start_upstream(tmp)
    one = lockgate_config(tmp, uport)
    many = tmp / "lockgate-models.yaml"
    dep = (
        f"      - provider: openai\n        model: {MODEL}\n        api_base: http://{HOST}:{uport}/v1\n        api_key: sk-up\n"
    )
    many.write_text(
        f"auth:\n  master_key: {KEY}\nmodels:\n"
        + "".join(f"  - name: group-{i:04d}\n    deployments:\n{dep}" for i in range(args.models))
    )
    rows, out, runs = [], {}, []
    bf = body_file(tmp, "ns", BODY_NS)
    bf_var = body_file(tmp, "var", json.dumps(dict(BODY_NS, model="@MODEL@")))
    for label, cfg, body, env_ in (
        ("1 model group", one, bf, {}),
        (f"{args.models:,} groups, one model used", many, body_file(tmp, "g0", dict(BODY_NS, model="group-0000")), {}),
        (
            f"{args.models:,} groups, random model",
            many,
            bf_var,
            {"BENCH_MODEL_PREFIX": "group-", "BENCH_MODEL_COUNT": str(args.models)},
        ),
    ):
        t0 = time.monotonic()
        lg, port = start_lockgate(args, tmp, cfg)
        started = time.monotonic() - t0
        try:
            wrk(args, port, "/v1/chat/completions", body, 16, lg.pid, up.pid, uport, env=env_)  # warm-up
            w = wrk(args, port, "/v1/chat/completions", body, 64, lg.pid, up.pid, uport, env=env_)
            runs.append(w)
            out[label] = dict(w, start_s=started, rss_kb=tree_rss_kb(lg.pid))
            rows.append(
                [
                    label,
                    w["rps"],
                    w["server_cpu_ms_per_req"],
                    w["p50_ms"],
                    w["errors_total"],
                    started,
                    out[label]["rss_kb"] / 1024,
                ]
            )
            log(f"models {label}: {w['rps']:.0f} req/s, {w['server_cpu_ms_per_req']:.3f} CPU ms/req")
        finally:
            lg.stop()
    up.stop()
    text = table(
        "Routing with many model groups (non-stream @c64, one worker)",
        ["config", "req/s", "CPU ms/req", "p50 ms", "errors", "start s", "RSS MB"],
        rows,
    )
    return {"cases": out, "noise_pct": noise_pct(runs), "text": text}


# --------------------------------------------------------------------------
# PostgreSQL usage store
# --------------------------------------------------------------------------
def _psql(db: str, sql: str) -> str:
    r = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-tAc", sql], capture_output=True, text=True, timeout=60
    )
    if r.returncode:
        raise RuntimeError(r.stderr.strip())
    return r.stdout.strip()


def exp_pg(args) -> dict:
    if not shutil.which("psql"):
        return {"skipped": "psql not found", "text": "pg: skipped (psql not found)"}
    tmp = workdir("pg")
    dbname = f"lockgate_bench_{os.getpid()}"
    try:
        _psql("test", f"CREATE DATABASE {dbname}")
    except Exception as e:
        return {"skipped": str(e), "text": f"pg: skipped: PostgreSQL on 127.0.0.1:5432 not reachable ({e})"}
    up, uport = start_upstream(tmp)
    rows, out, runs = [], {}, []
    try:
        url = f"postgresql://postgres@127.0.0.1:5432/{dbname}"
        for label, extra in (
            ("usage off", "usage: {enabled: false}"),
            ("SQLite (default)", ""),
            ("PostgreSQL", f"database: {{url: '{url}'}}"),
        ):
            cfg = lockgate_config(tmp, uport, extra)
            lg, port = start_lockgate(args, tmp, cfg)
            try:
                for mode, body in (("nonstream", BODY_NS), ("stream", BODY_S)):
                    bf = body_file(tmp, mode, body)
                    wrk(args, port, "/v1/chat/completions", bf, 16, lg.pid, up.pid, uport)  # warm-up
                    n0 = _pg_rows(dbname) if label == "PostgreSQL" else None
                    w = wrk(args, port, "/v1/chat/completions", bf, 64, lg.pid, up.pid, uport)
                    runs.append(w)
                    rec = None
                    if n0 is not None:
                        time.sleep(3)  # the writer's last batches
                        rec = (_pg_rows(dbname) - n0) / w["wall_s"]
                        w["pg_records_per_s"] = rec
                        w["pg_records"] = _pg_rows(dbname) - n0
                    # each process keeps one spool file open (empty unless the store lagged): its bytes tell
                    spooled = sum(f.stat().st_size for f in (tmp / "lockgate-spool").glob("usage-*.spool"))
                    out[f"{label} {mode}"] = dict(w, spool_bytes=spooled)
                    rows.append(
                        [
                            f"{label}, {mode}",
                            w["rps"],
                            w["server_cpu_ms_per_req"],
                            w["p99_ms"],
                            rec,
                            w.get("pg_records"),
                            w["upstream_served"],
                            spooled,
                        ]
                    )
                    log(f"pg {label} {mode}: {w['rps']:.0f} req/s, {w['server_cpu_ms_per_req']:.3f} CPU ms/req, records/s {rec}")
            finally:
                lg.stop()
    finally:
        up.stop()
        try:
            _psql("test", f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        except Exception as e:
            log(f"pg: could not drop {dbname}: {e}")
    text = table(
        "Usage store at saturation (@c64, one worker): PostgreSQL vs SQLite vs off",
        ["store, mode", "req/s", "CPU ms/req", "p99 ms", "PG rec/s", "PG records", "requests", "spool bytes"],
        rows,
    )
    return {"cases": out, "noise_pct": noise_pct(runs), "text": text}


def _pg_rows(db: str) -> int:
    return int(_psql(db, "SELECT count(*) FROM usage_records") or 0)


# --------------------------------------------------------------------------
# workers
# --------------------------------------------------------------------------
def exp_workers(args) -> dict:
    tmp = workdir("workers")
    up, uport = start_upstream(tmp, workers=2)
    rows, out, runs = [], {}, []
    try:
        for mode, body in (("nonstream", BODY_NS), ("stream", BODY_S)):
            bf = body_file(tmp, mode, body)
            a = wrk(args, uport, "/v1/chat/completions", bf, 64, up.pid, up.pid, uport)
            out[f"upstream alone {mode}"] = a
            rows.append([f"upstream alone (2 procs), {mode}", a["rps"], None, None, a["errors_total"]])
            for n in (1, 2):
                lg, port = start_lockgate(args, tmp, lockgate_config(tmp, uport), workers=n)
                try:
                    wrk(args, port, "/v1/chat/completions", bf, 32, lg.pid, up.pid, uport)  # warm-up
                    w = wrk(args, port, "/v1/chat/completions", bf, 64, lg.pid, up.pid, uport)
                    runs.append(w)
                    # /stats answers for one upstream process only: divide by wrk's count instead
                    w["cpu_ms_per_req"] = w["server_cpu_ms"] / max(w["requests"], 1)
                    w["upstream_cpu_ms_per_req"] = None
                    out[f"workers {n} {mode}"] = w
                    rows.append(
                        [f"lockgate --workers {n}, {mode}", w["rps"], w["cpu_ms_per_req"], w["p99_ms"], w["errors_total"]]
                    )
                    log(f"workers {n} {mode}: {w['rps']:.0f} req/s")
                finally:
                    lg.stop()
            r1, r2 = out[f"workers 1 {mode}"]["rps"], out[f"workers 2 {mode}"]["rps"]
            out[f"ratio {mode}"] = r2 / r1 if r1 else None
            rows.append([f"  2 workers / 1, {mode}", out[f"ratio {mode}"], None, None, None])
    finally:
        up.stop()
    text = table(
        "--workers 2 vs 1 (@c64; the fake upstream on 2 processes, its own req/s alone shown for headroom)",
        ["target", "req/s", "CPU ms/req", "p99 ms", "errors"],
        rows,
    )
    return {"cases": out, "noise_pct": noise_pct(runs), "text": text}


# --------------------------------------------------------------------------
# ingress endpoints
# --------------------------------------------------------------------------
def exp_ingress(args) -> dict:
    tmp = workdir("ingress")
    up, uport = start_upstream(tmp)
    lg, port = start_lockgate(args, tmp, lockgate_config(tmp, uport))
    text_in = "Say hello to the benchmark."
    cases = [
        ("chat", "/v1/chat/completions", BODY_NS, BODY_S),
        (
            "responses (translated)",
            "/v1/responses",
            {"model": MODEL, "input": text_in},
            {"model": MODEL, "input": text_in, "stream": True},
        ),
        (
            "responses, store false",
            "/v1/responses",
            {"model": MODEL, "input": text_in, "store": False},
            {"model": MODEL, "input": text_in, "stream": True, "store": False},
        ),
        (
            "messages (translated)",
            "/v1/messages",
            {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": text_in}]},
            {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": text_in}], "stream": True},
        ),
    ]
    rows, out, runs = [], {}, []
    try:
        for label, path, ns, s in cases:
            for mode, body in (("nonstream", ns), ("stream", s)):
                bf = body_file(tmp, f"{label.split()[0]}-{mode}", body)
                wrk(args, port, path, bf, 16, lg.pid, up.pid, uport)  # warm-up
                w = wrk(args, port, path, bf, 64, lg.pid, up.pid, uport)
                runs.append(w)
                out[f"{label} {mode}"] = w
                base = out.get(f"chat {mode}", {}).get("server_cpu_ms_per_req")
                rel = w["server_cpu_ms_per_req"] / base if base else None
                rows.append([f"{label}, {mode}", w["rps"], w["server_cpu_ms_per_req"], rel, w["p50_ms"], w["errors_total"]])
                log(f"ingress {label} {mode}: {w['rps']:.0f} req/s, {w['server_cpu_ms_per_req']:.3f} CPU ms/req")
    finally:
        lg.stop()
        up.stop()
    text = table(
        "Ingress endpoints against chat for the same exchange (@c64, one worker, chat upstream)",
        ["endpoint, mode", "req/s", "CPU ms/req", "vs chat", "p50 ms", "errors"],
        rows,
    )
    return {"cases": out, "noise_pct": noise_pct(runs), "text": text}


EXPERIMENTS = {
    "prompt": exp_prompt,
    "streams": exp_streams,
    "keys": exp_keys,
    "models": exp_models,
    "pg": exp_pg,
    "workers": exp_workers,
    "ingress": exp_ingress,
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiments", nargs="+", choices=list(EXPERIMENTS))
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (default 5)")
    ap.add_argument("--streams", default="1000,5000", help="open stream counts (default 1000,5000)")
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    ap.add_argument("--gateway-python", default=os.environ.get("LOCKGATE_PYTHON", str(REPO / ".venv/bin/python")))
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    args.streams = [int(x) for x in args.streams.split(",") if x]
    out_dir = Path(args.out) if args.out else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in args.experiments:
        log(f"scale: {name} (load average {os.getloadavg()[0]:.1f})")
        res = EXPERIMENTS[name](args)
        res["env"] = {
            "time": stamp,
            "loadavg": os.getloadavg(),
            "duration_s": args.duration,
            "lockgate_git": subprocess.run(
                ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
            ).stdout.strip(),
        }
        noise = res.get("noise_pct")
        print(
            "\n"
            + res["text"]
            + (f"\n(noise: other processes took up to {noise:.0f}% of the machine)" if noise is not None else "")
        )
        dest = out_dir / f"scale-{name}-{stamp}.json"
        dest.write_text(json.dumps(res, indent=2, default=str))
        print(f"JSON: {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
