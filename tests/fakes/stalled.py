"""Upstreams that never let a connection finish: for connect timeouts.

FullBacklog   a listening socket whose accept queue is full and never drained: the
              kernel drops every new SYN, so a connect hangs in SYN retries (TCP).
SilentServer  accepts every connection and never sends a byte: a TLS client waits
              for the server's hello forever (the handshake part of a connect).
"""

from __future__ import annotations

import socket
import threading


class FullBacklog:
    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port = int(self._listener.getsockname()[1])
        self._fillers: list[socket.socket] = []

    def start(self) -> "FullBacklog":
        # Connect until one connect hangs: from then on the queue is full.
        for _ in range(64):
            filler = socket.socket()
            filler.settimeout(0.3)
            try:
                filler.connect(("127.0.0.1", self.port))
            except OSError:  # timed out: the SYN was dropped
                filler.close()
                return self
            self._fillers.append(filler)
        raise RuntimeError("the accept queue never filled; this kernel accepts past the backlog")

    def stop(self) -> None:
        for s in self._fillers:
            s.close()
        self._listener.close()


class SilentServer:
    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = int(self._listener.getsockname()[1])
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True, name="silent-server")
        self.accepted = 0

    def start(self) -> "SilentServer":
        self._thread.start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed by stop()
                return
            self._held.append(conn)  # held open, never read from or written to
            self.accepted += 1

    def stop(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self._listener.close()
        for s in self._held:
            s.close()
        self._thread.join(2)
