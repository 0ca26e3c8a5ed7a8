"""What the benchmark's modules share: paths, the model names and request
bodies, logging, and the child processes (each in its own session, all
stopped on exit, on SIGTERM and on SIGINT)."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
WRK_SCRIPT = BENCH / "wrk" / "post.lua"
KEY = "sk-bench"
MODEL = "bench-model"
SLOW_MODEL = "bench-model-delay10"  # the upstream sleeps 10 ms between chunks for this name
SLOW_DELAY_MS = 10
N_CHUNKS = 20
CONTENT = "".join(f"tok{i} " for i in range(N_CHUNKS))
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"

BODY_NS = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello to the benchmark."}]}
BODY_S = dict(BODY_NS, stream=True, stream_options={"include_usage": True})

TARGETS = ("upstream", "nginx", "lockgate", "litellm", "portkey")
PEERS = ("litellm", "portkey")  # the other gateways, compared with Lockgate in the ratios

# Headers a target needs on every request, by its port (Portkey takes its
# provider and upstream per request); HttpConn and the wrk script add them.
EXTRA_HEADERS: dict[int, dict[str, str]] = {}


def default_gateway_python() -> str:
    """LOCKGATE_PYTHON, else bench/.venv-gateway (requirements.lock alone, as the image installs it: made by
    bench/run.sh), else the project's .venv (which also holds the test tools, some of which libraries pick up
    at import when present: structlog imports rich, for one)."""
    for candidate in (os.environ.get("LOCKGATE_PYTHON"), str(BENCH / ".venv-gateway/bin/python")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return str(REPO / ".venv/bin/python")


def wrk_headers_env(port: int) -> str:
    """EXTRA_HEADERS of a port as the BENCH_HEADERS value bench/wrk/post.lua reads."""
    return "\n".join(f"{k}: {v}" for k, v in EXTRA_HEADERS.get(port, {}).items())


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------
_procs: list["Proc"] = []


class Proc:
    """A child process in its own session; stop() ends its whole group."""

    def __init__(self, name: str, argv: list[str], env=None, cwd=None, logfile: Path | None = None):
        self.name = name
        self.argv = argv
        self.logfile = logfile
        out = open(logfile, "wb") if logfile else subprocess.DEVNULL
        self.p = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self.pid = self.p.pid
        _procs.append(self)

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self in _procs:
            _procs.remove(self)
        if self.p.poll() is not None:
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)  # the group we created: pgid == our child's pid
        except ProcessLookupError:
            return
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait(5)
        # a group may outlive its leader (workers); make sure it's gone
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def tail(self, n: int = 25) -> str:
        if not self.logfile or not self.logfile.exists():
            return ""
        lines = self.logfile.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])


_tmpdirs: list[Path] = []


def _cleanup() -> None:
    for p in list(_procs):
        try:
            p.stop(timeout=5)
        except Exception:
            pass
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)


def _on_signal(signum, frame):
    _cleanup()
    sys.exit(128 + signum)


atexit.register(_cleanup)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]
