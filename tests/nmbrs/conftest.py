"""Fixtures for the Nmbrs tests: a fresh demo world per test, served by uvicorn on a loopback port, and an
authorised client that polls and backs off fast (waits are recorded, not slept, where a test says so).
`periodic_world()` adds a four-weekly and a weekly company to the demo (a module overrides `world` with it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from nmbrs_visma.clients.http import RetryPolicy
from nmbrs_visma.clients.nmbrs import NmbrsAuth, NmbrsClient
from nmbrs_visma.journals.models import PeriodType
from nmbrs_visma.sandbox.demo_data import COMPANIES
from nmbrs_visma.sandbox.nmbrs import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REDIRECT_URI,
    DEMO_SUBSCRIPTION_KEY,
    NmbrsWorld,
    approve_authorization,
    create_app,
)
from nmbrs_visma.sandbox.nmbrs.ledger import DUTCH_STYLE
from nmbrs_visma.sandbox.server import RunningServer, serving

FAST = RetryPolicy(attempts=4, backoff=0.001, max_backoff=0.01, rate_limit_waits=3)
FOUR_WEEKLY, WEEKLY = 3001, 3002  # company numbers of the four-weekly and the weekly company
PERIODIC_YEAR = 2026  # a year with an ISO week 53


def periodic_world() -> NmbrsWorld:
    """The demo world plus a four-weekly company (like 1003: Dutch-style XML, corrections) and a weekly one
    (like 1002: cost centers and units), with runs at the edges of 2026:

    - 3001, 4-weeks: periods 1 (starts Monday 2025-12-29) and 2, locked; 13 (weeks 49..53) correcting 1 and 2,
      not locked;
    - 3002, 1-week: week 1; one run spanning weeks 2..4; week 52; week 53 correcting 51 and 52, not locked.
    """
    world = NmbrsWorld().seed_demo()
    by_number = {company.number: company for company in COMPANIES}
    four = world.add_company_like(by_number[1003], FOUR_WEEKLY, PeriodType.FOUR_WEEKS, style=DUTCH_STYLE)
    for period in (1, 2):
        world.add_run(four, PERIODIC_YEAR, period)
    world.add_run(four, PERIODIC_YEAR, 13, corrections=(1, 2), locked=False)
    week = world.add_company_like(by_number[1002], WEEKLY, PeriodType.WEEK)
    world.add_run(week, PERIODIC_YEAR, 1)
    world.add_run(week, PERIODIC_YEAR, 4, period_start=2)
    world.add_run(week, PERIODIC_YEAR, 52)
    world.add_run(week, PERIODIC_YEAR, 53, corrections=(51, 52), locked=False)
    return world


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
    request = auth.authorization_request()
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
