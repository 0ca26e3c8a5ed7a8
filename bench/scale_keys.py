"""scale.py keys and models: 100,000 virtual keys (cache hit and miss) and 1,000 model groups, CPU per request."""

from __future__ import annotations

import json
import os
import subprocess
import time

from common import BODY_NS, HOST, KEY, MODEL, REPO, log
from measure import tree_rss_kb
from scale_support import body_file, noise_pct, start_lockgate, start_upstream, table, workdir, wrk
from targets import lockgate_config

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
