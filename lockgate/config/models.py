"""Deployments (one upstream each, per provider) and the model groups that name them."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, SecretStr

from lockgate.config.base import _Strict

ProviderName = Literal["openai", "anthropic", "mock"]


class DeploymentBase(_Strict):
    """What every deployment has, whatever its provider (the subclasses below add their own)."""

    provider: ProviderName = Field(description="The upstream's protocol")
    model: str = Field(min_length=1, description="The upstream's model id")
    id: str | None = Field(default=None, description="A name for logs and headers; derived when absent")
    api_base: str | None = Field(default=None, description="The upstream's base URL; the provider's own when absent")
    api_key: SecretStr | None = Field(default=None, description="The upstream's key")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers sent upstream")
    # Timeouts in seconds, per attempt (docs/routing.md, "Timeouts"). A stream is never
    # capped by timeout_s once its first event arrived, only by its idle gaps and,
    # when set, max_stream_duration_s.
    connect_timeout_s: float = Field(default=10.0, gt=0, description="TCP connect and TLS handshake")
    timeout_s: float = Field(default=600.0, gt=0, description="A whole non-streamed answer; a stream's first event")
    first_byte_timeout_s: float | None = Field(default=None, gt=0, description="A stream's first event; timeout_s when absent")
    stream_idle_timeout_s: float = Field(default=120.0, gt=0, description="Longest silence after a stream's first event")
    max_stream_duration_s: float | None = Field(default=None, gt=0, description="A whole stream; no cap when absent")
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Pooled connections to this upstream (one pool for deployments with the same api_base and pool settings)",
    )
    max_output_tokens: int | None = Field(
        default=None,
        ge=1,
        description="The model's output limit: a larger translated max_tokens (Messages, Responses) is clamped to it",
    )
    # Size caps on what the upstream sends back (docs/limits.md): past them the answer is cut, 502.
    max_response_bytes: int = Field(default=128 * 1024 * 1024, ge=1024, description="A non-streamed answer's body, decompressed")
    max_stream_bytes: int = Field(default=256 * 1024 * 1024, ge=1024, description="A whole stream's body, decompressed")
    # Routing.
    weight: float = Field(default=1.0, ge=0, description="Share of traffic under the weighted strategy")
    priority: int = Field(default=0, description="Lower is tried first under the priority strategy")
    # Prices in USD per million tokens; built-in table when absent (resolved once: usage/pricing.py).
    input_cost_per_mtok: float | None = Field(
        default=None, ge=0, description="USD per million input tokens; the built-in price table when absent"
    )
    output_cost_per_mtok: float | None = Field(
        default=None, ge=0, description="USD per million output tokens; the built-in price table when absent"
    )
    cached_input_cost_per_mtok: float | None = Field(
        default=None, ge=0, description="USD per million cached input tokens; the built-in price table when absent"
    )
    cache_write_cost_per_mtok: float | None = Field(
        default=None, ge=0, description="USD per million cache-write tokens; the built-in price table when absent"
    )

    def display_id(self, index: int) -> str:
        return self.id or f"{self.provider}/{self.model}#{index}"


class OpenAIDeployment(DeploymentBase):
    """An OpenAI-protocol upstream (OpenAI, Azure, Groq, vLLM, ...)."""

    provider: Literal["openai"]
    # Always ask for the usage chunk of a stream; off for servers that reject stream_options.
    stream_usage: bool = True
    # How /v1/responses is served here: translated through chat (any OpenAI-compatible server), or
    # passed through to the upstream's own /v1/responses (OpenAI itself; docs/responses.md).
    responses: Literal["translated", "native"] = "translated"


class AnthropicDeployment(DeploymentBase):
    """An Anthropic Messages API upstream."""

    provider: Literal["anthropic"]
    max_tokens_default: int = Field(default=4096, ge=1, description="max_tokens when the caller sets none")
    anthropic_version: str = Field(default="2023-06-01", description="The `anthropic-version` header sent upstream")
    anthropic_beta: str | None = Field(default=None, description="The `anthropic-beta` header sent upstream, when set")


class MockDeployment(DeploymentBase):
    """The mock provider: a deterministic reply for demos and load tests of client apps."""

    provider: Literal["mock"]
    mock_response: str | None = Field(
        default=None,
        description="Fixed reply (except to a forced tool choice); by default the mock echoes the prompt, calls a tool the user mentions and answers response_format with matching JSON",
    )
    mock_latency_ms: float = Field(default=0.0, ge=0, description="Delay before the first token")
    mock_tokens_per_s: float = Field(default=0.0, ge=0, description="Stream pacing; 0 = as fast as possible")
    mock_embedding_dims: int = Field(default=256, ge=1, le=8192, description="Dimensions of a mock embedding")


# Discriminated on `provider`: a field of another provider is an unknown field, like any typo.
Deployment = Annotated[OpenAIDeployment | AnthropicDeployment | MockDeployment, Field(discriminator="provider")]
PROVIDERS: tuple[str, ...] = get_args(ProviderName)


Strategy = Literal["priority", "cost", "latency", "weighted", "least-busy"]


class ModelLimits(_Strict):
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute")
    tpm: int | None = Field(default=None, ge=1, description="Tokens per minute")
    rpd: int | None = Field(default=None, ge=1, description="Requests per day")
    tpd: int | None = Field(default=None, ge=1, description="Tokens per day")
    max_parallel_requests: int | None = Field(default=None, ge=1, description="Requests in flight at once")


class ModelGroup(_Strict):
    """A public model name and the deployments behind it."""

    name: str = Field(min_length=1, description="The public model name clients send")
    deployments: list[Deployment] = Field(min_length=1, description="The upstreams that serve this name")
    strategy: Strategy = Field(default="priority", description="How a deployment is chosen (docs/routing.md)")
    fallbacks: list[str] = Field(
        default_factory=list, description="Other model names tried, in order, when every deployment failed"
    )
    limits: ModelLimits | None = Field(default=None, description="Limits on this model, across every key")
    # Resume a broken stream on the next deployment with what was delivered as a prefix.
    stream_resume: bool = False
    owned_by: str | None = Field(default=None, description="`owned_by` in /v1/models")
