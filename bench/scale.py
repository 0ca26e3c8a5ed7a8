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
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, RESULTS, default_gateway_python, log
from scale_backends import exp_pg, exp_workers
from scale_ingress import exp_ingress
from scale_keys import exp_keys, exp_models
from scale_prompt import exp_prompt
from scale_streams import exp_streams

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
    ap.add_argument("--gateway-python", default=default_gateway_python())
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
