"""--profile: py-spy on the server under test during concurrency-64 runs, and
a summary of its collapsed stacks."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from common import log
from measure import run_wrk


def profile_target(
    name: str, args, port: int, pid: int, upstream_pid: int, uport: int, tmp: Path, stamp: str, out_dir: Path
) -> dict:
    """py-spy (non-blocking) during a c64 run of each mode; returns top functions."""
    spy = Path(args.bench_venv) / "bin" / "py-spy"
    if not spy.exists():
        spy = Path(shutil.which("py-spy") or "")
    if not spy.is_file():
        log("profile: py-spy not found (bench/run.sh installs it into bench/.venv)")
        return {}
    out = {}
    path = "/v1/chat/completions"
    for mode in args.modes:
        body = tmp / f"body-{mode}.json"
        raw = out_dir / f"profile-{name}-{mode}-{stamp}.txt"
        svg = out_dir / f"profile-{name}-{mode}-{stamp}.svg"
        log(f"profile: {name} {mode} c={args.connections} with py-spy for {args.duration:g}s")
        for fmt, dest in (("raw", raw), ("flamegraph", svg)):
            spy_p = subprocess.Popen(
                [
                    str(spy),
                    "record",
                    "--nonblocking",
                    "--subprocesses",
                    "-r",
                    "250",
                    "-d",
                    str(int(args.duration) + 1),
                    "-f",
                    fmt,
                    "-o",
                    str(dest),
                    "-p",
                    str(pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(0.5)
            run_wrk(args, port, path, body, args.connections, args.duration, pid, upstream_pid, uport)
            try:
                spy_p.wait(args.duration + 30)
            except subprocess.TimeoutExpired:
                spy_p.terminate()
        out[mode] = {"raw": str(raw), "flamegraph": str(svg), "top": summarize_collapsed(raw)}
    return out


_FRAME_RE = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::\d+)?\)$")


def summarize_collapsed(path: Path, n: int = 25) -> dict:
    """Sample shares from py-spy's collapsed stacks: self time per function and per
    package, and inclusive time of the gateway's own functions (lines merged)."""
    if not path.exists():
        return {}
    self_fn: dict[str, int] = {}
    self_pkg: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, cnt = line.rpartition(" ")
        if not cnt.isdigit():
            continue
        c = int(cnt)
        frames = []
        for f in stack.split(";"):
            if not f or f.startswith(("process ", "thread ")):
                continue
            m = _FRAME_RE.match(f)
            frames.append((m.group("func"), m.group("file")) if m else (f, ""))
        if not frames:
            continue
        total += c
        func, file = frames[-1]
        key = f"{func} ({file})"
        self_fn[key] = self_fn.get(key, 0) + c
        pkg = file.split("/", 1)[0] if "/" in file else (file or "?")
        self_pkg[pkg] = self_pkg.get(pkg, 0) + c
        for func, file in {fr for fr in frames if fr[1].startswith("lockgate/")}:
            k = f"{func} ({file})"
            incl[k] = incl.get(k, 0) + c
    if not total:
        return {}

    def top(d, k=n):
        return [(f, round(100.0 * v / total, 1)) for f, v in sorted(d.items(), key=lambda kv: -kv[1])[:k]]

    return {
        "samples": total,
        "self_pct": top(self_fn),
        "self_by_package_pct": top(self_pkg, 15),
        "lockgate_inclusive_pct": top(incl),
    }
