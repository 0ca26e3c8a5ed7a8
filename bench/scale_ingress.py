"""scale.py ingress: /v1/responses and /v1/messages against /v1/chat/completions for the same exchange."""

from __future__ import annotations

from common import BODY_NS, BODY_S, MODEL, log
from scale_support import body_file, noise_pct, start_lockgate, start_upstream, table, workdir, wrk
from targets import lockgate_config


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
