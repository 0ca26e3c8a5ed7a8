"""The OpenAI Responses API ingress: /v1/responses served through the canonical chat pipeline."""
