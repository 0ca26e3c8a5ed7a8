"""Client dialects other than OpenAI chat, each translated to and from the canonical chat shapes."""
