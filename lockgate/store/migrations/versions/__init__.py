"""Revisions, chained by `down_revision`: 0001_keys, then the next module's, and so on."""
