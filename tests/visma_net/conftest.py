"""One emulator per test module (real HTTP via uvicorn); each test starts from a clean fault/config state."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from nmbrs_visma.clients.http import RetryPolicy
from nmbrs_visma.clients.visma_connect import VismaConnectAuth
from nmbrs_visma.clients.visma_net import VismaNetClient
from nmbrs_visma.sandbox.demo_data import SEGMENTS
from nmbrs_visma.sandbox.server import RunningServer, start_server
from nmbrs_visma.sandbox.visma_net import (
    DEMO_REDIRECT_URI,
    INTERACTIVE_CLIENT_ID,
    INTERACTIVE_CLIENT_SECRET,
    SERVICE_CLIENT_ID,
    SERVICE_CLIENT_SECRET,
    Faults,
    VismaWorld,
    create_app,
)

TENANT = "1000001"
FAST = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05)


@dataclass
class Sandbox:
    world: VismaWorld
    server: RunningServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def token_url(self) -> str:
        return f"{self.url}/connect/token"

    def service_auth(self, tenant_id: str = TENANT, **kwargs: Any) -> VismaConnectAuth:
        return VismaConnectAuth.service(
            client_id=SERVICE_CLIENT_ID,
            client_secret=SecretStr(SERVICE_CLIENT_SECRET),
            tenant_id=tenant_id,
            token_url=self.token_url,
            **kwargs,
        )

    def interactive_auth(self, **kwargs: Any) -> VismaConnectAuth:
        return VismaConnectAuth.interactive(
            client_id=INTERACTIVE_CLIENT_ID,
            client_secret=SecretStr(INTERACTIVE_CLIENT_SECRET),
            redirect_uri=DEMO_REDIRECT_URI,
            token_url=self.token_url,
            authorize_url=f"{self.url}/connect/authorize",
            **kwargs,
        )

    def client(self, auth: VismaConnectAuth | None = None, **kwargs: Any) -> VismaNetClient:
        kwargs.setdefault("policy", FAST)
        return VismaNetClient(base_url=self.url, auth=auth or self.service_auth(), **kwargs)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    world = VismaWorld().seed_demo()
    server = start_server(create_app(world))
    try:
        yield Sandbox(world, server)
    finally:
        server.stop()


_SETTINGS = (
    "access_token_lifetime",
    "refresh_token_lifetime",
    "refresh_grace_period",
    "rate_limit_per_window",
    "rate_window_seconds",
    "max_page_size",
    "require_complete_subaccounts",
)


@pytest.fixture(autouse=True)
def clean_world(request: pytest.FixtureRequest) -> Iterator[None]:
    if "sandbox" not in request.fixturenames:
        yield
        return
    world: VismaWorld = request.getfixturevalue("sandbox").world
    saved = {name: getattr(world, name) for name in _SETTINGS}
    world.faults = Faults()
    world.budgets.clear()
    yield
    world.faults = Faults()
    world.budgets.clear()
    for name, value in saved.items():
        setattr(world, name, value)
    for client in world.clients.values():
        client.rotate_refresh_tokens = True


Segments = list[tuple[int, str]]

# The zero value of each segment of the demo tenants' SUBACCOUNT dimension: {1: "0000", 2: "000"}.
ZERO_SEGMENTS: dict[int, str] = {segment_id: "0" * length for segment_id, _, length, _ in SEGMENTS}


def subaccount(*given: tuple[int, str]) -> Segments:
    """A complete subaccount: the `given` (segmentId, value) pairs, in their order, then every segment of the
    demo dimension they leave out at its zero value. The emulator refuses a create whose line leaves out a
    segment (`require_complete_subaccounts`, on by default); a payload meant to be valid is built with this."""
    named = {segment_id for segment_id, _ in given}
    return [*given, *((segment_id, zero) for segment_id, zero in ZERO_SEGMENTS.items() if segment_id not in named)]


def journal(
    period: str = "202603",
    *,
    lines: list[tuple[str, str, str, Segments]] | None = None,
    description: str = "Payroll March [nv:test]",
    hold: bool | None = None,
    branch: str = "1",
) -> dict[str, Any]:
    """A JournalTransactionUpdateDto; lines are (account, debit, credit, [(segmentId, value)]). The default
    lines give every segment; given lines are sent as they are (a segment left out stays out: build them with
    `subaccount` unless the test is about an incomplete subaccount)."""
    lines = lines or [
        ("4000", "1234567.89", "0", [(1, "0100"), (2, "001")]),
        ("1700", "0", "1000000.00", subaccount()),
        ("1600", "0", "234567.89", subaccount()),
    ]
    body: dict[str, Any] = {
        "transactionDate": {"value": f"{period[:4]}-{period[4:]}-28T00:00:00"},
        "financialPeriod": {"value": period},
        "ledger": {"value": "L"},
        "branch": {"value": branch},
        "description": {"value": description},
        "journalTransactionLines": [
            {
                "operation": "Insert",
                "accountNumber": {"value": account},
                "subaccount": [{"segmentId": sid, "segmentValue": value} for sid, value in segments],
                "referenceNumber": {"value": "NM2603R1"},
                "transactionDescription": {"value": f"line {n}"},
                "debitAmountInCurrency": {"value": _Raw(debit)},
                "creditAmountInCurrency": {"value": _Raw(credit)},
            }
            for n, (account, debit, credit, segments) in enumerate(lines, start=1)
        ],
    }
    if hold is not None:
        body["hold"] = {"value": hold}
    return body


class _Raw(str):
    """An amount written into JSON as an exact number literal."""


def dumps(body: dict[str, Any]) -> bytes:
    """JSON with `_Raw` amounts as number literals (the real payload builder writes exact decimals too)."""

    def encode(value: Any) -> str:
        if isinstance(value, _Raw):
            return str(value)
        if isinstance(value, dict):
            return "{" + ",".join(f"{json.dumps(k)}:{encode(v)}" for k, v in value.items()) + "}"
        if isinstance(value, list):
            return "[" + ",".join(encode(v) for v in value) + "]"
        return json.dumps(value)

    return encode(body).encode()


Factory = Callable[..., dict[str, Any]]
