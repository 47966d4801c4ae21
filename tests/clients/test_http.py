"""Unit tests of the shared sender (one client at a time, so httpx2.MockTransport is fine here)."""

from __future__ import annotations

import httpx2
import pytest

from nmbrs_visma.clients.errors import AuthError, RateLimited, ServerError, TransportError, ValidationError
from nmbrs_visma.clients.http import (
    NMBRS_ERRORS,
    VISMA_NET_ERRORS,
    RetryPolicy,
    Sender,
    read_rate_limit,
    retry_after_seconds,
)
from tests.support import mock_sender


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _sender(handler, clock: FakeClock, style=VISMA_NET_ERRORS, **policy) -> Sender:
    """A sender on `handler` whose waits pass on `clock` (nothing is slept), with a `RetryPolicy(**policy)`."""
    return mock_sender(handler, style, policy=RetryPolicy(**policy), sleep=clock.sleep, clock=clock)


def test_429_waits_retry_after_before_the_next_request() -> None:
    clock = FakeClock()
    sent_at: list[float] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent_at.append(clock.now)
        if len(sent_at) == 1:
            return httpx2.Response(429, headers={"Retry-After": "7"}, json={"Message": "slow down"})
        return httpx2.Response(200, json=[], headers={"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "98"})

    sender = _sender(handler, clock)
    assert sender.request("POST", "/v2/journaltransaction", json={}).status_code == 200
    assert sent_at[1] - sent_at[0] >= 7
    assert sender.rate_limit is not None and sender.rate_limit.remaining == 98


def test_long_retry_after_is_raised_not_slept() -> None:
    clock = FakeClock()
    sender = _sender(lambda r: httpx2.Response(429, headers={"Retry-After": "3600"}), clock, max_retry_after=60)
    with pytest.raises(RateLimited) as info:
        sender.request("GET", "/v1/account")
    assert info.value.retry_after == 3600
    assert clock.sleeps == []


def test_safe_call_retries_5xx_with_capped_backoff() -> None:
    clock = FakeClock()
    calls = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(1)
        return httpx2.Response(503 if len(calls) < 3 else 200, json={})

    sender = _sender(handler, clock, attempts=4, backoff=1.0, max_backoff=1.5)
    assert sender.request("GET", "/v1/account").status_code == 200
    assert len(calls) == 3
    assert all(s <= 1.5 for s in clock.sleeps)


def test_create_is_not_retried_on_5xx_or_read_timeout() -> None:
    clock = FakeClock()
    calls = []

    def fail(request: httpx2.Request) -> httpx2.Response:
        calls.append(1)
        return httpx2.Response(502, json={"Message": "bad gateway"})

    with pytest.raises(ServerError):
        _sender(fail, clock).request("POST", "/v2/journaltransaction", json={})
    assert len(calls) == 1

    def timeout(request: httpx2.Request) -> httpx2.Response:
        calls.append(1)
        raise httpx2.ReadTimeout("timed out", request=request)

    with pytest.raises(TransportError) as info:
        _sender(timeout, clock).request("POST", "/v2/journaltransaction", json={})
    assert len(calls) == 2
    assert "outcome is unknown" in str(info.value)


def test_create_is_retried_when_the_connection_was_never_made() -> None:
    clock = FakeClock()
    calls = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx2.ConnectError("refused", request=request)
        return httpx2.Response(201)

    assert _sender(handler, clock).request("POST", "/x").status_code == 201
    assert len(calls) == 2


def test_visma_error_body_and_request_id_and_no_token() -> None:
    token = "eyJsecret-access-token-value"

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            400,
            headers={"Ipp-Request-Id": "req-42"},
            json={
                "ExceptionType": "IPPException",
                "ExceptionMessage": f"Account 9999 not found (token {token})",
                "ExceptionFaultCode": "12345",
            },
        )

    with pytest.raises(ValidationError) as info:
        _sender(handler, FakeClock()).request("GET", "/v1/account", headers={"Authorization": f"Bearer {token}"})
    error = info.value
    assert (error.status, error.code, error.request_id) == (400, "12345", "req-42")
    assert "Account 9999 not found" in str(error)
    assert token not in str(error) and token not in repr(error)


def test_visma_message_shape_and_nmbrs_problem_shape() -> None:
    def visma(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(401, json={"Message": "Authorization has been denied for this request."})

    with pytest.raises(AuthError, match="denied"):
        _sender(visma, FakeClock()).request("GET", "/v1/account")

    def nmbrs(request: httpx2.Request) -> httpx2.Response:
        body = {"type": "x", "httpStatus": 422, "code": "E042", "title": "Invalid", "detail": "year must be > 2000"}
        return httpx2.Response(422, json=body)

    with pytest.raises(ValidationError) as info:
        _sender(nmbrs, FakeClock(), style=NMBRS_ERRORS).request("GET", "/api/x")
    assert info.value.code == "E042" and "year must be > 2000" in info.value.message


def test_header_parsing() -> None:
    rate = read_rate_limit({"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "12"})
    assert rate is not None and (rate.limit, rate.remaining, rate.reset) == (5000, 0, 12.0)
    assert read_rate_limit({}) is None
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 10) == 10.0


def test_exhausted_budget_throttles_the_next_request() -> None:
    clock = FakeClock()
    sent_at: list[float] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent_at.append(clock.now)
        return httpx2.Response(200, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "5"})

    sender = _sender(handler, clock)
    sender.request("GET", "/a")
    sender.request("GET", "/b")
    assert sent_at[1] - sent_at[0] >= 5


def test_at_once_runs_calls_together_in_order_and_reuses_its_threads() -> None:
    """Independent reads overlap (at most `most` at once), results keep the calls' order, an error surfaces
    after the others ended, and a second fan-out starts no new threads."""
    import threading
    import time

    from nmbrs_visma.fan_out import at_once

    running = 0
    most_running = 0
    guard = threading.Lock()
    ended: list[int] = []

    def read(number: int, fail: bool = False) -> int:
        nonlocal running, most_running
        with guard:
            running += 1
            most_running = max(most_running, running)
        time.sleep(0.05)
        with guard:
            running -= 1
            ended.append(number)
        if fail:
            raise ValueError(f"read {number} failed")
        return number * 10

    assert at_once([lambda n=n: read(n) for n in range(6)], most=3) == [0, 10, 20, 30, 40, 50]
    assert most_running == 3
    threads = {thread.name for thread in threading.enumerate()}
    with pytest.raises(ValueError, match="read 1 failed"):
        at_once([lambda: read(0), lambda: read(1, fail=True), lambda: read(2)])
    assert sorted(ended[-3:]) == [0, 1, 2]
    assert {thread.name for thread in threading.enumerate()} == threads
