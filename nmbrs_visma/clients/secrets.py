"""Secrets out of every text a client builds: error messages, quoted bodies and URLs.

Why: an API may echo a request's credentials in its error body (a subscription key, a bearer token, the basic
credentials of a token request), and every error text of the clients becomes an exception, a log line, a status
row or an artifact. One `Scrubber` per client knows that client's secrets (the tokens as they rotate) and
redacts them, raw and URL-encoded, before any such text exists.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

import httpx2
from pydantic import SecretStr

REDACTED = "***"
MIN_SECRET_LENGTH = 8  # shorter values are not redacted: they would blank ordinary words, and no key is that short
_CREDENTIAL_HEADERS = ("Authorization", "X-Subscription-Key", "Cookie")

SecretValue = SecretStr | str | None


def _plain(value: SecretValue) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value or ""


class Scrubber:
    """Redacts the secrets of one client from any text it builds (error messages, quoted bodies and URLs).

    Sources are fixed values (`SecretStr` or str), callables read at every use (so a token that rotates is
    redacted in its current value), or another `Scrubber` (a client's scrubber includes its auth's). Each
    secret is redacted as is and URL-encoded (how a form or query would echo it). Why one object per client:
    an API may echo a request's credentials in its error body, and every error text of the clients passes
    through here before it becomes an exception, a log line, a status row or an artifact.
    """

    def __init__(self, *sources: SecretSource) -> None:
        self._sources: list[SecretSource] = list(sources)

    def add(self, *sources: SecretSource) -> None:
        self._sources.extend(sources)

    def secrets(self) -> set[str]:
        """The secret values (at least `MIN_SECRET_LENGTH` long) the sources hold now."""
        found: set[str] = set()
        for source in self._sources:
            if isinstance(source, Scrubber):
                found |= source.secrets()
            elif callable(source):
                found |= {_plain(value) for value in source()}
            else:
                found.add(_plain(source))
        return {value for value in found if len(value) >= MIN_SECRET_LENGTH}

    def __call__(self, text: str, *extra: SecretValue) -> str:
        """`text` with every secret (and every `extra` value) replaced by `***`, longest first."""
        values = self.secrets() | {v for v in map(_plain, extra) if len(v) >= MIN_SECRET_LENGTH}
        return redact(text, values)


SecretSource = SecretValue | Callable[[], Iterable[SecretValue]] | Scrubber


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with each secret, raw or URL-encoded, replaced by `***` (longest first, so no part survives)."""
    forms = {form for secret in secrets if secret for form in (secret, quote(secret, safe=""), quote_plus(secret))}
    for form in sorted(forms, key=len, reverse=True):
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def request_credentials(request: httpx2.Request) -> list[str]:
    """The credentials a request carried (bearer/basic values, subscription key, cookie): redacted from what
    its answer says, whichever token was current when it was sent."""
    values: list[str] = []
    for name in _CREDENTIAL_HEADERS:
        value = request.headers.get(name, "")
        values.append(value)
        values.extend(value.split(" ")[1:])  # "Bearer <token>", "Basic <credentials>"
    return values


def basic_credentials(client_id: str, client_secret: SecretStr) -> tuple[str, ...]:
    """The `client_secret_basic` header values (as authlib encodes them, and URL-quoted as RFC 6749 2.3.1 has
    it): an identity server that echoes the header it got would otherwise show the secret base64-encoded."""
    secret = client_secret.get_secret_value()
    texts = (f"{client_id}:{secret}", f"{quote(client_id, safe='')}:{quote(secret, safe='')}")
    return tuple(base64.b64encode(text.encode("latin-1", "replace")).decode("ascii") for text in texts)


NO_SECRETS = Scrubber()
