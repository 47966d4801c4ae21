"""Helpers shared by the test folders (a helper module, not a test file; imported as `tests.support`).

Plain functions and classes only: the emulators' demo credentials made into auths and clients, the demo
payloads, and small test tools. The fixtures that hand them out stay thin and live in tests/conftest.py, so no
folder imports another folder's conftest and no helper is written twice.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx2
from pydantic import SecretStr

from nmbrs_visma.clients.http import VISMA_NET_ERRORS, ErrorStyle, RetryPolicy, Sender
from nmbrs_visma.clients.nmbrs import NmbrsAuth, NmbrsClient, NmbrsCompany
from nmbrs_visma.clients.visma_connect import VismaConnectAuth
from nmbrs_visma.clients.visma_net import VismaNetClient
from nmbrs_visma.journals.models import PeriodType
from nmbrs_visma.sandbox import nmbrs as nmbrs_sandbox
from nmbrs_visma.sandbox import visma_net as visma_sandbox
from nmbrs_visma.sandbox.demo_data import COMPANIES, DEMO_PERIOD, DEMO_YEAR, SEGMENTS, DemoCompany
from nmbrs_visma.sandbox.nmbrs.ledger import DUTCH_STYLE
from nmbrs_visma.sandbox.server import RunningServer, start_server

if TYPE_CHECKING:
    import pandas as pd

    from nmbrs_visma.results import StatusRow

T = TypeVar("T")

PERIOD = f"{DEMO_YEAR}-{DEMO_PERIOD:02d}"  # the demo month, as the flows take it


def demo_company(number: int) -> DemoCompany:
    """The demo company numbered `number` (demo_data.COMPANIES)."""
    return next(company for company in COMPANIES if company.number == number)


def post(**kwargs: Any) -> list[StatusRow]:
    """Run `post-payroll-journals` in this process (for the demo month unless `period` is given); its rows."""
    from nmbrs_visma.flows.post_payroll_journals import pass_rows, post_payroll_journals

    kwargs.setdefault("period", PERIOD)
    return pass_rows(post_payroll_journals(**kwargs, return_state=True))


def dispose_engine(url: str) -> None:
    """Drop the posting ledger's cached engine for `url` (its pool would keep connections to a dropped database)."""
    from nmbrs_visma import posting_ledger

    engine = posting_ledger._engines.pop(url, None)
    if engine is not None:
        engine.dispose()


def at_once(calls: Iterable[Callable[[], T]], *, timeout: float = 60.0) -> list[T]:
    """Every call in a thread of its own, all started before any is joined; their results in the order they
    finished. The first error of a call is raised here, once every thread ended (or `timeout` passed for it);
    a call still running then fails the test."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run(call: Callable[[], T]) -> None:
        try:
            results.append(call())
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,), name=f"at-once-{n}") for n, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    if errors:
        raise errors[0]
    running = [thread.name for thread in threads if thread.is_alive()]
    assert not running, f"still running after {timeout} s: {running}"
    return results


def mock_sender(
    handler: Callable[[httpx2.Request], httpx2.Response],
    style: ErrorStyle = VISMA_NET_ERRORS,
    *,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = lambda seconds: None,
    clock: Callable[[], float] = time.monotonic,
) -> Sender:
    """A `Sender` whose server is `handler` (an `httpx2.MockTransport`), for unit tests of one sender; waits are
    handed to `sleep` (by default not slept)."""
    client = httpx2.Client(base_url="https://api.example", transport=httpx2.MockTransport(handler))
    return Sender(client, style, policy=policy, sleep=sleep, clock=clock)


# -- Nmbrs: the emulator's demo client, authorised at once --------------------------------------------------

NMBRS_FAST = RetryPolicy(attempts=4, backoff=0.001, max_backoff=0.01, rate_limit_waits=3)  # retries in ms
FOUR_WEEKLY, WEEKLY = 3001, 3002  # company numbers of the four-weekly and the weekly company of `periodic_world`
PERIODIC_YEAR = 2026  # a year with an ISO week 53


def periodic_world() -> nmbrs_sandbox.NmbrsWorld:
    """The demo world plus a four-weekly company (like 1003: Dutch-style XML, corrections) and a weekly one
    (like 1002: cost centers and units), with runs at the edges of 2026:

    - 3001, 4-weeks: periods 1 (starts Monday 2025-12-29) and 2, locked; 13 (weeks 49..53) correcting 1 and 2,
      not locked;
    - 3002, 1-week: week 1; one run spanning weeks 2..4; week 52; week 53 correcting 51 and 52, not locked.
    """
    world = nmbrs_sandbox.NmbrsWorld().seed_demo()
    four = world.add_company_like(demo_company(1003), FOUR_WEEKLY, PeriodType.FOUR_WEEKS, style=DUTCH_STYLE)
    for period in (1, 2):
        world.add_run(four, PERIODIC_YEAR, period)
    world.add_run(four, PERIODIC_YEAR, 13, corrections=(1, 2), locked=False)
    week = world.add_company_like(demo_company(1002), WEEKLY, PeriodType.WEEK)
    world.add_run(week, PERIODIC_YEAR, 1)
    world.add_run(week, PERIODIC_YEAR, 4, period_start=2)
    world.add_run(week, PERIODIC_YEAR, 52)
    world.add_run(week, PERIODIC_YEAR, 53, corrections=(51, 52), locked=False)
    return world


class TokenLog(list):
    """Every token pair handed to `on_token`, in order."""

    def __call__(self, token: dict[str, Any]) -> None:
        self.append(token)


class Sleeps(list):
    """Records waits instead of sleeping them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_auth(server: RunningServer, on_token: TokenLog | None = None, **kwargs: Any) -> NmbrsAuth:
    """The emulator's registered demo client, not yet authorised (see `connect`)."""
    return NmbrsAuth(
        client_id=nmbrs_sandbox.DEMO_CLIENT_ID,
        client_secret=SecretStr(nmbrs_sandbox.DEMO_CLIENT_SECRET),
        redirect_uri=nmbrs_sandbox.DEMO_REDIRECT_URI,
        authorize_url=f"{server.url}/connect/authorize",
        token_url=f"{server.url}/connect/token",
        on_token=on_token,
        **kwargs,
    )


def connect(auth: NmbrsAuth) -> None:
    """The whole connect step: authorise (the emulator approves at once) and exchange the code."""
    request = auth.authorization_request()
    auth.complete_authorization(nmbrs_sandbox.approve_authorization(request.url), request)


def make_client(server: RunningServer, auth: NmbrsAuth, **kwargs: Any) -> NmbrsClient:
    """A client of the emulator with the demo subscription key that retries and polls in milliseconds."""
    options: dict[str, Any] = {
        "subscription_key": SecretStr(nmbrs_sandbox.DEMO_SUBSCRIPTION_KEY),
        "policy": NMBRS_FAST,
        "poll_interval": 0.001,
        "max_poll_interval": 0.005,
    }
    options.update(kwargs)
    return NmbrsClient(base_url=server.url, auth=auth, **options)


def nmbrs_company(number: int, world: nmbrs_sandbox.NmbrsWorld | None = None) -> NmbrsCompany:
    """Company `number` as the client lists it: of `world` (a company added to it), else of the demo."""
    found = world.company_by_number(number) if world is not None else demo_company(number)
    return NmbrsCompany(company_id=found.company_id, number=found.number, name=found.name)


def frame_totals(frame: pd.DataFrame) -> dict[tuple[str, str, str, str, str], int]:
    """A parsed journal's cents per (period, account, cost center, cost unit, side): the shape of the
    emulator's `expected_lines`, so a parse is compared with what the emulator generated."""
    totals: dict[tuple[str, str, str, str, str], int] = defaultdict(int)
    for row in frame.itertuples(index=False):
        key = (row.period_id, row.account, row.cost_center, row.cost_unit)
        if row.debit_cents:
            totals[(*key, "debit")] += int(row.debit_cents)
        if row.credit_cents:
            totals[(*key, "credit")] += int(row.credit_cents)
    return dict(totals)


# -- Visma.net: one demo emulator, its service and interactive clients, journal payloads -----------------------

TENANT = "1000001"
VISMA_FAST = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05)

# The world's settings a test may change; `Sandbox.clean` puts them back.
_SETTINGS = (
    "access_token_lifetime",
    "refresh_token_lifetime",
    "refresh_grace_period",
    "rate_limit_per_window",
    "rate_window_seconds",
    "max_page_size",
    "require_complete_subaccounts",
)


def service_auth(
    url: str,
    tenant_id: str = TENANT,
    *,
    client_id: str = visma_sandbox.SERVICE_CLIENT_ID,
    client_secret: str = visma_sandbox.SERVICE_CLIENT_SECRET,
    **kwargs: Any,
) -> VismaConnectAuth:
    """The service flow (`client_credentials` + tenant) against the Visma.net emulator at `url`; by default
    its demo service client."""
    return VismaConnectAuth.service(
        client_id=client_id,
        client_secret=SecretStr(client_secret),
        tenant_id=tenant_id,
        token_url=f"{url}/connect/token",
        **kwargs,
    )


@dataclass
class Sandbox:
    """A Visma.net emulator with the demo world, served over real HTTP, and the clients a test needs of it."""

    world: visma_sandbox.VismaWorld
    server: RunningServer

    @classmethod
    @contextlib.contextmanager
    def running(cls) -> Iterator[Sandbox]:
        """A fresh demo world on a free loopback port, until the block ends."""
        world = visma_sandbox.VismaWorld().seed_demo()
        server = start_server(visma_sandbox.create_app(world))
        try:
            yield cls(world, server)
        finally:
            server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def token_url(self) -> str:
        return f"{self.url}/connect/token"

    def service_auth(self, tenant_id: str = TENANT, **kwargs: Any) -> VismaConnectAuth:
        return service_auth(self.url, tenant_id, **kwargs)

    def interactive_auth(self, **kwargs: Any) -> VismaConnectAuth:
        return VismaConnectAuth.interactive(
            client_id=visma_sandbox.INTERACTIVE_CLIENT_ID,
            client_secret=SecretStr(visma_sandbox.INTERACTIVE_CLIENT_SECRET),
            redirect_uri=visma_sandbox.DEMO_REDIRECT_URI,
            token_url=self.token_url,
            authorize_url=f"{self.url}/connect/authorize",
            **kwargs,
        )

    def client(self, auth: VismaConnectAuth | None = None, **kwargs: Any) -> VismaNetClient:
        kwargs.setdefault("policy", VISMA_FAST)
        return VismaNetClient(base_url=self.url, auth=auth or self.service_auth(), **kwargs)

    def request(
        self, method: str, target: str, *, auth: VismaConnectAuth | None = None, **kwargs: Any
    ) -> httpx2.Response:
        """One request as raw HTTP, no client in between, so a test sees what the emulator itself answers: `target`
        is a path below `url` (or a whole URL), sent with a bearer token of `auth` (by default the demo service
        client's); a `content` body is sent as JSON. Other keywords go to `httpx2.request`."""
        token = (auth or self.service_auth()).access_token().get_secret_value()
        headers = {"Authorization": f"Bearer {token}"}
        if "content" in kwargs:
            headers["Content-Type"] = "application/json"
        headers.update(kwargs.pop("headers", {}))
        url = target if "://" in target else f"{self.url}{target}"
        return httpx2.request(method, url, headers=headers, **kwargs)

    def create(self, content: bytes, *, auth: VismaConnectAuth | None = None) -> httpx2.Response:
        """`POST /v2/journaltransaction` of `content` as it is, as raw HTTP (see `request`)."""
        return self.request("POST", "/v2/journaltransaction", auth=auth, content=content)

    @contextlib.contextmanager
    def clean(self) -> Iterator[None]:
        """No fault armed and no rate budget spent while the block runs; afterwards, the world's settings as
        they were and every client rotating refresh tokens again (one emulator serves a whole module)."""
        world = self.world
        saved = {name: getattr(world, name) for name in _SETTINGS}
        world.faults = visma_sandbox.Faults()
        world.budgets.clear()
        try:
            yield
        finally:
            world.faults = visma_sandbox.Faults()
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


class Raw(str):
    """An amount (or any value) written into JSON by `dumps` as the literal it holds, e.g. `Raw("1e30")`."""


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
                "debitAmountInCurrency": {"value": Raw(debit)},
                "creditAmountInCurrency": {"value": Raw(credit)},
            }
            for n, (account, debit, credit, segments) in enumerate(lines, start=1)
        ],
    }
    if hold is not None:
        body["hold"] = {"value": hold}
    return body


def dumps(body: dict[str, Any]) -> bytes:
    """JSON with `Raw` values and `Decimal`s as number literals, never strings or floats (the real payload
    builder writes exact decimals too; a body read with `parse_float=Decimal` goes back as it came)."""

    def encode(value: Any) -> str:
        if isinstance(value, Raw | Decimal):
            return str(value)
        if isinstance(value, dict):
            return "{" + ",".join(f"{json.dumps(k)}:{encode(v)}" for k, v in value.items()) + "}"
        if isinstance(value, list):
            return "[" + ",".join(encode(v) for v in value) + "]"
        return json.dumps(value)

    return encode(body).encode()


def run_python(code: str, *args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> str:
    """`python -c code args...` in a process of its own (Prefect's in-process services stay bound to the first
    API they talk to, so work against another server runs apart); asserts it exits 0, and shows its output when
    not. Returns its standard output."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
