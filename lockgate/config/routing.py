"""The router: attempts, back-off between them and cool-downs of failing deployments."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lockgate.config.base import Backend, _Strict


class Backoff(_Strict):
    base_s: float = Field(default=0.25, ge=0, description="First wait; doubles each attempt")
    max_s: float = Field(default=8.0, ge=0, description="Longest wait")
    jitter: Literal["full", "none"] = Field(default="full", description="full: a random wait up to the computed one")


class Cooldown(_Strict):
    failures: int = Field(default=3, ge=1, description="Failures within window_s that cool a deployment down")
    window_s: float = Field(default=60.0, gt=0, description="The window the failures are counted in")
    cooldown_s: float = Field(default=30.0, ge=0, description="How long a cooled-down deployment is skipped")
    backend: Backend = Field(default="memory", description="redis: cool-downs shared by every replica")


class RouterConfig(_Strict):
    max_attempts: int = Field(default=3, ge=1, description="Attempts per request, across deployments")
    backoff: Backoff = Field(default=Backoff(), description="The wait between attempts")
    deadline_s: float = Field(default=120.0, gt=0, description="Longest a request spends on retries")
    cooldown: Cooldown = Field(default=Cooldown(), description="When a failing deployment is skipped for a while")
