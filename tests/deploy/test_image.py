"""The image really built and run: buildah (chroot isolation) on a Debian base made with mmdebstrap,
then run as uid 10001 on a read-only root with only /tmp and the data volume writable; health, a chat
completion from the mock provider, and a SIGTERM during a stream that still completes (usage written).

It takes about 2 minutes (base 46 s, build 59 s measured on the dev machine) and needs root, so it runs
when LOCKGATE_IMAGE_SMOKE=1 or CI=true (`make image-smoke`; .ci/run sets both), else it skips.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.deploy.tools import ROOT, missing, tool
from tests.harness import under_ci

pytestmark = pytest.mark.image
TAG = "localhost/lockgate:smoke"
MASTER = "sk-smoke-master-0123456789"


def _enabled() -> None:
    if os.environ.get("LOCKGATE_IMAGE_SMOKE") != "1" and not under_ci():
        pytest.skip("image build + run is opt-in (2 min, root): LOCKGATE_IMAGE_SMOKE=1 or make image-smoke")
    if os.geteuid() != 0:
        missing("root (buildah with chroot isolation)")
    tool("buildah"), tool("mmdebstrap")


@pytest.fixture(scope="module")
def image():
    _enabled()
    env = {**os.environ, "PATH": f"{ROOT / '.tools/venv/bin'}:{os.environ['PATH']}"}
    start = time.monotonic()
    out = subprocess.run([str(ROOT / "deploy/tools/build-image.sh"), TAG], env=env, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stdout + out.stderr
    print(out.stdout, f"image build total {time.monotonic() - start:.0f} s")
    info = json.loads(
        subprocess.check_output(["buildah", "inspect", "--type", "image", TAG], env={**os.environ, "STORAGE_DRIVER": "vfs"})
    )
    return info


def _buildah(*args: str) -> str:
    return subprocess.check_output(["buildah", *args], env={**os.environ, "STORAGE_DRIVER": "vfs"}, text=True).strip()


def test_image_metadata(image):
    cfg = image["Docker"]["config"]
    assert cfg["User"] == "10001:10001"
    assert cfg["Entrypoint"][:3] == ["tini", "-g", "--"] and cfg["Entrypoint"][3:] == ["lockgate", "serve"]
    assert "8080/tcp" in cfg["ExposedPorts"]
    assert "/health/live" in " ".join(cfg["Healthcheck"]["Test"])
    assert image["Docker"]["config"]["Labels"]["org.opencontainers.image.version"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _descendant(pid: int, name: str) -> int | None:
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            if Path(f"/proc/{p}/comm").read_text().strip() == name:
                return p
        except OSError:
            continue
        todo.extend(_children(p))
    return None


def test_image_runs_read_only_as_10001_and_drains_a_stream(image, tmp_path):
    cfg = image["Docker"]["config"]
    container = _buildah("from", "--pull-never", TAG)
    rootfs = _buildah("mount", container)
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 10001, 10001)
    port = _free_port()
    (tmp_path / "lockgate.yaml").write_text(
        yaml.safe_dump(
            {
                "auth": {"master_key": "${LOCKGATE_MASTER_KEY}"},
                "models": [
                    {
                        "name": "mock-gpt",
                        "deployments": [
                            {
                                "provider": "mock",
                                "model": "mock-gpt",
                                "mock_response": " ".join(["word"] * 40),
                                "mock_tokens_per_s": 10,
                            }
                        ],
                    }
                ],
                "telemetry": {"log_format": "json"},
            }
        )
    )
    Path(rootfs, "etc/lockgate/lockgate.yaml").touch()
    env = [e for e in cfg["Env"]] + [
        f"LOCKGATE_MASTER_KEY={MASTER}",
        "LOCKGATE_CONFIG=/etc/lockgate/lockgate.yaml",
        "LOCKGATE_DRAIN_SECONDS=20",
    ]
    argv = [*cfg["Entrypoint"], "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    # A private mount namespace: the image's root bind-mounted read-only, tmpfs /tmp, the data volume
    # and the config file bound in; then chroot as the image's USER into its WORKDIR.
    script = f"""set -e
r={rootfs}
mount --bind "$r" "$r"
mount --bind {tmp_path / "lockgate.yaml"} "$r/etc/lockgate/lockgate.yaml"
mount --bind {data} "$r{cfg["WorkingDir"]}"
mount -t proc proc "$r/proc"
mount --rbind /dev "$r/dev"
mount -t tmpfs -o size=64m,mode=1777 tmpfs "$r/tmp"
mount -o remount,bind,ro "$r"
exec chroot --userspec={cfg["User"]} "$r" /usr/bin/env -i {" ".join(env)} /bin/sh -c 'cd {cfg["WorkingDir"]} && exec "$@"' sh {" ".join(argv)}
"""
    log = open(tmp_path / "container.log", "wb")
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-c", script], stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "container.log").read_text()
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "container.log").read_text()
            time.sleep(0.2)
        assert httpx.get(f"{base}/health/live").status_code == 200
        tini = _descendant(proc.pid, "tini")
        assert tini is not None
        uid = [line for line in Path(f"/proc/{tini}/status").read_text().splitlines() if line.startswith("Uid:")][0]
        assert uid.split()[1:3] == ["10001", "10001"]

        from openai import OpenAI

        client = OpenAI(base_url=f"{base}/v1", api_key=MASTER, max_retries=0)
        reply = client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content.startswith("word")

        chunks, signalled = [], False
        with client.chat.completions.create(
            model="mock-gpt",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        ) as stream:
            for chunk in stream:
                chunks.append(chunk)
                if len(chunks) == 3 and not signalled:
                    os.kill(tini, signal.SIGTERM)  # as `docker stop` / the kubelet does
                    signalled = True
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.split() == ["word"] * 40, "the stream was cut by the drain"
        assert chunks[-1].usage is not None
        assert proc.wait(30) == 0, (tmp_path / "container.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _buildah("rm", container)
    logs = (tmp_path / "container.log").read_text()
    assert "Traceback" not in logs, logs
    with sqlite3.connect(data / "lockgate.db") as db:
        assert db.execute("SELECT count(*) FROM usage_records").fetchone()[0] == 2
