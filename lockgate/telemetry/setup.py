"""Builds the telemetry a config asks for, once at start-up, and closes it at shutdown.

Gateway.start calls ``sinks()`` before the SinkQueue exists and ``start()``
once the pipeline is built (which takes ``pipeline_hooks()`` and ``capture_content``); Gateway.stop calls ``aclose()`` after the sinks
have drained (the PostHog sink is closed, and flushed, by the SinkQueue).
"""

from __future__ import annotations

from typing import Any

import structlog

from lockgate import __version__
from lockgate.config import Config
from lockgate.pipeline_hooks import PipelineHooks
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
        from lockgate.telemetry.tracing import Tracing

        self.tracing = Tracing.from_endpoint(config.telemetry.otlp_endpoint, __version__)

    @property
    def capture_content(self) -> bool:
        """Analytics may see prompts and completions (PostHog with privacy_mode: false)."""
        return self.posthog is not None and not self.posthog.privacy_mode

    def pipeline_hooks(self) -> PipelineHooks | None:
        """The pipeline's stage hooks: spans when tracing is on, else none at all."""
        return self.tracing.hooks() if self.tracing is not None else None

    def sinks(self) -> list[Sink]:
        return [s for s in (self.metrics, self.posthog) if s is not None]

    def start(self, gateway: Any) -> None:
        if self.metrics is not None:
            from lockgate.telemetry.metrics import StateSampler, gateway_components

            self.sampler = StateSampler(
                gateway.router.describe, gateway.sinks, self.posthog, components=gateway_components(gateway)
            )
            self.sampler.start()
        from lockgate.telemetry.readiness import Readiness

        self.readiness = Readiness(gateway)
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
