"""Fixtures for the Nmbrs tests: a fresh demo world per test, served by uvicorn on a loopback port, and an
authorised client that polls and backs off fast (waits are recorded, not slept, where a test says so)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from nmbrs_visma.clients.http import RetryPolicy
from nmbrs_visma.clients.nmbrs import NmbrsAuth, NmbrsClient
from nmbrs_visma.sandbox.nmbrs import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REDIRECT_URI,
    DEMO_SUBSCRIPTION_KEY,
    NmbrsWorld,
    approve_authorization,
    create_app,
)
from nmbrs_visma.sandbox.server import RunningServer, serving

FAST = RetryPolicy(attempts=4, backoff=0.001, max_backoff=0.01, rate_limit_waits=3)


@pytest.fixture
def world() -> NmbrsWorld:
    return NmbrsWorld().seed_demo()


@pytest.fixture
def server(world: NmbrsWorld) -> Iterator[RunningServer]:
    with serving(create_app(world)) as running:
        yield running


class TokenLog(list):
    """Every token pair handed to `on_token`, in order."""

    def __call__(self, token: dict[str, Any]) -> None:
        self.append(token)


def make_auth(server: RunningServer, on_token: TokenLog | None = None, **kwargs: Any) -> NmbrsAuth:
    return NmbrsAuth(
        client_id=DEMO_CLIENT_ID,
        client_secret=SecretStr(DEMO_CLIENT_SECRET),
        redirect_uri=DEMO_REDIRECT_URI,
        authorize_url=f"{server.url}/connect/authorize",
        token_url=f"{server.url}/connect/token",
        on_token=on_token,
        **kwargs,
    )


def connect(auth: NmbrsAuth) -> None:
    """The whole connect step: authorise (the emulator approves at once) and exchange the code."""
    request = auth.begin_authorization()
    auth.complete_authorization(approve_authorization(request.url), request)


@pytest.fixture
def tokens() -> TokenLog:
    return TokenLog()


@pytest.fixture
def auth(server: RunningServer, tokens: TokenLog) -> Iterator[NmbrsAuth]:
    auth = make_auth(server, tokens)
    connect(auth)
    yield auth
    auth.close()


class Sleeps(list):
    """Records waits instead of sleeping them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_client(server: RunningServer, auth: NmbrsAuth, **kwargs: Any) -> NmbrsClient:
    options: dict[str, Any] = {
        "subscription_key": SecretStr(DEMO_SUBSCRIPTION_KEY),
        "policy": FAST,
        "poll_interval": 0.001,
        "max_poll_interval": 0.005,
    }
    options.update(kwargs)
    return NmbrsClient(base_url=server.url, auth=auth, **options)


@pytest.fixture
def client(server: RunningServer, auth: NmbrsAuth) -> Iterator[NmbrsClient]:
    with make_client(server, auth) as client:
        yield client
