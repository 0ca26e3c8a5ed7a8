"""PostgreSQL goes down in the middle of a load and comes back: exactly N records, no duplicates.

The outage is real: a throwaway PostgreSQL cluster (initdb + pg_ctl, on a free
port in a temp dir) is stopped and started again; the machine's shared cluster
is never touched.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import basic_config
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import MASTER_KEY, GatewayProcess, free_port, missing
from tests.usage_helpers import fetch, usage_config, wait_for_records

pytestmark = pytest.mark.postgres


class Cluster:
    """A PostgreSQL cluster of our own, run as the postgres user when we are root."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            missing("initdb is not installed")
        self.bin = Path(bins[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="lockgate-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bin / tool), *args], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.dir / "pg.log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    c.start()
    yield c
    c.destroy()


def test_database_outage_mid_load_loses_and_duplicates_nothing(
    fake_openai: FakeOpenAI, start_gateway: Callable[..., GatewayProcess], cluster: Cluster
) -> None:
    cfg = usage_config(basic_config(fake_openai), cluster.url, flush_interval_s=0.1, batch_size=5, write_timeout_s=1)
    gw = start_gateway(cfg)
    client = openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=20)
    n = 90
    ids: list[str] = []
    lock = threading.Lock()

    def send(count: int) -> None:
        for _ in range(count):
            raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
            with lock:
                ids.append(raw.headers["x-request-id"])

    send(30)
    assert len(wait_for_records(cluster.url, 30)) == 30
    cluster.stop()  # the database goes away in the middle of the load ...
    threads = [threading.Thread(target=send, args=(10,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cluster.start()  # ... and comes back
    send(30)

    rows = wait_for_records(cluster.url, n, timeout_s=20)
    assert len(ids) == n
    assert len(rows) == n and sorted(r["request_id"] for r in rows) == sorted(ids)
    assert fetch(cluster.url, "SELECT SUM(requests) AS n FROM usage_daily")[0]["n"] == n
    logs = gw.logs()
    assert "usage_db_write_failed" in logs and "usage_spool_replayed" in logs
    gw.stop()
    assert not list(Path(gw.workdir, "lockgate-spool").glob("*.spool"))  # drained and removed
