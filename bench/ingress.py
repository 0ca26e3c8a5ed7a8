"""Gateway CPU per request of the ingress endpoints against chat, side by side in one run.

For the same exchange with the same fake upstream (one chat.completion, or a
20-chunk stream), one Lockgate worker with the default configuration, it
measures the gateway's CPU ms per request (utime+stime from /proc, divided by
the chat completions the upstream answered) for:

  chat       POST /v1/chat/completions
  responses  POST /v1/responses (translated to chat; stored, OpenAI's default)
  resp-nostore  the same with "store": false
  messages   POST /v1/messages (translated to chat)

each non-streaming and streaming. The cases run in rounds, interleaved (round 1:
every case, round 2: every case…), so the machine's noise hits them alike; the
table gives each case's median over the rounds and its ratio to chat's median,
and the median of the per-round ratios.

--compare SRC starts a second gateway from another source tree (a directory that
holds a `lockgate/` package, e.g. `git archive <commit> lockgate | tar -x -C SRC`)
beside this checkout's, and interleaves it too: before and after in one run.
--profile CASE records py-spy (raw collapsed stacks) on this checkout's gateway during
one more run of CASE (e.g. responses-stream) and prints where its time goes.

    bench/.venv/bin/python bench/ingress.py --rounds 5 --duration 3
    bench/.venv/bin/python bench/ingress.py --compare /tmp/lg-before --rounds 5
    bench/.venv/bin/python bench/ingress.py --rounds 1 --profile responses-nonstream
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from client import wait_ready
from common import BODY_NS, BODY_S, HOST, MODEL, REPO, RESULTS, Proc, default_gateway_python, free_port, log
from measure import run_wrk
from profiling import summarize_collapsed
from scale_support import start_upstream, workdir
from targets import lockgate_config

TEXT = "Say hello to the benchmark."
MSG = [{"role": "user", "content": TEXT}]
CASES: dict[str, tuple[str, dict, dict]] = {
    "chat": ("/v1/chat/completions", BODY_NS, BODY_S),
    "responses": ("/v1/responses", {"model": MODEL, "input": TEXT}, {"model": MODEL, "input": TEXT, "stream": True}),
    "resp-nostore": (
        "/v1/responses",
        {"model": MODEL, "input": TEXT, "store": False},
        {"model": MODEL, "input": TEXT, "store": False, "stream": True},
    ),
    "messages": (
        "/v1/messages",
        {"model": MODEL, "max_tokens": 64, "messages": MSG},
        {"model": MODEL, "max_tokens": 64, "messages": MSG, "stream": True},
    ),
}
MODES = ("nonstream", "stream")


def _start(args, tmp: Path, uport: int, src: Path | None, name: str) -> tuple[Proc, int]:
    """Lockgate from this checkout, or from `src` (its lockgate/ first on the path)."""
    d = tmp / name
    d.mkdir()
    cfg = lockgate_config(d, uport, args.lockgate_extra)
    port = free_port()
    env = dict(os.environ)
    env.pop("LOCKGATE_CONFIG", None)
    env["PYTHONPATH"] = os.pathsep.join([str(src or REPO), env.get("PYTHONPATH", "")])
    where = subprocess.run(
        [args.gateway_python, "-c", "import lockgate; print(lockgate.__file__)"], env=env, cwd=d, capture_output=True, text=True
    ).stdout.strip()
    argv = [args.gateway_python, "-m", "lockgate", "serve", "--config", str(cfg), "--host", HOST, "--port", str(port)]
    proc = Proc(f"lockgate-{name}", argv + ["--workers", "1"], env=env, cwd=d, logfile=d / "lockgate.log")
    if not wait_ready(port, "/health/live", proc, 90):
        tail = proc.tail()
        proc.stop()
        raise RuntimeError(f"lockgate ({name}) did not start:\n{tail}")
    log(f"lockgate {name}: {where}, pid {proc.pid}, port {port}")
    return proc, port


def _profile(args, gw, up, uport, bodies, tmp: Path, stamp: str) -> dict:
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        spy = Path(shutil.which("py-spy") or "py-spy")
    case, _, mode = args.profile.rpartition("-")  # resp-nostore-stream -> resp-nostore, stream
    proc, port = gw
    path = CASES[case][0]
    raw = RESULTS / f"profile-ingress-{args.profile}-{stamp}.txt"
    dur = max(3, int(args.duration))
    log(f"profile: {args.profile} with py-spy for {dur}s")
    spy_p = subprocess.Popen(
        [
            str(spy),
            "record",
            "--nonblocking",
            *(["--gil"] if os.environ.get("BENCH_SPY_GIL") else []),
            "-r",
            "500",
            "-d",
            str(dur + 1),
            "-f",
            "raw",
            "-o",
            str(raw),
            "-p",
            str(proc.pid),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)
    w = run_wrk(args, port, path, bodies[(case, mode)], args.connections, dur, proc.pid, up.pid, uport)
    spy_p.wait(dur + 30)
    top = summarize_collapsed(raw, 40)
    log(f"profile: {w['upstream_served']} requests, {top.get('samples', 0)} samples, {w['server_cpu_ms_per_req']:.3f} CPU ms/req")
    return {"raw": str(raw), "requests": w["upstream_served"], **top}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run (default 3)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {','.join(CASES)}")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--compare", type=Path, default=None, help="a source tree holding another lockgate/ to run beside")
    ap.add_argument("--profile", default=None, help="CASE-MODE to profile with py-spy after the rounds")
    ap.add_argument("--lockgate-extra", default="", help="YAML appended to the generated config")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    ap.add_argument("--gateway-python", default=default_gateway_python())
    args = ap.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    modes = [m for m in args.modes.split(",") if m]
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tmp = workdir("ingress")
    up, uport = start_upstream(tmp)
    gateways = {"this": _start(args, tmp, uport, None, "this")}
    if args.compare:
        gateways["compare"] = _start(args, tmp, uport, args.compare.resolve(), "compare")
    bodies = {}
    for case in cases:
        for mode, body in zip(MODES, CASES[case][1:]):
            f = tmp / f"body-{case}-{mode}.json"
            f.write_text(json.dumps(body))
            bodies[(case, mode)] = f
    runs: dict[tuple[str, str, str], list[dict]] = {}
    try:
        for gw_name, (proc, port) in gateways.items():  # warm-up: imports, pools, caches
            for case in cases:
                for mode in modes:
                    run_wrk(args, port, CASES[case][0], bodies[(case, mode)], 16, 1, proc.pid, up.pid, uport)
        for r in range(args.rounds):
            for case in cases:
                for mode in modes:
                    for gw_name, (proc, port) in gateways.items():
                        w = run_wrk(
                            args,
                            port,
                            CASES[case][0],
                            bodies[(case, mode)],
                            args.connections,
                            args.duration,
                            proc.pid,
                            up.pid,
                            uport,
                        )
                        runs.setdefault((gw_name, case, mode), []).append(w)
                        log(
                            f"round {r + 1} {gw_name} {case} {mode}: {w['rps']:.0f} req/s, "
                            f"{w['server_cpu_ms_per_req']:.3f} CPU ms/req, {w['errors_total']} errors, "
                            f"noise {w['other_cpu_pct']:.0f}%"
                        )
        profile = _profile(args, gateways["this"], up, uport, bodies, tmp, stamp) if args.profile else None
    finally:
        for proc, _ in gateways.values():
            proc.stop()
        up.stop()
    out = report(runs, gateways, cases, modes)
    if profile:
        out["profile"] = profile
        print("\npy-spy: self % by function")
        for f, pct in profile.get("self_pct", [])[:30]:
            print(f"  {pct:5.1f}  {f}")
        print("py-spy: inclusive % of lockgate functions")
        for f, pct in profile.get("lockgate_inclusive_pct", [])[:30]:
            print(f"  {pct:5.1f}  {f}")
    out["env"] = {
        "time": stamp,
        "argv": sys.argv[1:],
        "git": subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
    }
    dest = RESULTS / f"ingress-{stamp}.json"
    dest.write_text(json.dumps(out, indent=2, default=str))
    print(f"JSON: {dest}")
    return 0


def report(runs, gateways, cases, modes) -> dict:
    out: dict = {"cases": {}}
    lines = []
    head = f"{'gateway':8}  {'endpoint':13} {'mode':9}  {'CPU ms/req':>10}  {'min..max':>13}  {'vs chat':>7}  {'per-round':>9}  {'req/s':>7}  {'errors':>6}"
    lines.append(head)
    for gw in gateways:
        for mode in modes:
            base = runs.get((gw, "chat", mode))
            for case in cases:
                rs = runs.get((gw, case, mode))
                if not rs:
                    continue
                cpu = [w["server_cpu_ms_per_req"] for w in rs]
                med = statistics.median(cpu)
                rel = med / statistics.median([w["server_cpu_ms_per_req"] for w in base]) if base else None
                per_round = (
                    statistics.median([a["server_cpu_ms_per_req"] / b["server_cpu_ms_per_req"] for a, b in zip(rs, base)])
                    if base
                    else None
                )
                rps = statistics.median([w["rps"] for w in rs])
                errors = sum(w["errors_total"] for w in rs)
                out["cases"][f"{gw} {case} {mode}"] = {
                    "cpu_ms_per_req": cpu,
                    "median": med,
                    "vs_chat": rel,
                    "per_round_vs_chat": per_round,
                    "rps": rps,
                    "errors": errors,
                    "noise_pct": [w["other_cpu_pct"] for w in rs],
                }
                lines.append(
                    f"{gw:8}  {case:13} {mode:9}  {med:10.3f}  {min(cpu):6.3f}..{max(cpu):6.3f}  "
                    f"{rel if rel is not None else float('nan'):7.2f}  {per_round if per_round is not None else float('nan'):9.2f}  "
                    f"{rps:7.0f}  {errors:6d}"
                )
    noise = max((w["other_cpu_pct"] for rs in runs.values() for w in rs), default=0.0)
    lines.append(f"(noise: other processes took up to {noise:.0f}% of the machine)")
    out["text"] = "\n".join(lines)
    print("\n" + out["text"])
    return out


if __name__ == "__main__":
    sys.exit(main())
