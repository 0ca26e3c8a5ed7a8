"""Run a real `lockgate serve` process for end-to-end tests, and reach the real services."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
MASTER_KEY = "sk-test-master-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    """`python -m lockgate serve` on a free port with a config written for the test."""

    def __init__(self, config: dict[str, Any], workdir: Path, env: dict[str, str] | None = None, workers: int = 1) -> None:
        self.config = config
        self.workdir = workdir
        self.port = free_port()
        self.config_path = workdir / f"lockgate-{self.port}.yaml"
        self.log_path = workdir / f"lockgate-{self.port}.log"
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/v1"

    def start(self, timeout_s: float = 60.0, wait_for: str = "/health/ready") -> "GatewayProcess":
        """Start and wait until ``wait_for`` answers 200 (``/health/live`` for a gateway meant to be not ready)."""
        self.config_path.write_text(yaml.safe_dump(self.config))
        log = open(self.log_path, "ab")
        cmd = [sys.executable, "-m", "lockgate", "serve", "--config", str(self.config_path), "--port", str(self.port)]
        if self.workers > 1:
            cmd += ["--workers", str(self.workers)]
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lockgate exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if httpx.get(f"{self.base_url}{wait_for}", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"lockgate did not become ready:\n{self.logs()}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def access_lines(self) -> list[dict[str, Any]]:
        """The JSON access-log lines written so far."""
        import json

        out = []
        for line in self.logs().splitlines():
            if line.startswith("{") and '"event":"request"' in line:
                out.append(json.loads(line))
        return out

    def access_line(self, request_id: str, timeout_s: float = 5.0) -> dict[str, Any]:
        """The access-log line of one request, waited for (the log is written off the request path)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.access_lines():
                if line.get("request_id") == request_id:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no access line for {request_id}:\n{self.logs()[-3000:]}")

    def wait_for_records(self, n: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            lines = self.access_lines()
            if len(lines) >= n:
                return lines
            time.sleep(0.05)
        return self.access_lines()


def start_of_a_throttle_window(room_s: float = 20.0) -> None:
    """Wait, if need be, so the next room_s seconds lie in one window of the failure guard (auth/guard.py):
    across a boundary its sliding estimate weighs the earlier window's failures by less than one, so a
    block reached exactly at the limit lifts early. CLOCK_MONOTONIC is the same in the gateway's process."""
    from lockgate.auth.guard import WINDOW_S

    into = time.monotonic() % WINDOW_S
    if into > WINDOW_S - room_s:
        time.sleep(WINDOW_S - into + 0.05)


def service_available(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


TRUTHY = frozenset({"1", "true", "yes", "on"})


def under_ci() -> bool:
    """Whether CI is set to one of the usual truthy spellings (1, true, yes, on; any case)."""
    return os.environ.get("CI", "").strip().lower() in TRUTHY


def missing(message: str, hint: str = "") -> None:
    """Something a test needs is absent: skip on a laptop, fail under CI (where it must run)."""
    import pytest

    if under_ci():
        pytest.fail(f"{message}, and CI requires it{f' ({hint})' if hint else ''}")
    pytest.skip(f"{message}{f'; {hint}' if hint else ''}")


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a real service is missing on a laptop; under CI its absence is a failure."""
    if not service_available(host, port):
        missing(f"{name} is not reachable at {host}:{port}", "start it to run these tests")
