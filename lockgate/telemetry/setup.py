"""Builds the telemetry a config asks for, once at start-up, and closes it at shutdown.

Gateway.start calls ``sinks()`` before the SinkQueue exists and ``start()``
once the pipeline is built; Gateway.stop calls ``aclose()`` after the sinks
have drained (the PostHog sink is closed, and flushed, by the SinkQueue).
"""

from __future__ import annotations

from typing import Any

import structlog

from lockgate import __version__
from lockgate.config import Config
from lockgate.records import Sink

log = structlog.get_logger("lockgate.telemetry")


class Telemetry:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.posthog: Any = None
        self.metrics: Any = None
        self.sampler: Any = None
        self.tracing: Any = None
        self.readiness: Any = None
        ph = config.posthog
        if ph is not None and ph.api_key is not None and ph.api_key.get_secret_value():
            from lockgate.telemetry.posthog import PostHogSink

            self.posthog = PostHogSink(ph)
        if config.telemetry.metrics:
            from lockgate.telemetry.metrics import MetricsSink

            self.metrics = MetricsSink()

    def sinks(self) -> list[Sink]:
        return [s for s in (self.metrics, self.posthog) if s is not None]

    def start(self, gateway: Any) -> None:
        if self.posthog is not None and not self.posthog.privacy_mode:
            gateway.pipeline.capture_content = True
        if self.metrics is not None:
            from lockgate.telemetry.metrics import StateSampler, gateway_components

            self.sampler = StateSampler(
                gateway.router.describe, gateway.sinks, self.posthog, components=gateway_components(gateway)
            )
            self.sampler.start()
        from lockgate.telemetry.readiness import Readiness
        from lockgate.telemetry.tracing import Tracing

        self.readiness = Readiness(gateway)

        self.tracing = Tracing.from_endpoint(self.config.telemetry.otlp_endpoint, __version__)
        if self.tracing is not None:
            self.tracing.instrument(gateway.pipeline)
        log.info(
            "telemetry",
            metrics=self.metrics is not None,
            posthog=self.posthog is not None,
            posthog_privacy_mode=self.posthog.privacy_mode if self.posthog is not None else None,
            tracing=self.tracing is not None,
        )

    async def aclose(self) -> None:
        if self.sampler is not None:
            await self.sampler.aclose()
        if self.tracing is not None:
            await self.tracing.shutdown()
        if self.readiness is not None:
            await self.readiness.aclose()
