"""The state of the Nmbrs emulator: debtors, companies, runs, tokens, document tasks, and fault switches.

Tests build a world, flip its switches (how many 202s a document answers, a task that never finishes,
a share of 5xx, a 429 budget, latency, token lifetimes, a clock) and serve it with `create_app(world)`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from nmbrs_visma.journals.models import PeriodType
from nmbrs_visma.sandbox.demo_data import COMPANIES, DEBTORS, DEMO_PERIOD, DEMO_YEAR, DemoCompany, DemoDebtor
from nmbrs_visma.sandbox.nmbrs.ledger import (
    DUTCH_STYLE,
    ISO_STYLE,
    MISLABELLED_STYLE,
    JournalKind,
    LedgerTransaction,
    LineKey,
    XmlStyle,
    check_period,
    check_run_periods,
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
_COMPANY_NAMESPACE = uuid.UUID("8c2f4b6e-1d3a-4f5c-9e7b-0a1c2d3e4f50")
# `displayPeriod` is "year-period-suffix": the spec shows "2021-2-M" for a month; it documents no other suffix,
# so the emulator spells a four-week period "2026-13-4W" and a week "2026-53-W" (the type's length and unit).
DISPLAY_SUFFIXES: dict[PeriodType, str] = {PeriodType.MONTH: "M", PeriodType.FOUR_WEEKS: "4W", PeriodType.WEEK: "W"}
_RUN_LABELS: dict[PeriodType, str] = {PeriodType.MONTH: "", PeriodType.FOUR_WEEKS: "4 weken ", PeriodType.WEEK: "week "}
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
    period_type: PeriodType = PeriodType.MONTH  # the company's, which numbers period_start/end and corrections

    @property
    def created_at(self) -> str:
        """The morning after the run's last period (the run is made once the period is over)."""
        last_day = period_end(self.year, self.period_end, self.period_type)
        return f"{last_day + dt.timedelta(days=1):%Y-%m-%d}T09:00:00Z"


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


def company_id_for(number: int) -> str:
    """Deterministic companyId for a company a test adds by number (`NmbrsWorld.add_company_like`)."""
    return str(uuid.uuid5(_COMPANY_NAMESPACE, str(number)))


def display_period(year: int, period: int, period_type: PeriodType) -> str:
    """`displayPeriod` as the Nmbrs web app shows it: "2026-3-M", "2026-13-4W", "2026-53-W"."""
    return f"{year}-{period}-{DISPLAY_SUFFIXES[period_type]}"


def period_holding(day: dt.date, period_type: PeriodType) -> tuple[int, int]:
    """(payroll year, period) of `period_type` that holds `day` (ISO year and week for weekly types)."""
    if period_type is PeriodType.MONTH:
        return day.year, day.month
    year, week, _weekday = day.isocalendar()
    if period_type is PeriodType.WEEK:
        return year, week
    return year, min(13, (week + 3) // 4)


def _run_description(year: int, start: int, end: int, period_type: PeriodType, corrected: bool) -> str:
    periods = f"{start:02d}-{end:02d}" if start != end else f"{end:02d}"
    return f"Salarisrun {_RUN_LABELS[period_type]}{periods}/{year}" + (" met correcties" if corrected else "")


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
    period_types: dict[str, PeriodType] = field(default_factory=dict)  # company_id -> period type
    current_period: tuple[int, int] = (DEMO_YEAR, DEMO_PERIOD)  # of monthly companies without their own
    company_periods: dict[str, tuple[int, int]] = field(default_factory=dict)  # company_id -> its own current one

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
    document_chunk: int = 64 * 1024  # a document is streamed in chunks of this many bytes
    document_chunks_served: int = 0  # chunks of documents sent so far (a test sees where a reader stopped)
    echo_secrets: bool = False  # error bodies echo every credential the request carried (sandbox/echo.py)
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
        """Load demo_data: every company gets locked normal runs for its periods 1 and 2 of DEMO_YEAR (January and
        February; a 4-weekly company's first eight weeks) and a run for period DEMO_PERIOD (with its corrections,
        locked as the demo says)."""
        debtor_ids = {debtor.number: debtor.debtor_id for debtor in DEBTORS}
        for debtor in DEBTORS:
            self.debtors[debtor.debtor_id] = debtor
        for company in COMPANIES:
            style = _STYLES.get(company.number, ISO_STYLE)
            self.add_company(company, debtor_ids[company.debtor], style, period_type=company.period_type)
            for period in range(1, DEMO_PERIOD):
                self.add_run(company, DEMO_YEAR, period)
            self.add_run(company, DEMO_YEAR, DEMO_PERIOD, corrections=company.corrections, locked=company.locked)
        return self

    def add_company(
        self,
        company: DemoCompany,
        debtor_id: str,
        style: XmlStyle = ISO_STYLE,
        period_type: PeriodType | str = PeriodType.MONTH,
        *,
        current_period: tuple[int, int] | None = None,
    ) -> None:
        """Add `company` under `debtor_id`, paying per `period_type` ("month", "4-weeks" or "1-week").

        Its current period is `current_period` when given, else the period (of its own type) that holds the
        last day of the world's monthly `current_period`."""
        if debtor_id not in self.debtors:
            raise KeyError(f"debtor {debtor_id} is not in the world")
        kind = PeriodType(period_type)
        self.companies[company.company_id] = company
        self._company_debtor[company.company_id] = debtor_id
        self.styles[company.number] = style
        self.period_types[company.company_id] = kind
        self.runs.setdefault(company.company_id, [])
        if current_period is not None:
            self.set_current_period(company.company_id, *current_period)

    def add_company_like(
        self,
        template: DemoCompany,
        number: int,
        period_type: PeriodType | str,
        *,
        style: XmlStyle = ISO_STYLE,
        current_period: tuple[int, int] | None = None,
    ) -> DemoCompany:
        """A copy of a demo company under a new number (and a companyId derived from it), paying per
        `period_type`, added under the template's debtor; the easy way to get a four-weekly or weekly company."""
        debtor_id = next((d.debtor_id for d in self.debtors.values() if d.number == template.debtor), None)
        if debtor_id is None:
            raise KeyError(f"debtor {template.debtor} of company {template.number} is not in the world")
        kind = PeriodType(period_type)
        company = dataclasses.replace(
            template, company_id=company_id_for(number), number=number, name=f"{template.name} ({kind.value})"
        )
        self.add_company(company, debtor_id, style, kind, current_period=current_period)
        return company

    def set_current_period(self, company_id: str, year: int, period: int) -> None:
        """Make (year, period), in the company's own numbering, the period its `/period` answer names."""
        check_period(year, period, self.period_type_of(company_id))
        self.company_periods[company_id] = (year, period)

    def add_run(
        self,
        company: DemoCompany,
        year: int,
        period: int,
        *,
        corrections: tuple[int, ...] = (),
        locked: bool = True,
        period_start: int | None = None,
    ) -> RunRecord:
        """Append the company's next run of `year` for `period` (run numbers count up per company and year).

        `period` is in the company's own numbering (1..12, 1..13 or 1..52/53) and must exist in `year`; a run
        spans `period_start`..`period` when `period_start` is given, and `corrections` are earlier periods of
        the same year. Anything else is a `ValueError`."""
        kind = self.period_type_of(company.company_id)
        start = period if period_start is None else period_start
        check_run_periods(year, start, period, corrections, kind)
        runs = self.runs.setdefault(company.company_id, [])
        number = 1 + sum(1 for run in runs if run.year == year)
        run = RunRecord(
            run_id=run_id_for(company.company_id, year, number),
            company_id=company.company_id,
            number=number,
            year=year,
            period_start=start,
            period_end=period,
            run_type="normal_twk" if corrections else "normal",
            locked=locked,
            corrections=tuple(corrections),
            description=_run_description(year, start, period, kind, bool(corrections)),
            period_type=kind,
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

    def period_type_of(self, company_id: str) -> PeriodType:
        return self.period_types.get(company_id, PeriodType.MONTH)

    def current_period_of(self, company_id: str) -> tuple[int, int]:
        """(year, period) the company works on now, in its own numbering (see `add_company`)."""
        if company_id in self.company_periods:
            return self.company_periods[company_id]
        year, month = self.current_period
        return period_holding(period_end(year, month), self.period_type_of(company_id))

    def run_for_period(self, company_number: int, year: int, period: int) -> RunRecord:
        """The company's first run of `year` whose own periods hold `period` (in the company's numbering)."""
        company = self.company_by_number(company_number)
        for run in self.runs.get(company.company_id, []):
            if run.year == year and run.period_start <= period <= run.period_end:
                return run
        raise KeyError(f"company {company_number} has no run for period {period}/{year}")

    # journals -------------------------------------------------------------------------------------------
    def transactions(self, run: RunRecord, kind: JournalKind = "journals") -> tuple[LedgerTransaction, ...]:
        company = self.companies[run.company_id]
        return run_transactions(
            company,
            run.year,
            run.period_end,
            run.corrections,
            kind,
            period_type=run.period_type,
            first_period=run.period_start,
        )

    def journal_document(self, run: RunRecord, kind: JournalKind = "journals") -> bytes:
        company = self.companies[run.company_id]
        if company.number in self.documents:  # a test's own document (malformed, hostile, huge, unbalanced)
            return self.documents[company.number]
        return render_xml(self.transactions(run, kind), self.styles.get(company.number, ISO_STYLE))

    def expected_lines(
        self, company_number: int, year: int, period: int, kind: JournalKind = "journals"
    ) -> dict[LineKey, int]:
        """Cents per (period_id, account, cost_center, cost_unit, side) in the journal of the company's run
        for `period` of `year` (its own numbering: period_id `202613` is four-week period 13), corrections
        included under the periods they correct."""
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

    def count_document_chunks(self, count: int) -> None:
        with self.lock:
            self.document_chunks_served += count

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
