"""Secrets kept out of client errors, logs, metrics and analytics: by value, and by shape.

Every secret the gateway is configured with (provider keys, credential headers,
the master key, the JWT secret, the PostHog key, passwords in database and
Redis URLs…) is known at start-up. ``Redactor.from_config`` collects them once
and compiles one regular expression that masks

* each secret's exact value, whatever its shape (``gsk_…``, 32 hex digits, a word);
* the masked echoes upstreams make of a key: its first characters, a run of
  mask characters and perhaps its last ones (``Incorrect API key provided:
  gsk_abc***xyz``), or a mask run followed by its last characters;
* what looks like a key or token even if it was never configured: ours
  (``lg-…``), providers' ``sk-…``, ``Bearer …`` and JWTs (virtual keys live in
  the database, callers' tokens come with requests).

``install`` makes one redactor the process's own; ``redact`` uses it. Each
worker process builds and installs its own at start-up (``create_app``). This
module imports no web framework.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit

from pydantic import BaseModel, SecretStr

MASK = "[redacted]"

# Shorter secrets are not redacted by value (they would mask ordinary words); say so in the docs.
MIN_SECRET_LENGTH = 4
# Below this length a secret is matched only as a whole word, so "hunter2" does not eat "hunter2x".
_WORD_BOUNDED_BELOW = 12
# Masked echoes are recognised for secrets at least this long, from this many leading characters
# (OpenAI shows 8, "sk-proj-"; others 6 or 7) or this many trailing ones after a mask.
_ECHO_MIN_SECRET = 12
_ECHO_PREFIX = 6
_ECHO_SUFFIX = 4

_CACHE_SIZE = 4096
_CACHED_MAX_CHARS = 256

# What upstreams put in place of the hidden middle of a key, and how such a run starts.
_MASK_RUN = r"(?:[*•#]{3,}|…|\.{3,})"
_MASK_OPENERS = ("***", "•••", "###", "…", "...")
# Characters a key is made of (for the visible parts around a mask).
_KEYISH = r"[A-Za-z0-9_\-+/=]"
_NOT_ALNUM_AFTER = r"(?![A-Za-z0-9])"

# What looks like a key or token, configured or not: (literal start, regex for the rest).
# Ours `lg-…` and providers' `sk-…` (also partly masked) as whole words, bearer tokens, JWTs.
_SHAPES = (
    ("sk-", r"(?<![A-Za-z0-9_]sk-)[A-Za-z0-9_\-*.]{4,}"),
    ("lg-", r"(?<![A-Za-z0-9_]lg-)[A-Za-z0-9_\-*.]{4,}"),
    ("Bearer", r"\s+\S+"),
    ("eyJ", r"[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"),
)

# Header names (lower case, or a part of one) that carry credentials.
_CREDENTIAL_HEADER_PARTS = ("authorization", "api-key", "api_key", "apikey", "token", "secret", "password", "cookie", "signature")
# URL query parameters that carry credentials (Azure SAS `sig`, `key=`, `api-key=`, `token=`…).
_CREDENTIAL_QUERY_PARTS = ("key", "token", "secret", "password", "sig", "auth", "credential")
# Config string fields holding URLs (the suffix of their name): passwords inside them are secrets.
_URL_FIELD_SUFFIXES = ("url", "api_base", "endpoint", "dsn")


class Redactor:
    """Masks configured secrets and key-shaped text; built once, then one regex pass per string."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        entries: list[tuple[str, str]] = [(v, _exact_tail(v)) for v in values]
        echoed = [v for v in values if len(v) >= _ECHO_MIN_SECRET]
        # "gsk_abc***xyz", "sk-proj-****abcd", "a1b2c3d4…": the start, maybe more key, a mask, maybe the end.
        entries += [(v[:_ECHO_PREFIX], rf"{_KEYISH}*?{_MASK_RUN}{_KEYISH}*") for v in echoed]
        if echoed:
            # "****wxyz": a mask, then the last characters.
            endings = "|".join(sorted({re.escape(v[-_ECHO_SUFFIX:]) for v in echoed}, key=len, reverse=True))
            tail = rf"[*•#.…]*{_KEYISH}*?(?:{endings}){_NOT_ALNUM_AFTER}"
            entries += [(opener, tail) for opener in _MASK_OPENERS]
        entries += _SHAPES
        self.pattern = re.compile(_trie_pattern(entries))
        self._sub = self.pattern.sub
        # Log and analytics values repeat (model, deployment, user, URL…): remembered, bounded.
        self._cache: dict[str, str] = {}

    @classmethod
    def from_config(cls, config: BaseModel) -> "Redactor":
        return cls(configured_secrets(config))

    def __call__(self, text: str) -> str:
        return self._sub(MASK, text)

    def cached(self, text: str) -> str:
        """The same as calling, remembering short values: for log and event fields, which repeat."""
        done = self._cache.get(text)
        if done is None:
            done = self._sub(MASK, text)
            if len(text) <= _CACHED_MAX_CHARS:
                if len(self._cache) >= _CACHE_SIZE:
                    self._cache.clear()  # cheaper than LRU bookkeeping; unique values only refill it
                self._cache[text] = done
        return done

    def deep(self, value: Any) -> Any:
        """``value`` with every string inside it (dicts, lists, tuples) redacted."""
        if isinstance(value, str):
            return self.cached(value)
        if isinstance(value, dict):
            return {k: self.deep(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.deep(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.deep(v) for v in value)
        return value


def _exact_tail(value: str) -> str:
    if len(value) >= _WORD_BOUNDED_BELOW:
        return ""
    # A short secret only as a whole word: nothing alphanumeric just before or after it.
    return rf"(?<![A-Za-z0-9]{re.escape(value)}){_NOT_ALNUM_AFTER}"


def _trie_pattern(entries: list[tuple[str, str]]) -> str:
    """One alternation, factored on the entries' literal starts (a trie), so matching stays fast.

    Python's regex engine tries alternatives one by one at each position; factored, it
    skips positions whose character starts no entry and follows one branch per character.
    Deeper branches come first, so the longest literal wins (a secret containing another).
    """
    root: dict[str, Any] = {}
    for literal, tail in entries:
        node = root
        for char in literal:
            node = node.setdefault(char, {})
        node.setdefault("", []).append(tail)
    return _emit(root)


def _emit(node: dict[str, Any]) -> str:
    alternatives = [re.escape(char) + _emit(child) for char, child in node.items() if char]
    tails: list[str] = node.get("", [])
    alternatives += [t for t in tails if t] + ([""] if "" in tails else [])
    if len(alternatives) == 1:
        return alternatives[0]
    return "(?:" + "|".join(alternatives) + ")"


# --- which secrets a config holds -------------------------------------------------------


def configured_secrets(config: BaseModel) -> list[str]:
    """Every secret in a config: the one place that knows where they are.

    Walks the whole config, so sections added later are covered without edits here:
    every ``SecretStr`` (provider ``api_key``, ``auth.master_key``, ``jwt.hs256_secret``,
    ``posthog.api_key``…), passwords and credential query parameters of URL fields
    (``database.url``, ``redis.url``, ``api_base``…), and the values of
    credential headers sent upstream (``headers: {api-key: …}``).
    """
    return sorted(set(_walk(config, "")))


def _walk(value: Any, name: str) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield from _with_token(value.get_secret_value())
    elif isinstance(value, BaseModel):
        for field in type(value).model_fields:
            yield from _walk(getattr(value, field), field)
    elif isinstance(value, dict):
        for key, item in value.items():
            if name == "headers" and isinstance(item, str) and _is_credential_header(str(key)):
                yield from _with_token(item)
            else:
                yield from _walk(item, name)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _walk(item, name)
    elif isinstance(value, str) and name.endswith(_URL_FIELD_SUFFIXES):
        yield from url_secrets(value)


def _with_token(value: str) -> Iterator[str]:
    """A credential, and the token inside it when it is `<scheme> <token>` (Bearer, Basic…)."""
    if value:
        yield value
        scheme, _, token = value.partition(" ")
        if token and scheme.isalpha():
            yield token.strip()


def _is_credential_header(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in _CREDENTIAL_HEADER_PARTS)


def url_secrets(url: str) -> Iterator[str]:
    """The password of a URL and its credential query values, as written and percent-decoded."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return
    if password:
        yield password
        yield unquote(password)
    for pair in parts.query.split("&"):
        key, _, item = pair.partition("=")
        if item and any(part in unquote_plus(key).lower() for part in _CREDENTIAL_QUERY_PARTS):
            yield item
            yield unquote_plus(item)


# --- the process's redactor -------------------------------------------------------------

_active = Redactor()


def install(redactor: Redactor) -> None:
    """Make ``redactor`` the one ``redact`` uses (called once per process at start-up)."""
    global _active
    _active = redactor


def active() -> Redactor:
    return _active


def redact(text: str) -> str:
    """Mask configured secrets, their masked echoes and key-shaped text in ``text``."""
    return _active(text)
