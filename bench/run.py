"""Lockgate benchmark: the upstream alone, through Lockgate, and through peers.

Starts bench/fake_upstream.py, then one after the other: the upstream alone
(client -> upstream), nginx as a bare reverse proxy (if installed), Lockgate
(`<python> -m lockgate serve --workers 1`), LiteLLM proxy (from
bench/.venv) and Portkey's gateway (Node, from bench/peers), each in front of the same upstream, and measures with wrk, for
non-streaming and streaming chat:

  * requests/s at concurrency 64,
  * p50/p99 latency at concurrency 1 and 64,
  * time to first token at concurrency 1 (a small raw-socket client,
    sequential requests, median),
  * the server's CPU milliseconds per request: utime+stime of the process
    and all its descendants from /proc, before and after each run, divided by
    the chat completions the upstream answered in that window,
  * the server's resident memory (VmRSS of the process and its descendants)
    after warm-up and after the measured runs, and with --soak SECONDS its
    growth under alternating non-streaming and streaming load (soak.py).

Prints a table with ratios and writes JSON to bench/results/.  Everything
listens on 127.0.0.1; every process started here is stopped on exit.

Run it with bench/run.sh (which prepares bench/.venv with LiteLLM), or
directly: python bench/run.py --help
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from client import wait_ready
from common import BENCH, HOST, RESULTS, SLOW_DELAY_MS, TARGETS, Proc, _tmpdirs, default_gateway_python, free_port, log
from measure import bench_target, wait_for_quiet_machine
from profiling import profile_target
from report import env_info, print_profiles, report, write_json
from soak import minutes_table, soak_target
from targets import start_target


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--duration", type=float, default=float(os.environ.get("BENCH_DURATION", 10)), help="seconds per wrk run (default 10)"
    )
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per mode and target")
    ap.add_argument("--connections", type=int, default=64, help="the high concurrency (default 64)")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--ttft-requests", type=int, default=300, help="sequential streams for TTFT")
    ap.add_argument(
        "--ttft-slow-requests",
        type=int,
        default=40,
        help=f"sequential streams for TTFT with {SLOW_DELAY_MS} ms between upstream chunks",
    )
    ap.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated subset of {','.join(TARGETS)}")
    ap.add_argument("--modes", default="nonstream,stream")
    ap.add_argument("--gateway-python", default=default_gateway_python())
    ap.add_argument(
        "--lockgate-extra",
        default="",
        help="YAML appended to the generated Lockgate config, e.g. 'usage: {enabled: false}' to see what a feature costs",
    )
    ap.add_argument(
        "--custom",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="another server to measure side by side: a shell command with {port} (where to "
        "listen) and {upstream} (the fake upstream's /v1 base URL); repeatable",
    )
    ap.add_argument(
        "--max-wait-quiet",
        type=float,
        default=60.0,
        help="before each target, wait up to this many seconds for the machine to be mostly idle (0: don't wait)",
    )
    ap.add_argument("--quiet-pct", type=float, default=20.0, help="'mostly idle': at most this %% of all cores busy")
    ap.add_argument("--bench-venv", default=str(BENCH / ".venv"))
    ap.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    ap.add_argument("--profile", action="store_true", help="after measuring, profile Lockgate with py-spy during c64 runs")
    ap.add_argument("--profile-target", default="lockgate")
    ap.add_argument(
        "--soak",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="after measuring each proxy, drive alternating non-streaming and streaming load "
        "for this long, sampling its resident memory after each round (default 0: off)",
    )
    ap.add_argument(
        "--soak-round",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="seconds per soak round (default: a 15th of --soak, between 1 and 5)",
    )
    ap.add_argument("--soak-connections", type=int, default=32)
    ap.add_argument(
        "--compare",
        metavar="TREE",
        default=None,
        help="also measure the Lockgate of another checkout (a git worktree of an earlier commit) as "
        "'before', right after this one, with the same interpreter and configuration",
    )
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    args = ap.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    custom = {}
    for spec in args.custom:
        name, eq, cmd = spec.partition("=")
        if not eq or not name.strip() or not cmd.strip():
            ap.error(f"--custom wants NAME=COMMAND, got {spec!r}")
        custom[name.strip()] = cmd.strip()
    args.custom = custom
    for t in targets:
        if t not in TARGETS:
            ap.error(f"unknown target {t}")
    targets += [n for n in custom if n not in targets]
    order = [t for t in TARGETS if t in targets] + [n for n in custom]
    if args.compare:
        if not (Path(args.compare) / "lockgate" / "__init__.py").is_file():
            ap.error(f"--compare: no lockgate package in {args.compare}")
        at = order.index("lockgate") + 1 if "lockgate" in order else len(order)
        order.insert(at, "before")
    if not Path(args.wrk).exists():
        ap.error("wrk not found (apt-get install wrk)")

    out_dir = Path(args.out) if args.out else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tmp = Path(tempfile.mkdtemp(prefix="lockgate-bench-"))
    _tmpdirs.append(tmp)  # removed by _cleanup, after the processes using it are stopped
    results = {"env": env_info(args), "targets": {}}
    la = results["env"]["loadavg_at_start"][0]
    if la > 0.5:
        log(
            f"note: load average is {la:.2f} before starting: other work on this machine will add noise "
            "(CPU ms/request holds up best)"
        )

    uport = free_port()
    up = Proc(
        "upstream",
        [sys.executable, str(BENCH / "fake_upstream.py"), "--host", HOST, "--port", str(uport)],
        logfile=tmp / "upstream.log",
    )
    if not wait_ready(uport, "/health", up, 15):
        log(f"fake upstream did not start:\n{up.tail()}")
        return 1
    log(f"fake upstream on {HOST}:{uport} (pid {up.pid}); work dir {tmp}")

    try:
        for name in order:
            if name == "upstream":
                if args.max_wait_quiet > 0:
                    results.setdefault("busy_before_pct", {})[name] = wait_for_quiet_machine(args.quiet_pct, args.max_wait_quiet)
                res = bench_target(name, args, uport, up.pid, up.pid, uport, tmp)
                res["ok"] = True
                results["targets"][name] = res
                continue
            if args.max_wait_quiet > 0:
                results.setdefault("busy_before_pct", {})[name] = wait_for_quiet_machine(args.quiet_pct, args.max_wait_quiet)
            log(f"starting {name}")
            proc, port, why = start_target(name, args, tmp, uport)
            if proc is None:
                log(f"{name}: skipped: {why}")
                results["targets"][name] = {"ok": False, "skipped": why}
                continue
            try:
                log(f"{name} ready on {HOST}:{port} (pid {proc.pid})")
                res = bench_target(name, args, port, proc.pid, up.pid, uport, tmp)
                res["ok"] = True
                res["pid"] = proc.pid
                if args.soak > 0:
                    res["soak"] = soak_target(name, args, port, proc.pid, up.pid, uport, tmp)
                if args.profile and name == args.profile_target:
                    res["profile"] = profile_target(name, args, port, proc.pid, up.pid, uport, tmp, stamp, out_dir)
                results["targets"][name] = res
            except Exception as e:
                log(f"{name}: failed: {type(e).__name__}: {e}\n{proc.tail()}")
                results["targets"][name] = {"ok": False, "skipped": f"failed: {type(e).__name__}: {e}"}
            finally:
                proc.stop()
    finally:
        up.stop()

    text = report(results, args, order)
    print(text)
    for n in order:
        sk = results["targets"].get(n, {}).get("soak")
        if sk and sk.get("minutes"):
            print(f"\nSoak of {n}, per minute (p50: median of the minute's rounds, p99: their largest; ns/st: non-stream/stream)")
            print(minutes_table(sk))
    print_profiles(results)
    dest = write_json(results, text, out_dir, stamp)
    print(f"\nJSON: {dest}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
