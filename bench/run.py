"""Lockgate benchmark: the upstream alone, through Lockgate, and through peers.

Starts bench/fake_upstream.py, then one after the other: the upstream alone
(client -> upstream), nginx as a bare reverse proxy (if installed), Lockgate
(`<python> -m lockgate serve --workers 1`) and LiteLLM proxy (from
bench/.venv), each in front of the same upstream, and measures with wrk, for
non-streaming and streaming chat:

  * requests/s at concurrency 64,
  * p50/p99 latency at concurrency 1 and 64,
  * time to first token at concurrency 1 (a small raw-socket client,
    sequential requests, median),
  * the server's CPU milliseconds per request: utime+stime of the process
    and all its descendants from /proc, before and after each run, divided by
    the chat completions the upstream answered in that window.

Prints a table with ratios and writes JSON to bench/results/.  Everything
listens on 127.0.0.1; every process started here is stopped on exit.

Run it with bench/run.sh (which prepares bench/.venv with LiteLLM), or
directly: python bench/run.py --help
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import datetime as _dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
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

TARGETS = ("upstream", "nginx", "lockgate", "litellm")
TARGET_ORDER: list[str] = list(TARGETS)  # report columns, custom targets last


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
        self.p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
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


# --------------------------------------------------------------------------
# CPU time from /proc
# --------------------------------------------------------------------------
def _stat(pid: int):
    """(ppid, utime+stime ticks, cutime+cstime ticks) of pid, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(b")") + 2:].split()
    # rest[0] is field 3 (state): field n is rest[n - 3]
    return int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14])


def tree_cpu_ms(root: int) -> float:
    """CPU ms of root and all its live descendants, plus their reaped children."""
    stats = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            s = _stat(int(d))
            if s:
                stats[int(d)] = s
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        s = stats.get(pid)
        if s is None:
            continue
        total += s[1] + s[2]
        todo.extend(children.get(pid, ()))
    return total * 1000.0 / CLK_TCK


def machine_busy_ms() -> float:
    """CPU ms all processes spent (everything but idle and iowait) since boot, summed over cores."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    busy = sum(vals[:8]) - vals[3] - vals[4]  # user nice system idle iowait irq softirq steal
    return busy * 1000.0 / CLK_TCK


def wait_for_quiet_machine(max_busy_pct: float, max_wait_s: float) -> float:
    """Wait (bounded) until the machine is mostly idle; returns the last busy % seen."""
    deadline = time.monotonic() + max_wait_s
    ncpu = os.cpu_count() or 1
    announced = False
    while True:
        b0, t0 = machine_busy_ms(), time.monotonic()
        time.sleep(1.0)
        pct = 100.0 * (machine_busy_ms() - b0) / ((time.monotonic() - t0) * 1000 * ncpu)
        if pct <= max_busy_pct or time.monotonic() >= deadline:
            if announced or pct > max_busy_pct:
                log(f"machine busy {pct:.0f}% " + ("(going on anyway)" if pct > max_busy_pct else "(quiet enough)"))
            return pct
        if not announced:
            log(f"machine busy {pct:.0f}% (other work): waiting up to {max_wait_s:.0f}s for <= {max_busy_pct:.0f}%")
            announced = True


def wait_quiet(pids: list[int], max_s: float = 8.0) -> None:
    """Wait until the given process trees stop burning CPU (in-flight work drains)."""
    deadline = time.monotonic() + max_s
    last = sum(tree_cpu_ms(p) for p in pids)
    quiet = 0
    while time.monotonic() < deadline:
        time.sleep(0.15)
        now = sum(tree_cpu_ms(p) for p in pids)
        if now - last <= 1000.0 / CLK_TCK:
            quiet += 1
            if quiet >= 2:
                return
        else:
            quiet = 0
        last = now


# --------------------------------------------------------------------------
# a tiny HTTP/1.1 client (raw sockets) for readiness, smoke checks and TTFT
# --------------------------------------------------------------------------
_CONTENT_RE = re.compile(rb'"content":\s*"tok')


class HttpConn:
    def __init__(self, port: int):
        self.port = port
        self.r = self.w = None

    async def _connect(self):
        self.r, self.w = await asyncio.open_connection(HOST, self.port)
        sock = self.w.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def close(self):
        if self.w is not None:
            self.w.close()
            try:
                await self.w.wait_closed()
            except Exception:
                pass
            self.r = self.w = None

    async def request(self, method: str, path: str, body: bytes | None = None,
                      key: str | None = KEY, timeout: float = 30.0):
        """Returns (status, headers, body, t_first_token_s, t_total_s)."""
        return await asyncio.wait_for(self._request(method, path, body, key), timeout)

    async def _request(self, method, path, body, key):
        if self.w is None:
            await self._connect()
        head = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{self.port}"]
        if key:
            head.append(f"Authorization: Bearer {key}")
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")
        t0 = time.perf_counter()
        self.w.write(raw)
        r = self.r
        status_line = await r.readline()
        if not status_line:
            await self.close()
            raise ConnectionError("connection closed before response")
        status = int(status_line.split()[1])
        headers = {}
        while True:
            line = await r.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        ttft = None
        out = bytearray()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = await r.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while (await r.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                out += (await r.readexactly(size + 2))[:-2]
                if ttft is None and _CONTENT_RE.search(out):
                    ttft = time.perf_counter() - t0
        elif "content-length" in headers:
            out += await r.readexactly(int(headers["content-length"]))
        else:  # read to close
            out += await r.read()
            await self.close()
        total = time.perf_counter() - t0
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, bytes(out), ttft, total


async def _get_status(port: int, path: str) -> int:
    c = HttpConn(port)
    try:
        st, *_ = await c.request("GET", path, timeout=2.0)
        return st
    finally:
        await c.close()


def wait_ready(port: int, path: str | None, proc: Proc | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            return False
        try:
            if path is None:
                socket.create_connection((HOST, port), timeout=1).close()
                return True
            if asyncio.run(_get_status(port, path)) == 200:
                return True
        except Exception:
            pass
        time.sleep(0.3)
    return False


def parse_sse(body: bytes) -> tuple[list[dict], bool]:
    events, done = [], False
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                elif data:
                    events.append(json.loads(data))
    return events, done


async def _smoke(port: int, path: str) -> list[str]:
    """Check the wire format through a target; returns a list of problems."""
    problems = []
    c = HttpConn(port)
    try:
        st, h, body, _, _ = await c.request("POST", path, json.dumps(BODY_NS).encode())
        if st != 200:
            problems.append(f"non-stream: HTTP {st}: {body[:300]!r}")
        else:
            j = json.loads(body)
            if j.get("object") != "chat.completion":
                problems.append(f"non-stream: object={j.get('object')!r}")
            if j.get("model") != MODEL:
                problems.append(f"non-stream: model={j.get('model')!r}")
            msg = (j.get("choices") or [{}])[0].get("message", {})
            if msg.get("content") != CONTENT:
                problems.append(f"non-stream: content={msg.get('content')!r}")
            if (j.get("usage") or {}).get("total_tokens") != 12 + N_CHUNKS:
                problems.append(f"non-stream: usage={j.get('usage')!r}")
        st, h, body, ttft, _ = await c.request("POST", path, json.dumps(BODY_S).encode())
        if st != 200:
            problems.append(f"stream: HTTP {st}: {body[:300]!r}")
        else:
            events, done = parse_sse(body)
            text = "".join((e.get("choices") or [{}])[0].get("delta", {}).get("content") or ""
                           for e in events if e.get("choices"))
            n_content = sum(1 for e in events if e.get("choices")
                            and (e["choices"][0].get("delta", {}).get("content") or ""))
            if not done:
                problems.append("stream: no data: [DONE]")
            if text != CONTENT or n_content != N_CHUNKS:
                problems.append(f"stream: {n_content} content chunks, text={text[:60]!r}")
            if not any(e.get("usage") for e in events):
                problems.append("stream: no usage chunk although include_usage was asked")
            if any(e.get("model") != MODEL for e in events):
                problems.append("stream: a chunk's model is not the public name")
            if "text/event-stream" not in h.get("content-type", ""):
                problems.append(f"stream: content-type={h.get('content-type')!r}")
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        problems.append(f"{type(e).__name__}: {e}")
    finally:
        await c.close()
    return problems


async def _ttft(port: int, path: str, model: str, n: int, max_s: float) -> dict:
    body = json.dumps(dict(BODY_S, model=model)).encode()
    c = HttpConn(port)
    ttfts, totals, errors = [], [], 0
    deadline = time.monotonic() + max_s
    try:
        for _ in range(3):  # warm the connection
            await c.request("POST", path, body)
        while len(ttfts) + errors < n and time.monotonic() < deadline:
            try:
                st, _, _, ttft, total = await c.request("POST", path, body)
            except Exception:
                errors += 1
                await c.close()
                continue
            if st != 200 or ttft is None:
                errors += 1
                continue
            ttfts.append(ttft * 1000)
            totals.append(total * 1000)
    finally:
        await c.close()
    if not ttfts:
        return {"n": 0, "errors": errors}
    ttfts.sort()
    return {
        "n": len(ttfts),
        "errors": errors,
        "ttft_ms_p50": statistics.median(ttfts),
        "ttft_ms_p90": ttfts[int(0.9 * (len(ttfts) - 1))],
        "ttft_ms_min": ttfts[0],
        "total_ms_p50": statistics.median(totals),
    }


async def _paired(port: int, uport: int, path: str, mode: str, n: int, max_s: float) -> dict:
    """Alternate one request straight to the upstream and one through the proxy, n times.

    The machine's noise hits both sides of a pair alike, so the median of the
    per-pair differences is a steadier 'added latency' than the difference of
    two runs made at different moments.
    """
    body = json.dumps(BODY_S if mode == "stream" else BODY_NS).encode()
    direct, proxy = HttpConn(uport), HttpConn(port)
    key = "ttft" if mode == "stream" else "total"
    d_vals, p_vals, diffs = [], [], []
    deadline = time.monotonic() + max_s
    try:
        for _ in range(3):
            await direct.request("POST", path, body)
            await proxy.request("POST", path, body)
        while len(diffs) < n and time.monotonic() < deadline:
            try:
                st1, _, _, ttft1, tot1 = await direct.request("POST", path, body)
                st2, _, _, ttft2, tot2 = await proxy.request("POST", path, body)
            except Exception:
                await direct.close()
                await proxy.close()
                continue
            if st1 != 200 or st2 != 200:
                continue
            a = ttft1 if key == "ttft" else tot1
            b = ttft2 if key == "ttft" else tot2
            if a is None or b is None:
                continue
            d_vals.append(a * 1000)
            p_vals.append(b * 1000)
            diffs.append((b - a) * 1000)
    finally:
        await direct.close()
        await proxy.close()
    if not diffs:
        return {"n": 0}
    return {
        "n": len(diffs),
        "measure": "time to first token" if key == "ttft" else "whole response",
        "direct_ms_p50": statistics.median(d_vals),
        "proxy_ms_p50": statistics.median(p_vals),
        "added_ms_p50": statistics.median(diffs),
    }


# --------------------------------------------------------------------------
# upstream stats, wrk
# --------------------------------------------------------------------------
def upstream_count(uport: int) -> int:
    async def go():
        c = HttpConn(uport)
        try:
            _, _, body, _, _ = await c.request("GET", "/stats", key=None, timeout=5)
            return json.loads(body)["chat"]
        finally:
            await c.close()

    return asyncio.run(go())


def run_wrk(args, port: int, path: str, body_file: Path, conns: int, duration: float,
            server_pid: int | None, upstream_pid: int, uport: int) -> dict:
    threads = 1 if conns == 1 else min(args.wrk_threads, conns)
    cmd = [args.wrk, f"-t{threads}", f"-c{conns}", f"-d{max(1, round(duration))}s", "--timeout", "30s",
           "-s", str(WRK_SCRIPT), f"http://{HOST}:{port}{path}"]
    env = dict(os.environ, BENCH_BODY_FILE=str(body_file), BENCH_KEY=KEY)
    pids = [upstream_pid] + ([server_pid] if server_pid and server_pid != upstream_pid else [])
    wait_quiet(pids, 3)
    cpu0 = {p: tree_cpu_ms(p) for p in pids}
    n0 = upstream_count(uport)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0 = machine_busy_ms()
    t0 = time.monotonic()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    wall = time.monotonic() - t0
    busy1 = machine_busy_ms()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_ms = ((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)) * 1000
    mid = {p: tree_cpu_ms(p) for p in pids}
    wait_quiet(pids)  # let abandoned in-flight requests finish before the CPU reading
    cpu1 = {p: tree_cpu_ms(p) for p in pids}
    n1 = upstream_count(uport)
    m = re.search(r"^WRKJSON (.*)$", out.stdout, re.M)
    if not m:
        raise RuntimeError(f"wrk failed: {out.stdout[-500:]} {out.stderr[-500:]}")
    res = json.loads(m.group(1))
    served = n1 - n0
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    res["upstream_served"] = served
    res["wall_s"] = wall
    lat = res["latency_us"]
    res["p50_ms"], res["p99_ms"] = lat["p50"] / 1000, lat["p99"] / 1000
    res["errors_total"] = sum(res["errors"].values())
    div = max(served, 1)
    sp = server_pid or upstream_pid
    res["server_cpu_ms"] = cpu1[sp] - cpu0[sp]
    res["server_cpu_ms_per_req"] = res["server_cpu_ms"] / div
    res["upstream_cpu_ms_per_req"] = (cpu1[upstream_pid] - cpu0[upstream_pid]) / div
    # how much of the machine other processes took while wrk ran (noise indicator)
    ours = wrk_ms + sum(mid[p] - cpu0[p] for p in pids)
    res["wrk_cpu_ms"] = wrk_ms
    res["other_cpu_pct"] = max(0.0, 100.0 * (busy1 - busy0 - ours) / (wall * 1000 * (os.cpu_count() or 1)))
    return res


# --------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------
def lockgate_config(tmp: Path, uport: int, extra: str = "") -> Path:
    cfg = tmp / "lockgate.yaml"
    dep = lambda m: (f"      - provider: openai\n        model: {m}\n"  # noqa: E731
                     f"        api_base: http://{HOST}:{uport}/v1\n        api_key: sk-up\n")
    cfg.write_text(
        "# generated by bench/run.py\n"
        f"auth:\n  master_key: {KEY}\n"
        "models:\n"
        f"  - name: {MODEL}\n    deployments:\n{dep(MODEL)}"
        f"  - name: {SLOW_MODEL}\n    deployments:\n{dep(SLOW_MODEL)}"
        + (f"{extra}\n" if extra else "")
    )
    return cfg


def litellm_config(tmp: Path, uport: int) -> Path:
    cfg = tmp / "litellm.yaml"
    entries = "".join(
        f"  - model_name: {m}\n    litellm_params:\n      model: openai/{m}\n"
        f"      api_base: http://{HOST}:{uport}/v1\n      api_key: sk-up\n"
        for m in (MODEL, SLOW_MODEL))
    cfg.write_text(
        "# generated by bench/run.py: LiteLLM with its extras off (no DB, no callbacks, no telemetry)\n"
        f"model_list:\n{entries}"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  callbacks: []\n"
        "  success_callback: []\n"
        "  failure_callback: []\n"
        "  service_callback: []\n"
        "  set_verbose: false\n"
        "  turn_off_message_logging: true\n"
        "  cache: false\n"
        "general_settings:\n"
        f"  master_key: {KEY}\n"
        "  disable_spend_logs: true\n"
        "  disable_error_logs: true\n"
        "  store_model_in_db: false\n"
        "  disable_adding_master_key_hash_to_db: true\n"
        "  allow_requests_on_db_unavailable: true\n"
        "  health_check_interval: 0\n"
        "  background_health_checks: false\n"
    )
    return cfg


def nginx_config(tmp: Path, port: int, uport: int) -> Path:
    d = tmp / "nginx"
    d.mkdir(exist_ok=True)
    os.chmod(d, 0o777)
    cfg = d / "nginx.conf"
    cfg.write_text(f"""# generated by bench/run.py: a bare reverse proxy
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 1000000;
  upstream up {{ server {HOST}:{uport}; keepalive 128; keepalive_requests 1000000; }}
  server {{
    listen {HOST}:{port} reuseport backlog=4096;
    location / {{
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
""")
    return cfg


def start_target(name: str, args, tmp: Path, uport: int):
    """Start a proxy; returns (proc, port, note) or (None, None, reason)."""
    port = free_port()
    logf = tmp / f"{name}.log"
    if name == "lockgate":
        py = args.gateway_python
        if not Path(py).exists():
            return None, None, f"gateway python {py} not found (make the repo's .venv first)"
        cfg = lockgate_config(tmp, uport, args.lockgate_extra)
        env = dict(os.environ)
        env.pop("LOCKGATE_CONFIG", None)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        # cwd is the scratch folder, so the embedded SQLite usage store lands there, not in the repo
        proc = Proc(name, [py, "-m", "lockgate", "serve", "--config", str(cfg), "--host", HOST,
                           "--port", str(port), "--workers", "1"], env=env, cwd=tmp, logfile=logf)
        ready_path, ready_timeout = "/health/live", 60
    elif name == "litellm":
        exe = Path(args.bench_venv) / "bin" / "litellm"
        if not exe.exists():
            return None, None, f"LiteLLM is not installed in {args.bench_venv} (bench/run.sh installs it)"
        cfg = litellm_config(tmp, uport)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LITELLM_", "DATABASE_URL", "REDIS_", "OPENAI_"))}
        env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", LITELLM_TELEMETRY="False",
                   DISABLE_ADMIN_UI="True", NO_DOCS="True", NO_PROXY="*")
        proc = Proc(name, [str(exe), "--config", str(cfg), "--host", HOST, "--port", str(port),
                           "--num_workers", "1", "--telemetry", "False"],
                    env=env, cwd=tmp, logfile=logf)
        ready_path, ready_timeout = "/health/liveliness", 120
    elif name == "nginx":
        exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        if not exe:
            return None, None, "nginx is not installed (optional: apt-get install nginx-light)"
        cfg = nginx_config(tmp, port, uport)
        proc = Proc(name, [exe, "-p", str(cfg.parent), "-c", str(cfg)], logfile=logf)
        ready_path, ready_timeout = "/health", 20
    elif name in args.custom:
        cmd = args.custom[name].format(port=port, upstream=f"http://{HOST}:{uport}/v1", uport=uport, host=HOST)
        proc = Proc(name, ["/bin/sh", "-c", "exec " + cmd], cwd=tmp, logfile=logf)
        ready_path, ready_timeout = None, 60
    else:
        raise ValueError(name)
    if not wait_ready(port, ready_path, proc, ready_timeout):
        tail = proc.tail()
        proc.stop()
        return None, None, f"{name} did not become ready on GET {ready_path}:\n{tail}"
    return proc, port, ""


def bench_target(name: str, args, port: int, server_pid: int | None, upstream_pid: int,
                 uport: int, tmp: Path) -> dict:
    path = "/v1/chat/completions"
    res: dict = {"target": name, "port": port}
    problems = asyncio.run(_smoke(port, path))
    res["smoke_problems"] = problems
    if problems:
        log(f"{name}: wire-format check FAILED: {problems}")
    else:
        log(f"{name}: wire-format check ok (JSON, SSE with 20 chunks, usage, [DONE])")
    bodies = {"nonstream": tmp / "body-nonstream.json", "stream": tmp / "body-stream.json"}
    bodies["nonstream"].write_text(json.dumps(BODY_NS))
    bodies["stream"].write_text(json.dumps(BODY_S))
    # warm-up: imports, pools, JIT-ish caches
    for mode in ("nonstream", "stream"):
        run_wrk(args, port, path, bodies[mode], 16, args.warmup, server_pid, upstream_pid, uport)
    for mode in args.modes:
        r = res.setdefault(mode, {})
        for conns in (1, args.connections):
            log(f"{name}: {mode} c={conns} for {args.duration:g}s")
            w = run_wrk(args, port, path, bodies[mode], conns, args.duration, server_pid, upstream_pid, uport)
            r[f"c{conns}"] = w
            log(f"{name}: {mode} c={conns}: {w['rps']:.0f} req/s, p50 {w['p50_ms']:.2f} ms, "
                f"p99 {w['p99_ms']:.2f} ms, {w['server_cpu_ms_per_req']:.3f} CPU ms/req, "
                f"{w['errors_total']} errors; other processes took {w['other_cpu_pct']:.0f}% of the machine")
        if mode == "stream":
            log(f"{name}: TTFT at c=1, {args.ttft_requests} sequential streams")
            r["ttft"] = asyncio.run(_ttft(port, path, MODEL, args.ttft_requests, args.duration))
            r["ttft_slow"] = asyncio.run(_ttft(port, path, SLOW_MODEL, args.ttft_slow_requests, args.duration))
            log(f"{name}: TTFT p50 {r['ttft'].get('ttft_ms_p50', float('nan')):.3f} ms; with "
                f"{SLOW_DELAY_MS} ms between upstream chunks: TTFT p50 "
                f"{r['ttft_slow'].get('ttft_ms_p50', float('nan')):.2f} ms, whole stream "
                f"{r['ttft_slow'].get('total_ms_p50', float('nan')):.1f} ms")
        if port != uport:
            pr = asyncio.run(_paired(port, uport, path, mode, args.ttft_requests, args.duration))
            r["paired_c1"] = pr
            if pr.get("n"):
                log(f"{name}: {mode} paired with the upstream at c=1 ({pr['measure']}): "
                    f"upstream {pr['direct_ms_p50']:.3f} ms, via {name} {pr['proxy_ms_p50']:.3f} ms, "
                    f"added {pr['added_ms_p50']:+.3f} ms (median of {pr['n']} pairs)")
    return res


def profile_target(name: str, args, port: int, pid: int, upstream_pid: int, uport: int, tmp: Path,
                   stamp: str) -> dict:
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
        raw = RESULTS / f"profile-{name}-{mode}-{stamp}.txt"
        svg = RESULTS / f"profile-{name}-{mode}-{stamp}.svg"
        log(f"profile: {name} {mode} c={args.connections} with py-spy for {args.duration:g}s")
        for fmt, dest in (("raw", raw), ("flamegraph", svg)):
            spy_p = subprocess.Popen([str(spy), "record", "--nonblocking", "--subprocesses", "-r", "250",
                                      "-d", str(int(args.duration) + 1), "-f", fmt, "-o", str(dest),
                                      "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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

    return {"samples": total, "self_pct": top(self_fn), "self_by_package_pct": top(self_pkg, 15),
            "lockgate_inclusive_pct": top(incl)}


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
def _g(res, *keys):
    cur = res
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            return None
        cur = cur[k]
    return cur


def _fmt(v, nd=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{nd}f}"
    return str(v)


def report(results: dict, args) -> str:
    names = [t for t in TARGET_ORDER if t in results["targets"] and results["targets"][t].get("ok")]
    c = args.connections
    rows = []
    for mode, label in (("nonstream", "non-stream"), ("stream", "stream (20 chunks)")):
        if mode not in args.modes:
            continue
        rows += [
            (f"{label}: req/s @c{c}", lambda r, m=mode: _g(r, m, f"c{c}", "rps"), 0),
            (f"{label}: p50 ms @c1", lambda r, m=mode: _g(r, m, "c1", "p50_ms"), 3),
            (f"{label}: p99 ms @c1", lambda r, m=mode: _g(r, m, "c1", "p99_ms"), 3),
            (f"{label}: p50 ms @c{c}", lambda r, m=mode: _g(r, m, f"c{c}", "p50_ms"), 2),
            (f"{label}: p99 ms @c{c}", lambda r, m=mode: _g(r, m, f"c{c}", "p99_ms"), 2),
        ]
        if mode == "stream":
            rows += [
                ("stream: TTFT p50 ms @c1", lambda r: _g(r, "stream", "ttft", "ttft_ms_p50"), 3),
                (f"stream: TTFT p50 ms @c1, {SLOW_DELAY_MS}ms/chunk upstream",
                 lambda r: _g(r, "stream", "ttft_slow", "ttft_ms_p50"), 2),
                (f"stream: whole stream ms, {SLOW_DELAY_MS}ms/chunk upstream",
                 lambda r: _g(r, "stream", "ttft_slow", "total_ms_p50"), 1),
            ]
        rows.append((f"{label}: added ms @c1, paired with upstream"
                     + (" (TTFT)" if mode == "stream" else ""),
                     lambda r, m=mode: _g(r, m, "paired_c1", "added_ms_p50"), 3))
        rows += [
            (f"{label}: server CPU ms/req @c{c}", lambda r, m=mode: _g(r, m, f"c{c}", "server_cpu_ms_per_req"), 3),
            (f"{label}: server CPU ms/req @c1", lambda r, m=mode: _g(r, m, "c1", "server_cpu_ms_per_req"), 3),
            (f"{label}: errors (all runs)",
             lambda r, m=mode: sum(_g(r, m, k, "errors_total") or 0 for k in ("c1", f"c{c}")), 0),
        ]
    rows.append(("noise: other processes' % of machine (max of runs)",
                 lambda r: max([_g(r, m, k, "other_cpu_pct") or 0.0 for m in args.modes for k in ("c1", f"c{c}")]
                               or [0.0]), 0))
    w0 = max(len(r[0]) for r in rows) + 2
    lines = ["", "Results (server = the process under test, its workers included; "
                 "for 'upstream' it is the fake upstream itself)", ""]
    lines.append("".ljust(w0) + "".join(n.rjust(12) for n in names))
    for label, fn, nd in rows:
        vals = []
        for n in names:
            v = fn(results["targets"][n])
            vals.append((_fmt(float(v), nd) if isinstance(v, (int, float)) else _fmt(v)).rjust(12))
        lines.append(label.ljust(w0) + "".join(vals))

    # ratios
    t = results["targets"]
    ratios = {}
    lines += ["", "Ratios"]

    def ratio(a, b):
        return a / b if (a is not None and b) else None

    def add(key, val, text):
        ratios[key] = val
        if val is not None:
            lines.append(f"  {text}")

    up, lg, ll = t.get("upstream", {}), t.get("lockgate", {}), t.get("litellm", {})
    if up.get("ok") and lg.get("ok"):
        for mode in args.modes:
            v = ratio(_g(lg, mode, f"c{c}", "rps"), _g(up, mode, f"c{c}", "rps"))
            add(f"lockgate_over_upstream_rps_{mode}", v,
                f"lockgate / upstream req/s @c{c}, {mode}: {_fmt(v, 3)}")
            a = _g(lg, mode, "c1", "p50_ms")
            b = _g(up, mode, "c1", "p50_ms")
            if a is not None and b is not None:
                add(f"lockgate_added_p50_c1_ms_{mode}", a - b,
                    f"lockgate adds to upstream p50 @c1, {mode}: {a - b:+.3f} ms")
        a, b = _g(lg, "stream", "ttft", "ttft_ms_p50"), _g(up, "stream", "ttft", "ttft_ms_p50")
        if a is not None and b is not None:
            add("lockgate_added_ttft_c1_ms", a - b, f"lockgate adds to upstream TTFT @c1: {a - b:+.3f} ms")
    if lg.get("ok") and ll.get("ok"):
        for mode in args.modes:
            v = ratio(_g(ll, mode, f"c{c}", "server_cpu_ms_per_req"), _g(lg, mode, f"c{c}", "server_cpu_ms_per_req"))
            add(f"litellm_over_lockgate_cpu_{mode}", v, f"litellm / lockgate CPU ms/req, {mode}: {_fmt(v, 1)}x")
            v = ratio(_g(lg, mode, f"c{c}", "rps"), _g(ll, mode, f"c{c}", "rps"))
            add(f"lockgate_over_litellm_rps_{mode}", v, f"lockgate / litellm req/s @c{c}, {mode}: {_fmt(v, 1)}x")
            a, b = _g(ll, mode, "c1", "p50_ms"), _g(up, mode, "c1", "p50_ms")
            if a is not None and b is not None:
                add(f"litellm_added_p50_c1_ms_{mode}", a - b,
                    f"litellm adds to upstream p50 @c1, {mode}: {a - b:+.3f} ms")
        a, b = _g(ll, "stream", "ttft", "ttft_ms_p50"), _g(up, "stream", "ttft", "ttft_ms_p50")
        if a is not None and b is not None:
            add("litellm_added_ttft_c1_ms", a - b, f"litellm adds to upstream TTFT @c1: {a - b:+.3f} ms")
    ng = t.get("nginx", {})
    if ng.get("ok") and lg.get("ok"):
        for mode in args.modes:
            v = ratio(_g(lg, mode, f"c{c}", "server_cpu_ms_per_req"), _g(ng, mode, f"c{c}", "server_cpu_ms_per_req"))
            add(f"lockgate_over_nginx_cpu_{mode}", v, f"lockgate / nginx CPU ms/req, {mode}: {_fmt(v, 1)}x")
    results["ratios"] = ratios

    # targets from issue 2
    if lg.get("ok"):
        checks = []

        def check(label, val, limit, unit="ms"):
            if val is None:
                checks.append((label, None, limit, None))
            else:
                checks.append((label, val, limit, val <= limit))

        check("CPU per non-stream request (<= 1.5 ms)", _g(lg, "nonstream", f"c{c}", "server_cpu_ms_per_req"), 1.5)
        check("CPU per 20-chunk stream (<= 3 ms)", _g(lg, "stream", f"c{c}", "server_cpu_ms_per_req"), 3.0)
        check("added to upstream p50 @c1, non-stream, paired (< 1 ms)",
              _g(lg, "nonstream", "paired_c1", "added_ms_p50"), 1.0)
        check("added to upstream TTFT @c1, paired (< 1 ms)", _g(lg, "stream", "paired_c1", "added_ms_p50"), 1.0)
        check("added to upstream p50 @c1, non-stream, wrk runs (< 1 ms)",
              ratios.get("lockgate_added_p50_c1_ms_nonstream"), 1.0)
        check("added to upstream TTFT @c1, separate runs (< 1 ms)", ratios.get("lockgate_added_ttft_c1_ms"), 1.0)
        lines += ["", "Lockgate against the targets of issue 2 (one worker)"]
        for label, val, limit, ok in checks:
            verdict = "n/a" if ok is None else ("PASS" if ok else "MISS")
            lines.append(f"  {verdict:5} {label}: {_fmt(val, 3)}")
        results["targets_check"] = [
            {"check": lbl, "value": v, "limit": lim, "pass": ok} for lbl, v, lim, ok in checks]

    for n in TARGET_ORDER:
        r = t.get(n)
        if r is None:
            continue
        if not r.get("ok"):
            lines.append(f"\n{n}: not measured: {r.get('skipped')}")
        elif r.get("smoke_problems"):
            lines.append(f"\n{n}: wire-format problems: {r['smoke_problems']}")
    if any((_g(t[n], m, k, "errors_total") or 0) for n in names for m in args.modes for k in ("c1", f"c{c}")):
        lines.append("\nNote: some runs had errors (non-2xx, timeouts or socket errors); see the JSON.")
    return "\n".join(lines)


# --------------------------------------------------------------------------
def env_info(args) -> dict:
    def cmd(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        except Exception:
            return None

    info = {
        "time": _dt.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "python_bench": sys.version.split()[0],
        "wrk": (cmd([args.wrk, "-v"]) or "").splitlines()[:1],
        "lockgate_git": cmd(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "lockgate_dirty": bool(cmd(["git", "-C", str(REPO), "status", "--porcelain", "--", "lockgate"])),
        "gateway_python": args.gateway_python,
        "duration_s": args.duration,
        "connections": args.connections,
    }
    lv = Path(args.bench_venv) / "bin" / "python"
    if lv.exists():
        info["litellm_version"] = cmd([str(lv), "-c",
                                       "import importlib.metadata as m; print(m.version('litellm'))"])
    ng = shutil.which("nginx") or "/usr/sbin/nginx"
    if Path(ng).exists():
        r = subprocess.run([ng, "-v"], capture_output=True, text=True)
        info["nginx"] = r.stderr.strip()
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=float(os.environ.get("BENCH_DURATION", 10)),
                    help="seconds per wrk run (default 10)")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per mode and target")
    ap.add_argument("--connections", type=int, default=64, help="the high concurrency (default 64)")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--ttft-requests", type=int, default=300, help="sequential streams for TTFT")
    ap.add_argument("--ttft-slow-requests", type=int, default=40,
                    help=f"sequential streams for TTFT with {SLOW_DELAY_MS} ms between upstream chunks")
    ap.add_argument("--targets", default=",".join(TARGETS),
                    help=f"comma-separated subset of {','.join(TARGETS)}")
    ap.add_argument("--modes", default="nonstream,stream")
    ap.add_argument("--gateway-python", default=os.environ.get("LOCKGATE_PYTHON", str(REPO / ".venv/bin/python")))
    ap.add_argument("--lockgate-extra", default="",
                    help="YAML appended to the generated Lockgate config, e.g. 'usage: {enabled: false}' "
                         "to see what a feature costs")
    ap.add_argument("--custom", action="append", default=[], metavar="NAME=COMMAND",
                    help="another server to measure side by side: a shell command with {port} (where to "
                         "listen) and {upstream} (the fake upstream's /v1 base URL); repeatable")
    ap.add_argument("--max-wait-quiet", type=float, default=60.0,
                    help="before each target, wait up to this many seconds for the machine to be "
                         "mostly idle (0: don't wait)")
    ap.add_argument("--quiet-pct", type=float, default=20.0,
                    help="'mostly idle': at most this %% of all cores busy")
    ap.add_argument("--bench-venv", default=str(BENCH / ".venv"))
    ap.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    ap.add_argument("--profile", action="store_true",
                    help="after measuring, profile Lockgate with py-spy during c64 runs")
    ap.add_argument("--profile-target", default="lockgate")
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
    global TARGET_ORDER
    TARGET_ORDER = [t for t in TARGETS if t in targets] + [n for n in custom]
    if not Path(args.wrk).exists():
        ap.error("wrk not found (apt-get install wrk)")

    global RESULTS
    out_dir = Path(args.out) if args.out else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    RESULTS = out_dir
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tmp = Path(tempfile.mkdtemp(prefix="lockgate-bench-"))
    _tmpdirs.append(tmp)  # removed by _cleanup, after the processes using it are stopped
    results = {"env": env_info(args), "targets": {}}
    la = results["env"]["loadavg_at_start"][0]
    if la > 0.5:
        log(f"note: load average is {la:.2f} before starting: other work on this machine will add noise "
            "(CPU ms/request holds up best)")

    uport = free_port()
    up = Proc("upstream", [sys.executable, str(BENCH / "fake_upstream.py"), "--host", HOST,
                           "--port", str(uport)], logfile=tmp / "upstream.log")
    if not wait_ready(uport, "/health", up, 15):
        log(f"fake upstream did not start:\n{up.tail()}")
        return 1
    log(f"fake upstream on {HOST}:{uport} (pid {up.pid}); work dir {tmp}")

    try:
        for name in targets:
            if name == "upstream":
                if args.max_wait_quiet > 0:
                    results.setdefault("busy_before_pct", {})[name] = wait_for_quiet_machine(
                        args.quiet_pct, args.max_wait_quiet)
                res = bench_target(name, args, uport, up.pid, up.pid, uport, tmp)
                res["ok"] = True
                results["targets"][name] = res
                continue
            if args.max_wait_quiet > 0:
                results.setdefault("busy_before_pct", {})[name] = wait_for_quiet_machine(
                    args.quiet_pct, args.max_wait_quiet)
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
                if args.profile and name == args.profile_target:
                    res["profile"] = profile_target(name, args, port, proc.pid, up.pid, uport, tmp, stamp)
                results["targets"][name] = res
            except Exception as e:  # noqa: BLE001 - one target's failure must not sink the others
                log(f"{name}: failed: {type(e).__name__}: {e}\n{proc.tail()}")
                results["targets"][name] = {"ok": False, "skipped": f"failed: {type(e).__name__}: {e}"}
            finally:
                proc.stop()
    finally:
        up.stop()

    text = report(results, args)
    print(text)
    for n, r in results["targets"].items():
        prof = r.get("profile") if isinstance(r, dict) else None
        if prof:
            print(f"\nProfile of {n} (py-spy, share of samples):")
            for mode, p in prof.items():
                print(f"  {mode}: flamegraph {p['flamegraph']}")
                top = p.get("top") or {}
                print("    self time by package: " + ", ".join(
                    f"{k} {v}%" for k, v in top.get("self_by_package_pct", [])[:10]))
                for f, pct in top.get("self_pct", [])[:12]:
                    print(f"    self      {pct:5.1f}%  {f}")
                for f, pct in top.get("lockgate_inclusive_pct", [])[:12]:
                    print(f"    inclusive {pct:5.1f}%  {f}")
    results["report"] = text
    dest = out_dir / f"bench-{stamp}.json"
    dest.write_text(json.dumps(results, indent=2, default=str))
    (out_dir / "latest.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\nJSON: {dest}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
