"""The whole of lockgate.yaml: one section per concern."""

from __future__ import annotations

from pydantic import Field, model_validator

from lockgate.config.auth import AuthConfig
from lockgate.config.base import _Strict
from lockgate.config.limits import BudgetsConfig, RateLimitConfig
from lockgate.config.models import ModelGroup
from lockgate.config.routing import RouterConfig
from lockgate.config.server import ServerConfig, UIConfig
from lockgate.config.stores import DatabaseConfig, RedisConfig
from lockgate.config.telemetry import PostHogConfig, TelemetryConfig
from lockgate.config.usage import ResponsesConfig, UsageConfig


class Config(_Strict):
    server: ServerConfig = Field(default=ServerConfig(), description="Listening and request handling")
    auth: AuthConfig = Field(default=AuthConfig(), description="Credentials: master key, virtual keys, JWTs")
    models: list[ModelGroup] = Field(min_length=1, description="The public model names and the deployments behind each")
    router: RouterConfig = Field(default=RouterConfig(), description="Retries, backoff and cool-downs (docs/routing.md)")
    database: DatabaseConfig = Field(default=DatabaseConfig(), description="Keys, teams, usage and stored responses")
    usage: UsageConfig = Field(default=UsageConfig(), description="The usage writer (docs/usage.md)")
    responses: ResponsesConfig = Field(default=ResponsesConfig(), description="Stored Responses (docs/responses.md)")
    ratelimit: RateLimitConfig = Field(default=RateLimitConfig(), description="Rate limits (docs/ratelimits.md)")
    budgets: BudgetsConfig = Field(default=BudgetsConfig(), description="Spend budgets (docs/usage.md)")
    redis: RedisConfig = Field(default=RedisConfig(), description="The Redis shared by every feature whose backend is redis")
    posthog: PostHogConfig | None = Field(default=None, description="PostHog LLM analytics; off when absent (docs/operations.md)")
    telemetry: TelemetryConfig = Field(default=TelemetryConfig(), description="Logs, metrics and traces (docs/operations.md)")
    ui: UIConfig = Field(default=UIConfig(), description="The admin console (docs/console.md)")

    @model_validator(mode="after")
    def _names_are_unique_and_fallbacks_exist(self) -> "Config":
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        known = set(names)
        for i, group in enumerate(self.models):
            for fb in group.fallbacks:
                if fb not in known:
                    raise ValueError(f"models[{i}].fallbacks names unknown model {fb!r}")
        return self

    def redis_users(self) -> list[str]:
        """The features whose backend is redis (they share the one client of ``redis:``)."""
        backends = {
            "ratelimit": self.ratelimit.backend,
            "budgets": self.budgets.backend,
            "cooldowns": self.router.cooldown.backend,
        }
        return [name for name, backend in backends.items() if backend == "redis"]

    def model(self, name: str) -> ModelGroup | None:
        for group in self.models:
            if group.name == name:
                return group
        return None
