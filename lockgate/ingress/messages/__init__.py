"""The Anthropic Messages dialect (/v1/messages): pure translation to and from canonical chat. No I/O."""
