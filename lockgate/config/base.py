"""What every config section shares: strict, frozen models, and the errors loading raises."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

# A fixed key for the embedded default on loopback only, so the README's curl works as written.
DEV_MASTER_KEY = "sk-lockgate-dev"


class ConfigError(Exception):
    """A configuration that cannot be served; the message says what and where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Where a feature keeps its state: this process alone, or the Redis of the `redis:` section (shared by replicas).
Backend = Literal["memory", "redis"]
