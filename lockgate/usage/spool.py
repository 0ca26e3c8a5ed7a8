"""A durable local spool for usage rows the database could not take.

One append-only file per process (``usage-<pid>-<random>.spool`` in the spool
directory), one JSON line per batch, fsynced before ``append`` returns. The
file is locked (flock) while its process lives; at start-up a process adopts
the files no live process holds (left by a crash or a stop while the database
was down) by copying their complete lines into its own spool, in file order,
then deleting them. Replay reads batches in order and marks them done in
memory; the file is truncated once every batch has reached the database. A
batch replayed twice (crash between the write and the truncate) is harmless:
writes are idempotent by request id.

Every method here does blocking file I/O: call it from a thread. A lock makes
the calls take turns, so the usage writer (replaying) and its spiller
(appending) can use one spool from two threads.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import threading
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import structlog

log = structlog.get_logger("lockgate.usage.spool")

Row = dict[str, Any]


class Spool:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"usage-{os.getpid()}-{secrets.token_hex(4)}.spool"
        self._file: BinaryIO = open(self.path, "a+b")
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._lock = threading.Lock()
        self._replayed = 0  # bytes of the file already written to the database

    # --- writing ------------------------------------------------------------------

    def append(self, rows: list[Row]) -> None:
        """Append one batch as one line and fsync it; a failed write leaves no torn line behind."""
        self.append_many([rows])

    def append_many(self, batches: list[list[Row]]) -> None:
        """Append batches, one line each, with one fsync for all; all or none are kept."""
        data = b"".join(orjson.dumps(rows) + b"\n" for rows in batches)
        with self._lock:
            f = self._file
            f.seek(0, os.SEEK_END)
            before = f.tell()
            try:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            except OSError:
                f.truncate(before)
                raise

    def adopt_orphans(self) -> int:
        """Take over the spool files of dead processes; returns how many batches were adopted."""
        adopted = 0
        for other in sorted(self.directory.glob("usage-*.spool"), key=lambda p: p.stat().st_mtime):
            if other == self.path:
                continue
            try:
                fh = open(other, "r+b")
            except OSError:
                continue
            with fh:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live process owns it
                for rows in _complete_batches(fh.read(), str(other)):
                    self.append(rows)
                    adopted += 1
                other.unlink()
        if adopted:
            log.info("spool_adopted", batches=adopted)
        return adopted

    # --- replay ---------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        return self._size() > self._replayed

    def _size(self) -> int:
        return os.fstat(self._file.fileno()).st_size

    def next_batch(self) -> tuple[int, list[Row]] | None:
        """The oldest batch not yet replayed and the file offset just past it."""
        with self._lock:
            return self._next_batch()

    def _next_batch(self) -> tuple[int, list[Row]] | None:
        f = self._file
        while True:
            f.seek(self._replayed)
            line = f.readline()
            if not line:
                return None
            end = self._replayed + len(line)
            if not line.endswith(b"\n"):
                return None  # cannot happen with our own appends; never read past a partial line
            try:
                return end, orjson.loads(line)
            except orjson.JSONDecodeError:
                log.error("spool_bad_line", path=str(self.path), offset=self._replayed)
                self._replayed = end

    def mark_replayed(self, offset: int) -> None:
        """Everything before `offset` is in the database; empty the file once all is."""
        with self._lock:
            self._replayed = offset
            if self._replayed >= self._size():
                self._file.truncate(0)
                os.fsync(self._file.fileno())
                self._replayed = 0

    def close(self, remove_if_empty: bool = True) -> None:
        with self._lock:
            empty = not self.pending
            self._file.close()  # releases the flock
        if remove_if_empty and empty:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


def _complete_batches(data: bytes, where: str) -> list[list[Row]]:
    """Whole, parseable lines only: a crash may have torn the last one."""
    out = []
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            rows = orjson.loads(line)
        except orjson.JSONDecodeError:
            log.error("spool_torn_line_skipped", path=where, size=len(line))
            continue
        if isinstance(rows, list):
            out.append(rows)
    return out
