"""`lockgate serve`: run the gateway under uvicorn, one process or several workers."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from lockgate import __version__
from lockgate.cli.common import CONFIG_HELP, _config_from_env_text, _describe
from lockgate.config import DEV_MASTER_KEY, Config, ConfigError, is_loopback_host, resolve_config


def _banner(config: Config, host: str, port: int, workers: int, source: str) -> str:
    shown_host = f"[{host}]" if ":" in host else host
    master = config.auth.master_key.get_secret_value() if config.auth.master_key else None
    if master == DEV_MASTER_KEY:
        key_line = f"  key:    {DEV_MASTER_KEY}   (development key; set LOCKGATE_MASTER_KEY to choose your own)"
    elif master:
        key_line = f"  key:    the master key from your config ({master[:6]}…)"
    else:
        key_line = "  key:    none configured (auth.master_key); every request will get 401"
    return "\n".join(
        [
            f"Lockgate {__version__} ({source}), {workers} worker(s)",
            f"  listen: http://{shown_host}:{port}/v1",
            key_line,
            "  models:",
            *_describe(config),
            f"  try:    curl http://{shown_host}:{port}/v1/chat/completions -H 'Authorization: Bearer <key>' "
            f'-H \'Content-Type: application/json\' -d \'{{"model": "{config.models[0].name}", '
            '"messages": [{"role": "user", "content": "Hello"}]}\'',
        ]
    )


def _multiprocess_metrics_dir() -> None:
    """Several workers: each writes its Prometheus metrics to files here, and /metrics on any worker sums them.

    Set before any worker imports prometheus_client (workers inherit the environment).
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return  # the operator's own directory (which they must empty between runs)
    import atexit
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="lockgate-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    atexit.register(shutil.rmtree, path, True)


def _drain_seconds() -> float:
    """How long SIGTERM waits for in-flight requests and streams (LOCKGATE_DRAIN_SECONDS, default 30)."""
    try:
        return max(0.0, float(os.environ.get("LOCKGATE_DRAIN_SECONDS", "30")))
    except ValueError:
        return 30.0


def _protocol(config: Config) -> object:
    from lockgate.api.front import security_headers
    from lockgate.http_server import ClientLimits, protocol

    server = config.server
    limits = ClientLimits(
        max_header_bytes=server.max_header_bytes,
        header_timeout_s=server.header_timeout_s,
        body_timeout_s=server.body_timeout_s,
        metrics=config.telemetry.metrics,
        headers=(*security_headers(server), (b"cache-control", b"no-store")),
    )
    return protocol(limits)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    if args.config:
        os.environ["LOCKGATE_CONFIG"] = args.config
    else:
        _config_from_env_text()
    try:
        config = resolve_config(args.config)
    except ConfigError as err:
        print(f"lockgate: invalid configuration:\n{err}", file=sys.stderr)
        return 2
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    workers = args.workers or config.server.workers
    master = config.auth.master_key.get_secret_value() if config.auth.master_key else None
    if master == DEV_MASTER_KEY and not is_loopback_host(host):
        print(
            f"lockgate: refusing to listen on {host} with the development key; set LOCKGATE_MASTER_KEY",
            file=sys.stderr,
        )
        return 2
    source = os.environ.get("LOCKGATE_CONFIG") or "embedded default config"
    print(_banner(config, host, port, workers, source), flush=True)
    common = dict(
        host=host,
        port=port,
        loop="uvloop",
        # httptools with the limits it lacks: header size, slow-client deadlines (docs/limits.md).
        http=_protocol(config),
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=_drain_seconds(),
        server_header=False,  # no "server: uvicorn" banner; the date header stays (HTTP asks for it)
        ws="none",  # no WebSocket routes: the websockets package is not even imported
    )
    if workers > 1:
        _multiprocess_metrics_dir()
        uvicorn.run("lockgate.app:app_from_env", factory=True, workers=workers, **common)  # type: ignore[arg-type]
    else:
        import signal

        from lockgate.app import create_app

        # uvicorn re-raises a captured SIGTERM once drained, under the handler it found: make that
        # a clean exit 0 (as the multi-worker supervisor gives) rather than death by the signal.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        uvicorn.run(create_app(config), **common)  # type: ignore[arg-type]
    return 0


def add_command(sub: Any) -> None:
    """Register `serve` on the main parser's subcommands."""
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help=CONFIG_HELP)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 4000)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")
    serve.set_defaults(func=cmd_serve)
