"""What every bench/scale.py experiment shares: its processes, work folders, wrk runs and tables."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from client import wait_ready
from common import BENCH, HOST, REPO, Proc, _tmpdirs, free_port
from measure import run_wrk

VARY = BENCH / "wrk" / "vary.lua"


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
