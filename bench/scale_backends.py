"""scale.py pg and workers: the usage store on PostgreSQL against SQLite, and --workers 2 against 1."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from common import BODY_NS, BODY_S, log
from scale_support import body_file, noise_pct, start_lockgate, start_upstream, table, workdir, wrk
from targets import lockgate_config


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
