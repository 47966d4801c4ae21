"""The state of the Nmbrs emulator: debtors, companies, runs, tokens, document tasks, and fault switches.

Tests build a world, flip its switches (how many 202s a document answers, a task that never finishes,
a share of 5xx, a 429 budget, latency, token lifetimes, a clock) and serve it with `create_app(world)`.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from nmbrs_visma.sandbox.demo_data import COMPANIES, DEBTORS, DEMO_PERIOD, DEMO_YEAR, DemoCompany, DemoDebtor
from nmbrs_visma.sandbox.nmbrs.ledger import (
    DUTCH_STYLE,
    ISO_STYLE,
    MISLABELLED_STYLE,
    JournalKind,
    LedgerTransaction,
    LineKey,
    XmlStyle,
    period_end,
    render_xml,
    run_transactions,
    totals,
)

# The demo app registration and product subscription (sandbox values, not secrets of any real account).
DEMO_CLIENT_ID = "nmbrs-visma-demo"
DEMO_CLIENT_SECRET = "demo-client-secret-not-for-production"
DEMO_SUBSCRIPTION_KEY = "0d3m0-subscription-key-5a11b0x"
DEMO_REDIRECT_URI = "http://127.0.0.1:8765/callback"
DEMO_USER = "payroll@bakkerij-groep.example"

# the export dialects seen in the wild, spread over the demo companies (the rest write ISO dates, YYYY/P periods)
_STYLES: dict[int, XmlStyle] = {1002: DUTCH_STYLE, 1003: DUTCH_STYLE, 2001: MISLABELLED_STYLE}
_RUN_NAMESPACE = uuid.UUID("5e1d7a2c-6f0b-4c1e-9a57-2b8c0d9e4f31")
SCOPES = frozenset(
    {
        "company.info",
        "company.info.read",
        "company.payrollsettings.read",
        "company.document.read",
        "document.read",
        "debtor.info.read",
        "user.info.read",
        "offline_access",
        "openid",
    }
)


@dataclass(frozen=True)
class RunRecord:
    """One payroll run as the emulator serves it (`PayrollRun` in the spec)."""

    run_id: str
    company_id: str
    number: int
    year: int
    period_start: int
    period_end: int
    run_type: str
    locked: bool
    corrections: tuple[int, ...] = ()
    description: str = ""

    @property
    def created_at(self) -> str:
        return f"{period_end(self.year, self.period_end) + dt.timedelta(days=1):%Y-%m-%d}T09:00:00Z"


@dataclass
class DocumentTask:
    task_id: str
    content: bytes
    polls_left: int


@dataclass
class AuthorizationCode:
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    expires_at: float


@dataclass
class Grant:
    """An issued access or refresh token; refresh tokens are one-time (`used` after rotation)."""

    client_id: str
    scope: str
    expires_at: float
    used: bool = False


@dataclass(frozen=True)
class Exchange:
    """One request the emulator answered, kept for contract tests (header names only, never their values)."""

    method: str
    path: str
    query: str
    header_names: frozenset[str]
    status: int
    content_type: str
    body: bytes


def run_id_for(company_id: str, year: int, number: int) -> str:
    """Deterministic payroll run id, so a re-seeded emulator serves the same ids."""
    return str(uuid.uuid5(_RUN_NAMESPACE, f"{company_id}/{year}/{number}"))


@dataclass
class NmbrsWorld:
    """Everything the emulator knows; mutate the switches between requests to provoke faults."""

    client_id: str = DEMO_CLIENT_ID
    client_secret: str = DEMO_CLIENT_SECRET
    redirect_uris: set[str] = field(default_factory=lambda: {DEMO_REDIRECT_URI})
    subscription_key: str = DEMO_SUBSCRIPTION_KEY
    user: str = DEMO_USER

    debtors: dict[str, DemoDebtor] = field(default_factory=dict)  # debtor_id -> debtor
    companies: dict[str, DemoCompany] = field(default_factory=dict)  # company_id -> company
    runs: dict[str, list[RunRecord]] = field(default_factory=dict)  # company_id -> runs
    styles: dict[int, XmlStyle] = field(default_factory=dict)  # company number -> XML style
    current_period: tuple[int, int] = (DEMO_YEAR, DEMO_PERIOD)

    # switches
    document_polls: int = 2  # 202 answers before a document is ready
    never_finish: bool = False  # document tasks stay at 202 for ever
    server_error_rate: float = 0.0  # share of /api calls answered with a 5xx (seeded, reproducible)
    server_error_status: int = 503
    rate_limit: int | None = None  # /api calls allowed per `rate_window` seconds, then 429
    rate_window: float = 1.0
    retry_after: int = 1  # seconds announced on a 429
    latency: float = 0.0  # seconds added to every /api call
    max_page_size: int = 100  # the server's cap on pageSize (tests lower it to see pagination)
    documents: dict[int, bytes] = field(default_factory=dict)  # company number -> journal served as is
    access_token_lifetime: int = 3600
    refresh_token_lifetime: float = 30 * 24 * 3600.0  # sliding: a refresh token expires this long after issue
    code_lifetime: int = 300
    seed: int = 4
    clock: Callable[[], float] = time.time

    # state
    codes: dict[str, AuthorizationCode] = field(default_factory=dict)
    access_tokens: dict[str, Grant] = field(default_factory=dict)
    refresh_tokens: dict[str, Grant] = field(default_factory=dict)
    tasks: dict[str, DocumentTask] = field(default_factory=dict)
    exchanges: deque[Exchange] = field(default_factory=lambda: deque(maxlen=20_000))
    lock: threading.RLock = field(default_factory=threading.RLock)
    _forced: deque[int] = field(default_factory=deque)
    _calls: deque[float] = field(default_factory=deque)
    _rng: random.Random | None = None
    _company_debtor: dict[str, str] = field(default_factory=dict)

    # seeding ------------------------------------------------------------------------------------------
    def seed_demo(self) -> NmbrsWorld:
        """Load demo_data: every company gets locked normal runs for January and February of DEMO_YEAR and a
        run for DEMO_PERIOD (with its corrections, locked as the demo says)."""
        debtor_ids = {debtor.number: debtor.debtor_id for debtor in DEBTORS}
        for debtor in DEBTORS:
            self.debtors[debtor.debtor_id] = debtor
        for company in COMPANIES:
            self.add_company(company, debtor_ids[company.debtor], _STYLES.get(company.number, ISO_STYLE))
            for period in range(1, DEMO_PERIOD):
                self.add_run(company, DEMO_YEAR, period)
            self.add_run(company, DEMO_YEAR, DEMO_PERIOD, corrections=company.corrections, locked=company.locked)
        return self

    def add_company(self, company: DemoCompany, debtor_id: str, style: XmlStyle = ISO_STYLE) -> None:
        if debtor_id not in self.debtors:
            raise KeyError(f"debtor {debtor_id} is not in the world")
        self.companies[company.company_id] = company
        self._company_debtor[company.company_id] = debtor_id
        self.styles[company.number] = style
        self.runs.setdefault(company.company_id, [])

    def add_run(
        self, company: DemoCompany, year: int, period: int, *, corrections: tuple[int, ...] = (), locked: bool = True
    ) -> RunRecord:
        """Append the company's next run of `year` for `period` (run numbers count up per company and year)."""
        runs = self.runs.setdefault(company.company_id, [])
        number = 1 + sum(1 for run in runs if run.year == year)
        run = RunRecord(
            run_id=run_id_for(company.company_id, year, number),
            company_id=company.company_id,
            number=number,
            year=year,
            period_start=period,
            period_end=period,
            run_type="normal_twk" if corrections else "normal",
            locked=locked,
            corrections=tuple(corrections),
            description=f"Salarisrun {period:02d}/{year}" + (" met correcties" if corrections else ""),
        )
        runs.append(run)
        return run

    # look-ups -------------------------------------------------------------------------------------------
    def debtor_of(self, company_id: str) -> str:
        return self._company_debtor[company_id]

    def company_by_number(self, number: int) -> DemoCompany:
        for company in self.companies.values():
            if company.number == number:
                return company
        raise KeyError(f"company {number} is not in the Nmbrs emulator")

    def run(self, company_id: str, run_id: str) -> RunRecord | None:
        return next((run for run in self.runs.get(company_id, []) if run.run_id == run_id), None)

    def run_for_period(self, company_number: int, year: int, period: int) -> RunRecord:
        company = self.company_by_number(company_number)
        for run in self.runs.get(company.company_id, []):
            if run.year == year and run.period_end == period:
                return run
        raise KeyError(f"company {company_number} has no run for period {period}/{year}")

    # journals -------------------------------------------------------------------------------------------
    def transactions(self, run: RunRecord, kind: JournalKind = "journals") -> tuple[LedgerTransaction, ...]:
        company = self.companies[run.company_id]
        return run_transactions(company, run.year, run.period_end, run.corrections, kind)

    def journal_document(self, run: RunRecord, kind: JournalKind = "journals") -> bytes:
        company = self.companies[run.company_id]
        if company.number in self.documents:  # a test's own document (malformed, hostile, huge, unbalanced)
            return self.documents[company.number]
        return render_xml(self.transactions(run, kind), self.styles.get(company.number, ISO_STYLE))

    def expected_lines(
        self, company_number: int, year: int, period: int, kind: JournalKind = "journals"
    ) -> dict[LineKey, int]:
        """Cents per (period_id, account, cost_center, cost_unit, side) in the journal of the company's run
        for `period` of `year`, corrections included under the periods they correct."""
        return totals(self.transactions(self.run_for_period(company_number, year, period), kind))

    # fault switches ---------------------------------------------------------------------------------------
    def fail_next(self, count: int = 1, status: int = 503) -> None:
        """The next `count` /api calls answer `status` (429 announces `retry_after`)."""
        with self.lock:
            self._forced.extend([status] * count)

    def forced_status(self) -> int | None:
        """The fault (if any) the next /api call must answer with; counts the call against the 429 budget."""
        with self.lock:
            if self._forced:
                return self._forced.popleft()
            now = self.clock()
            if self.rate_limit is not None:
                while self._calls and self._calls[0] <= now - self.rate_window:
                    self._calls.popleft()
                if len(self._calls) >= self.rate_limit:
                    return 429
                self._calls.append(now)
            if self.server_error_rate > 0:
                if self._rng is None:
                    self._rng = random.Random(self.seed)
                if self._rng.random() < self.server_error_rate:
                    return self.server_error_status
            return None

    def record(self, exchange: Exchange) -> None:
        with self.lock:
            self.exchanges.append(exchange)

    def calls(self, path_prefix: str = "/api") -> list[Exchange]:
        with self.lock:
            return [exchange for exchange in self.exchanges if exchange.path.startswith(path_prefix)]


def demo_world() -> NmbrsWorld:
    return NmbrsWorld().seed_demo()


def expected_lines(company_number: int, year: int, period: int, kind: JournalKind = "journals") -> dict[LineKey, int]:
    """What the seeded demo emulator generates for a company's run of `period` (see NmbrsWorld.expected_lines)."""
    return demo_world().expected_lines(company_number, year, period, kind)
