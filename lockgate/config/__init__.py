"""One validated model of lockgate.yaml, with ${VAR} / ${VAR:-default} interpolation.

Loading is strict: unknown keys are errors (a typo must not silently change
behaviour) and every error names the field and its place, e.g.
``models[0].deployments[1].provider: Input should be 'openai', 'anthropic' or 'mock'``.

One module per section (models, routing, auth, stores, usage, limits, telemetry, server), the
root model in root.py and loading in loading.py; everything is importable from here.
"""

from lockgate.config.auth import (
    AuthConfig,
    JWTClaims,
    JWTConfig,
    KeyEventsConfig,
)
from lockgate.config.base import (
    DEV_MASTER_KEY,
    Backend,
    ConfigError,
)
from lockgate.config.limits import (
    BudgetsConfig,
    RateLimitConfig,
    RateLimitDefaults,
)
from lockgate.config.loading import (
    DEFAULT_ANTHROPIC_MODELS,
    DEFAULT_OPENAI_MODELS,
    MOVED_FIELDS,
    default_config,
    format_validation_error,
    interpolate,
    load_config,
    parse_config,
    resolve_config,
)
from lockgate.config.models import (
    AnthropicDeployment,
    Deployment,
    DeploymentBase,
    MockDeployment,
    ModelGroup,
    ModelLimits,
    OpenAIDeployment,
    ProviderName,
    Strategy,
)
from lockgate.config.root import (
    Config,
)
from lockgate.config.routing import (
    Backoff,
    Cooldown,
    RouterConfig,
)
from lockgate.config.server import (
    CorsConfig,
    ServerConfig,
    UIConfig,
    is_loopback_host,
)
from lockgate.config.stores import (
    DatabaseConfig,
    RedisConfig,
)
from lockgate.config.telemetry import (
    PostHogConfig,
    TelemetryConfig,
)
from lockgate.config.usage import (
    HttpSinkConfig,
    ResponsesConfig,
    UsageConfig,
)

__all__ = [
    "DEV_MASTER_KEY",
    "ConfigError",
    "Backend",
    "ProviderName",
    "DeploymentBase",
    "OpenAIDeployment",
    "AnthropicDeployment",
    "MockDeployment",
    "Deployment",
    "Strategy",
    "ModelLimits",
    "ModelGroup",
    "Backoff",
    "Cooldown",
    "RouterConfig",
    "JWTClaims",
    "JWTConfig",
    "KeyEventsConfig",
    "AuthConfig",
    "DatabaseConfig",
    "RedisConfig",
    "HttpSinkConfig",
    "UsageConfig",
    "ResponsesConfig",
    "RateLimitDefaults",
    "RateLimitConfig",
    "BudgetsConfig",
    "PostHogConfig",
    "TelemetryConfig",
    "CorsConfig",
    "ServerConfig",
    "UIConfig",
    "is_loopback_host",
    "Config",
    "interpolate",
    "MOVED_FIELDS",
    "format_validation_error",
    "parse_config",
    "load_config",
    "DEFAULT_OPENAI_MODELS",
    "DEFAULT_ANTHROPIC_MODELS",
    "default_config",
    "resolve_config",
]
