"""Reading lockgate.yaml: ${VAR} interpolation, strict validation with errors that name the place, the embedded default."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lockgate.config.base import DEV_MASTER_KEY, ConfigError
from lockgate.config.models import PROVIDERS
from lockgate.config.root import Config

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str], path: str = "") -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string of a parsed YAML tree."""
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env and env[name] != "":
                return env[name]
            if default is not None:
                return default
            if name in env:
                return ""
            raise ConfigError(f"{path or 'config'}: environment variable {name} is not set")

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if part in PROVIDERS and i >= 2 and loc[i - 2] == "deployments":
            continue  # the union's tag (models.0.deployments.0.openai.x): the place is the deployment's own
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# Settings that left their old place: the error says where they went (docs/ratelimits.md#redis).
MOVED_FIELDS = {
    "ratelimit.redis_url": "redis.url",
    "ratelimit.redis_timeout_s": "redis.timeout_s (and redis.connect_timeout_s)",
    "ratelimit.key_prefix": "redis.key_prefix (limiter keys now start with {redis.key_prefix}rl:)",
    "ratelimit.on_backend_error": "redis.on_error (it applies to every feature that uses Redis)",
}
_BACKENDS_NOTE = (
    "note: ratelimit.backend now moves only the limiter to Redis; budgets.backend and "
    "router.cooldown.backend say where budgets and cool-downs live (default memory); see docs/ratelimits.md"
)


_PROVIDER_CHOICES = "Input should be " + ", ".join(repr(p) for p in PROVIDERS[:-1]) + f" or {PROVIDERS[-1]!r}"


def format_validation_error(err: ValidationError) -> str:
    lines = []
    moved = False
    for e in err.errors(include_url=False):
        where = _loc(tuple(e["loc"])) or "config"
        msg = e["msg"]
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):  # the deployment union's tag
            where = f"{where}.provider"
            msg = "Field required" if e["type"] == "union_tag_not_found" else _PROVIDER_CHOICES
        elif e["type"] == "extra_forbidden":
            msg = "unknown field"
            if where in MOVED_FIELDS:
                msg, moved = f"moved to {MOVED_FIELDS[where]}", True
        lines.append(f"{where}: {msg}")
    if moved:
        lines.append(_BACKENDS_NOTE)
    return "\n".join(lines)


def parse_config(data: Any, env: dict[str, str] | None = None) -> Config:
    if not isinstance(data, dict):
        raise ConfigError("config: the top level must be a mapping")
    data = interpolate(data, dict(os.environ) if env is None else env)
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Config:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise ConfigError(f"{p}: cannot read: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML: {err}") from None
    return parse_config(data, env)


# Well-known OpenAI models served by the embedded default when OPENAI_API_KEY is set.
DEFAULT_OPENAI_MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o4-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
)
DEFAULT_ANTHROPIC_MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")


def default_config(env: dict[str, str] | None = None) -> Config:
    """The embedded default: real providers whose keys are set, else a mock model."""
    env = dict(os.environ) if env is None else env
    models: list[dict[str, Any]] = []
    if env.get("OPENAI_API_KEY"):
        base = env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        for name in DEFAULT_OPENAI_MODELS:
            models.append(
                {
                    "name": name,
                    "deployments": [{"provider": "openai", "model": name, "api_base": base, "api_key": env["OPENAI_API_KEY"]}],
                }
            )
    if env.get("ANTHROPIC_API_KEY"):
        base = env.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com"
        for name in DEFAULT_ANTHROPIC_MODELS:
            models.append(
                {
                    "name": name,
                    "deployments": [
                        {"provider": "anthropic", "model": name, "api_base": base, "api_key": env["ANTHROPIC_API_KEY"]}
                    ],
                }
            )
    if not models:
        models = [
            {
                "name": "mock-gpt",
                "owned_by": "lockgate-mock",
                "deployments": [{"provider": "mock", "model": "mock-gpt", "mock_tokens_per_s": 0}],
            },
            {
                "name": "mock-embedding",
                "owned_by": "lockgate-mock",
                "deployments": [{"provider": "mock", "model": "mock-embedding"}],
            },
        ]
    master = env.get("LOCKGATE_MASTER_KEY") or DEV_MASTER_KEY
    return Config.model_validate(
        {
            "auth": {"master_key": master},
            "models": models,
            "database": {"url": env.get("LOCKGATE_DATABASE_URL", "sqlite:///lockgate.db")},
        }
    )


def resolve_config(path: str | None, env: dict[str, str] | None = None) -> Config:
    """The config from a file (argument, else LOCKGATE_CONFIG), else the embedded default."""
    env = dict(os.environ) if env is None else env
    path = path or env.get("LOCKGATE_CONFIG") or None
    if path:
        return load_config(path, env)
    return default_config(env)
