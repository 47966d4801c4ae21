"""Shared httpx2 plumbing for the API clients: rate limits, retries of safe calls, errors as the shared tree.

Why: both Visma.net and Nmbrs throttle (429 + `Retry-After`), fail transiently (5xx, dropped connections)
and answer errors in their own JSON shape. One small sender handles that the same way for both, and makes
sure a create is never blindly re-sent (a lost response after a commit must be found by the caller's
look-up key, not by sending the transaction again).

How to use it::

    from nmbrs_visma.clients.http import NMBRS_ERRORS, RetryPolicy, Sender

    sender = Sender(httpx2.Client(base_url=..., auth=...), NMBRS_ERRORS)  # or VISMA_NET_ERRORS
    response = sender.request("GET", "/api/debtors")           # GET/HEAD/OPTIONS: retried on 5xx/transport
    response = sender.request("POST", "/api/x", json=body)      # unsafe: never re-sent after it may have arrived
    response = sender.request("PUT", "/api/y", json=b, idempotent=True)  # caller vouches it is safe to repeat
    sender.rate_limit                                            # last X-RateLimit-* seen (or None)

Every non-2xx answer raises the `ApiError` subclass of its status (clients/errors.py draws the tree); a network
failure raises `TransportError`. Their text names the API, method, path, status, the API's fault code and
message and the request id, and never a secret: the client's `Scrubber` (clients/secrets.py) redacts its
secrets from every error text, and the failed request's own credential headers too, even when the server's
body echoes them. Tests inject `sleep` (and `clock`) so that waits are recorded instead of slept.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import os
import random
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import httpx2

from nmbrs_visma.clients.errors import ApiError, RateLimited, TransportError, error_class
from nmbrs_visma.clients.secrets import NO_SECRETS, Scrubber, request_credentials

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_MESSAGE = 500


# --- error bodies, one parser per API ------------------------------------------------------------------------

ErrorBodyParser = Callable[[httpx2.Response], tuple[str | None, str]]
"""(response) -> (fault code or None, human message)."""


def _json_object(response: httpx2.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _fallback_message(response: httpx2.Response) -> str:
    text = response.text.strip()  # whole: cut only after the secrets are out, or a cut one would leak its head
    return text if text else (response.reason_phrase or "error")


def visma_net_error_body(response: httpx2.Response) -> tuple[str | None, str]:
    """Visma.net: `{"ExceptionType","ExceptionMessage","ExceptionFaultCode",...}` or `{"Message"}`."""
    body = _json_object(response)
    if body is None:
        return None, _fallback_message(response)
    code = body.get("ExceptionFaultCode") or body.get("ExceptionType")
    message = body.get("ExceptionMessage") or body.get("Message") or body.get("message")
    if message is None:
        return (str(code) if code else None), _fallback_message(response)
    return (str(code) if code else None), str(message)


def nmbrs_error_body(response: httpx2.Response) -> tuple[str | None, str]:
    """Nmbrs: problem details `{type, httpStatus, code, title, detail}` (sometimes only some of them)."""
    body = _json_object(response)
    if body is None:
        return None, _fallback_message(response)
    code = body.get("code")
    parts = [str(body[key]) for key in ("title", "detail") if body.get(key)]
    message = ": ".join(parts) if parts else str(body.get("message") or _fallback_message(response))
    invalid = body.get("invalid-params")
    if isinstance(invalid, list) and invalid:
        named = [f"{p.get('name')}: {p.get('reason')}" if isinstance(p, dict) else str(p) for p in invalid]
        message += f" ({'; '.join(named)})"
    return (str(code) if code not in (None, "") else None), message


@dataclass(frozen=True)
class ErrorStyle:
    """How one API names itself, shapes its errors and tags its requests."""

    api: str
    parse_body: ErrorBodyParser
    request_id_header: str | None = None


VISMA_NET_ERRORS = ErrorStyle("Visma.net", visma_net_error_body, "Ipp-Request-Id")
NMBRS_ERRORS = ErrorStyle("Nmbrs", nmbrs_error_body, None)


# --- rate limits and retries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    """The `X-RateLimit-*` headers of the last answer (`reset`: seconds until the window resets, if given)."""

    limit: int | None
    remaining: int | None
    reset: float | None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip())  # float ok
    except ValueError:
        return None


def read_rate_limit(headers: Mapping[str, str], now: float | None = None) -> RateLimit | None:
    """Parse `X-RateLimit-Limit/Remaining/Reset`; a Reset that looks like a Unix time becomes seconds from now."""
    limit, remaining, reset = (_number(headers.get(f"X-RateLimit-{name}")) for name in ("Limit", "Remaining", "Reset"))
    if limit is None and remaining is None and reset is None:
        return None
    if reset is not None and reset > 1_000_000_000:
        reset = max(0.0, reset - (time.time() if now is None else now))
    return RateLimit(
        limit=int(limit) if limit is not None else None,
        remaining=int(remaining) if remaining is not None else None,
        reset=reset,
    )


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds (delta-seconds or an HTTP date)."""
    if not value:
        return None
    seconds = _number(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts for safe calls on 5xx/transport errors, capped exponential backoff with full jitter, 429 waits."""

    attempts: int = 4  # total tries of a safe call (1 = no retry)
    backoff: float = 0.5  # first backoff ceiling, seconds
    max_backoff: float = 30.0
    rate_limit_waits: int = 5  # 429s waited out per call before giving up
    max_retry_after: float = 300.0  # a longer Retry-After is raised as RateLimited, not slept
    throttle_when_exhausted: bool = True  # Remaining == 0: wait for Reset before the next request

    def delay(self, retry: int) -> float:
        """Full jitter: uniform(0, min(cap, backoff * 2**retry))."""
        return random.uniform(0.0, min(self.max_backoff, self.backoff * (2**retry)))


class Sender:
    """Sends requests on an `httpx2.Client` with the retry, rate-limit and error rules above. Thread-safe enough
    for the bounded thread pool of the Prefect layer (state is only the last rate-limit headers)."""

    def __init__(
        self,
        client: httpx2.Client,
        style: ErrorStyle,
        *,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        scrubber: Scrubber | None = None,
    ) -> None:
        self.client = client
        self.style = style
        self.scrubber = scrubber or NO_SECRETS
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self.rate_limit: RateLimit | None = None
        self._not_before: float = 0.0  # clock() time before which no request may be sent

    def request(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool | None = None,
        stream: bool = False,
        **kwargs: Any,
    ) -> httpx2.Response:
        """Send, wait out 429s, retry safe calls; return a 2xx/3xx response or raise an `ApiError`.

        With `stream=True` a 2xx/3xx answer comes back unread (`iter_bytes()`, then `close()` it, e.g. with
        `contextlib.closing`); an error answer is read (its body becomes the error text) and closed here."""
        method = method.upper()
        safe = method in SAFE_METHODS if idempotent is None else idempotent
        failures = 0
        waits = 0
        while True:
            self._wait_turn()
            try:
                if stream:
                    response = self.client.send(self.client.build_request(method, url, **kwargs), stream=True)
                    if response.status_code >= 400:
                        _settle(response)
                else:
                    response = self.client.request(method, url, **kwargs)
            except httpx2.TransportError as exc:
                # A connect failure never reached the server, so even a create may be tried again.
                never_sent = isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout | httpx2.PoolTimeout)
                failures += 1
                if (safe or never_sent) and failures < self.policy.attempts:
                    self._backoff(failures - 1, method, url, type(exc).__name__)
                    continue
                raise TransportError(
                    None,
                    type(exc).__name__,
                    _transport_message(exc, sent=not never_sent, safe=safe),
                    api=self.style.api,
                    method=method,
                    path=self.scrubber(_path(url)),
                    outcome_unknown=not never_sent,
                ) from None
            self._note_rate_limit(response)
            if response.status_code == 429:
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                waits += 1
                wait = retry_after if retry_after is not None else self.policy.delay(waits)
                if waits > self.policy.rate_limit_waits or wait > self.policy.max_retry_after:
                    raise self._error(response, retry_after=retry_after)
                logger.info("%s %s %s: rate limited, waiting %.1fs", self.style.api, method, _path(url), wait)
                self._not_before = max(self._not_before, self._clock() + wait)
                continue
            if response.status_code >= 500 and safe:
                failures += 1
                if failures < self.policy.attempts:
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                    self._backoff(failures - 1, method, url, f"HTTP {response.status_code}", retry_after)
                    continue
            if response.status_code >= 400:
                raise self._error(response)
            return response

    # -- internals --

    def _wait_turn(self) -> None:
        delay = self._not_before - self._clock()
        if delay > 0:
            self._sleep(delay)

    def _backoff(self, retry: int, method: str, url: str, why: str, at_least: float | None = None) -> None:
        delay = max(self.policy.delay(retry), at_least or 0.0)
        logger.info("%s %s %s: %s, retrying in %.2fs", self.style.api, method, _path(url), why, delay)
        self._not_before = max(self._not_before, self._clock() + delay)

    def _note_rate_limit(self, response: httpx2.Response) -> None:
        rate = read_rate_limit(response.headers)
        if rate is None:
            return
        self.rate_limit = rate
        exhausted = rate.remaining == 0 and rate.reset is not None and rate.reset <= self.policy.max_retry_after
        if self.policy.throttle_when_exhausted and exhausted:
            self._not_before = max(self._not_before, self._clock() + (rate.reset or 0.0))

    def _error(self, response: httpx2.Response, **extra: Any) -> ApiError:
        code, message = self.style.parse_body(response)
        sent = request_credentials(response.request)
        message = self.scrubber(message, *sent)[:_MAX_MESSAGE]
        code = self.scrubber(code, *sent) if code else code
        request_id = response.headers.get(self.style.request_id_header) if self.style.request_id_header else None
        cls = error_class(response.status_code)
        kwargs: dict[str, Any] = {
            "api": self.style.api,
            "method": response.request.method,
            "path": self.scrubber(response.request.url.path, *sent),
        }
        if cls is RateLimited:
            kwargs["retry_after"] = extra.get("retry_after")
        error = cls(response.status_code, code, message, request_id, **kwargs)
        logger.debug("%s", error)
        return error


def _settle(response: httpx2.Response) -> None:
    """Read a streamed error answer (its body is the error text) and give its connection back."""
    try:
        response.read()
    finally:
        response.close()


def _path(url: str) -> str:
    return httpx2.URL(url).path or url


def _transport_message(exc: Exception, *, sent: bool, safe: bool) -> str:
    kind = type(exc).__name__
    if sent and not safe:
        return f"{kind}: the request may have reached the server; its outcome is unknown (not re-sent)"
    return f"{kind}: no answer from the server"


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The one verifying TLS context of the process (httpx2's default: system CAs, `SSL_CERT_FILE`/`_DIR`).

    Why shared: building a context loads the whole CA store, and every client and auth would otherwise build its
    own, once per account per run (docs/reliability.md has what that cost).
    """
    return httpx2.create_ssl_context()


POOL_LIMITS = httpx2.Limits(max_connections=None, max_keepalive_connections=100)


class _PoolView(httpx2.BaseTransport):
    """The process's connection pool as one client sees it: closing the client leaves the pool to the others."""

    def __init__(self, pool: httpx2.HTTPTransport) -> None:
        self._pool = pool

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        return self._pool.handle_request(request)

    def close(self) -> None:
        pass


_pool: tuple[int, httpx2.HTTPTransport] | None = None
_pool_lock = threading.Lock()


def shared_transport() -> httpx2.BaseTransport | None:
    """The transport of every API client and auth of the process: one pool of kept-alive connections per
    origin, so a run over a thousand accounts of one Visma.net reuses a few connections (and their TLS
    handshakes) instead of opening its own for each account, and each account's token request too.

    None when the environment names a proxy: then each client keeps its own pool and httpx2's own proxy rules
    (`HTTPS_PROXY`, `NO_PROXY`, ...), which a shared transport would bypass. A forked child makes its own pool
    (sockets are not shared across processes)."""
    global _pool
    if urllib.request.getproxies():
        return None
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), httpx2.HTTPTransport(verify=tls_context(), limits=POOL_LIMITS))
        return _PoolView(_pool[1])


class ApiClient:
    """What every API client here shares: an httpx2 client on the shared TLS context and connection pool
    (`shared_transport`) with its auth, the `Sender` with the API's error style and a `Scrubber` of the
    client's secrets, closing, and the last rate limits.

    Subclasses set `default_base_url` and `style`, and hand their own settings' rest (`base_url`, `timeout`,
    `policy`, `sleep`, `clock`, `transport`, `event_hooks`) through to here."""

    default_base_url: ClassVar[str] = ""
    style: ClassVar[ErrorStyle]

    def __init__(
        self,
        *,
        auth: httpx2.Auth,
        scrubber: Scrubber,
        base_url: str | None = None,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx2.BaseTransport | None = None,
        event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None,
    ) -> None:
        self._sleep = sleep
        self._clock = clock
        self.scrubber = scrubber
        self._http = httpx2.Client(
            base_url=(base_url or self.default_base_url).rstrip("/"),
            auth=auth,
            timeout=timeout,
            headers=dict(headers or {}),
            transport=transport if transport is not None else shared_transport(),
            verify=tls_context(),
            follow_redirects=False,
            event_hooks=dict(event_hooks or {}),
        )
        self._sender = Sender(self._http, self.style, policy=policy, sleep=sleep, clock=clock, scrubber=scrubber)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def rate_limit(self) -> RateLimit | None:
        """The last `X-RateLimit-*` headers seen."""
        return self._sender.rate_limit
