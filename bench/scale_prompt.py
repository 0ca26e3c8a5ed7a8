"""scale.py prompt: CPU per request for 1 KB to 10 MB request bodies, the upstream alone against through Lockgate."""

from __future__ import annotations

from common import BODY_NS, log
from scale_support import body_file, noise_pct, start_lockgate, start_upstream, table, workdir, wrk
from targets import lockgate_config

SIZES = (("1 KB", 1_000), ("100 KB", 100_000), ("1 MB", 1_000_000), ("10 MB", 10_000_000))


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
