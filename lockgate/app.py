"""create_app(config) -> the ASGI app; its lifespan builds the shared clients, router and sinks."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from lockgate import __version__, redaction
from lockgate.api import admin, admin_audit, admin_teams, docs, health, messages, openai, responses, routes
from lockgate.api import openapi as openapi_spec
from lockgate.api import usage as usage_api
from lockgate.api.cors import Cors
from lockgate.api.front import Front, security_headers
from lockgate.api.http import error_response
from lockgate.auth import Authenticator
from lockgate.config import Config, resolve_config
from lockgate.context import Admission
from lockgate.errors import GatewayError, GatewayInternal, InvalidRequest, MethodNotAllowed, NotFound
from lockgate.ingress.responses.retention import RetentionPurge
from lockgate.ingress.responses.store import ResponseStore
from lockgate.pipeline import Pipeline
from lockgate.providers import pooled_provider
from lockgate.providers.http import HttpPool
from lockgate.ratelimit import build_admission
from lockgate.records import Sink, SinkQueue
from lockgate.router import Router, build_upstreams
from lockgate.routing.shared import build_cooldowns
from lockgate.store import Store
from lockgate.telemetry.logging import AccessLogSink, configure_logging
from lockgate.telemetry.metrics import IN_FLIGHT, count_refusal
from lockgate.telemetry.setup import Telemetry
from lockgate.usage import UsageService

if TYPE_CHECKING:
    from lockgate.edge_keys import KeyEvents
    from lockgate.redis_client import SharedRedis

log = structlog.get_logger("lockgate")


class Gateway:
    """What the app shares across requests, built once at start-up."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started = False
        self.redis: SharedRedis | None = None
        self.key_events: KeyEvents | None = None  # auth.key_events: an edge's key cache (docs/cloudflare.md)

    async def start(self) -> None:
        config = self.config
        self.pool = HttpPool()
        # One Redis client for every feature whose backend is redis (limiter, budgets, cool-downs, readiness).
        if config.redis_users():
            # Imported only when a feature uses Redis: the client library costs ~7 MB resident.
            from lockgate.redis_client import build_redis

            self.redis = build_redis(config)
        # The SQL store (keys, usage…): migrated before anything uses it; others share its engine.
        self.store = await Store(config.database.url).open()
        self.responses = ResponseStore(self.store.engine)  # stored Responses (store: true)
        # Expired stored responses are deleted in the background (responses.retention_days; 0 keeps them).
        self.responses_purge = RetentionPurge(self.responses, config.responses) if config.responses.retention_days else None
        # Providers are built here, on the shared pool; the router receives them as its upstreams.
        upstreams = build_upstreams(config, lambda dep: pooled_provider(dep, self.pool))
        self.router = Router(config, upstreams, cooldowns=build_cooldowns(config, self.redis))
        await self.router.start()  # shared cool-downs (Redis) are read before the first request
        self.telemetry = Telemetry(config)
        # Best-effort sinks: a lane (bounded queue and task) each; they may drop, counted.
        best_effort: list[Sink] = []
        if config.telemetry.access_log:
            best_effort.append(AccessLogSink())
        best_effort.extend(self.telemetry.sinks())  # metrics, PostHog
        # Usage records to SQL (batched, spooled when the database lags) and the budget stage.
        self.usage = await UsageService.start(config, self.store.engine, self.redis)
        self.sinks = SinkQueue(best_effort, maxsize=config.server.sink_queue_size, accounting=self.usage.accounting_sinks())
        self.sinks.start()
        # Admission stages run in this order; the first to refuse answers.
        self.ratelimit = build_admission(config, self.redis)
        await self.ratelimit.start()
        admissions: list[Admission] = [self.ratelimit, self.usage.budgets]
        self.pipeline = Pipeline(
            Authenticator(config.auth, self.store),
            self.router,
            self.sinks,
            admissions=admissions,
            hooks=self.telemetry.pipeline_hooks(),  # tracing, when an OTLP endpoint is set
            capture_content=self.telemetry.capture_content,  # prompts for analytics
        )
        if config.auth.key_events is not None:
            from lockgate.edge_keys import KeyEvents  # httpx, only when configured

            self.key_events = KeyEvents(config.auth.key_events).start()
        self.telemetry.start(self)  # gauges sampler, readiness
        if self.responses_purge is not None:
            self.responses_purge.start()
        self.started = True
        log.info("started", version=__version__, models=[m.name for m in config.models], redis=config.redis_users())

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        await self.sinks.aclose()
        await self.telemetry.aclose()
        await self.ratelimit.aclose()
        await self.usage.aclose()
        await self.pipeline.authenticator.aclose()
        if self.responses_purge is not None:
            await self.responses_purge.aclose()
        await self.responses.aclose()  # saves still queued are committed before the engine goes
        if self.key_events is not None:
            await self.key_events.aclose()
        await self.router.aclose()
        if self.redis is not None:  # after every feature that used it
            await self.redis.aclose()
        await self.pool.aclose()
        await self.store.aclose()
        log.info("stopped")


def create_app(config: Config, *, configure_logs: bool = True) -> FastAPI:
    # Before anything can log or fail: this process's redactor knows every configured secret by value
    # (each `--workers` process calls this with its own config).
    redaction.install(redaction.Redactor.from_config(config))
    if configure_logs:
        configure_logging(config.telemetry.log_format, config.telemetry.log_level)
    gateway = Gateway(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        # What start-up made (modules, config, routes, pools) lives as long as the process: moved out
        # of the collector's generations, it is no longer traversed by every full collection.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await gateway.stop()

    app = LockgateApp(
        title="Lockgate",
        version=__version__,
        lifespan=lifespan,
        generate_unique_id_function=lambda route: route.name,  # operationIds: the handlers' names
        # The spec and its pages are ours (api/openapi.py): the framework's would document 422s.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        # Our own tracing (telemetry/tracing.py) is the one source of spans; FastAPI's native
        # OpenTelemetry would add a second set and per-request checks once a provider is set.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.gateway = gateway
    routes.register(app)  # the inference POSTs: one table, served by Front, documented here
    app.include_router(openai.router)
    app.include_router(messages.router)
    app.include_router(responses.router)
    app.include_router(health.router)
    app.include_router(usage_api.router)
    app.include_router(admin.router)
    app.include_router(admin_teams.router)
    app.include_router(admin_audit.router)
    if config.ui.enabled:  # the admin console (lockgate/console/, docs/console.md)
        from lockgate import console

        app.include_router(console.build_router(config))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        err: GatewayError
        if exc.status_code == 404:
            err = NotFound(f"Unknown route: {request.method} {request.url.path}")
        elif exc.status_code == 405:
            err = MethodNotAllowed(f"Method {request.method} is not allowed on {request.url.path}.")
        else:
            err = InvalidRequest(str(exc.detail), status=exc.status_code)
        if messages.is_messages_path(request.url.path):
            return messages.error_response(request, err, exc.headers)  # an Anthropic client: its error shape
        response = error_response(err)
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            # Starlette's Allow names only the first route on the path; the path may have several.
            response.headers["allow"] = ", ".join(allowed_methods(app, request.url.path))
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error_response(InvalidRequest(f"Invalid value for '{param}': {first.get('msg')}", param=param))

    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> Response:
        return error_response(exc)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled_error", path=request.url.path)
        return error_response(GatewayInternal("The gateway failed to process this request."))

    from lockgate.api import metrics

    app.include_router(metrics.router)  # always in the spec; 404 when telemetry.metrics is off
    openapi_spec.install(app, routes.SPEC_MODELS)
    docs.install(app)  # /docs: Swagger UI from the package's own assets
    # Request ids and security headers on every response, CORS, the in-flight gauge, the inference fast path.
    cors = config.server.cors
    app.front_options = dict(
        paths=routes.fast_paths(),
        in_flight=IN_FLIGHT if config.telemetry.metrics else None,
        headers=security_headers(config.server),
        cors=Cors(cors, on_refused=count_refusal if config.telemetry.metrics else None) if cors else None,
    )
    return app


class LockgateApp(FastAPI):
    """FastAPI with the Front (api/front.py) outside the whole middleware stack.

    Outermost: request ids on every response, the in-flight gauge, and the inference fast path,
    which thus skips Starlette's error middleware and FastAPI's telemetry layer too (the Front
    answers its own unexpected errors). Measured with bench/: see README's performance section.
    """

    front_options: dict[str, Any]

    def build_middleware_stack(self) -> ASGIApp:
        return Front(super().build_middleware_stack(), **self.front_options)


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route serves on this path (for a 405's Allow)."""

    def walk(routes: list[Any]) -> Iterator[Any]:
        for route in routes:
            inner = getattr(route, "original_router", None)  # an included router
            yield from walk(inner.routes) if inner is not None else [route]

    exact: set[str] = set()
    matched: set[str] = set()
    for route in walk(app.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods = getattr(route, "methods", None) or ()
            (exact if getattr(route, "path", None) == path else matched).update(methods)
    # A path declared as it is (/v1/responses/input_tokens) is not also the template beside it
    # (/v1/responses/{response_id}): only when no route names it exactly do templates count.
    return sorted(exact or matched)


def app_from_env() -> FastAPI:
    """The factory uvicorn's worker processes call (config from LOCKGATE_CONFIG or the embedded default)."""
    return create_app(resolve_config(None))
