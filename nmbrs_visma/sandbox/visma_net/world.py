"""The Visma.net emulator's state: tenants and their reference data, posted batches, OAuth clients and tokens,
rate-limit budgets and fault switches. One lock guards it all (the app serves from a thread pool).

Tests hold the world object, flip its switches at run time and inspect what was booked
(`world.transactions(tenant_id)`); the demo seeds it from `sandbox/demo_data.py`.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from calendar import month_name
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Literal

from nmbrs_visma.sandbox import demo_data

SERVICE_SCOPES = ("vismanet_erp_service_api:create", "vismanet_erp_service_api:read", "vismanet_erp_service_api:update")
INTERACTIVE_SCOPES = (
    "vismanet_erp_interactive_api:create",
    "vismanet_erp_interactive_api:read",
    "vismanet_erp_interactive_api:update",
)

# Registered demo clients (the secrets are public demo values, valid only against this emulator).
SERVICE_CLIENT_ID = "nv-demo-service"
SERVICE_CLIENT_SECRET = "nv-demo-service-secret-0f3a9c"
INTERACTIVE_CLIENT_ID = "nv-demo-interactive"
INTERACTIVE_CLIENT_SECRET = "nv-demo-interactive-secret-7b21e4"
DEMO_REDIRECT_URI = "http://127.0.0.1:8765/callback"  # loopback: any port is accepted (RFC 8252)
DEMO_USER = "payroll@bakkerij.example"

LoseMode = Literal["502", "drop", "timeout"]
ListingPages = Literal["lines", "batches"]

# The six workspaces a Visma.net financial period is closed in, each on its own (GL201000's "Closed in ..." boxes).
WorkspaceLedger = Literal["supplier", "customer", "inventory", "general", "cash", "fixed_assets"]
LEDGERS: tuple[WorkspaceLedger, ...] = ("supplier", "customer", "inventory", "general", "cash", "fixed_assets")

FOUR_WEEKS = dt.timedelta(days=28)
UNRELEASED = frozenset({"Hold", "Balanced"})  # a batch's statuses before its release: it may still be edited


@dataclass(frozen=True)
class PeriodRecord:
    """One financial period: its dates, whether it is active, and the workspaces it is closed in."""

    start: dt.date
    end: dt.date
    active: bool = True
    closed_in: frozenset[WorkspaceLedger] = frozenset()
    description: str = ""  # GL201000's description: the month's name, or "Period N" for a 13-period year

    @property
    def closed_in_gl(self) -> bool:
        """Closed in the general ledger: the one closing that refuses a journal transaction."""
        return "general" in self.closed_in

    def __iter__(self) -> Iterator[object]:
        """Unpacks as the former `(start, end, active, closed_in_gl)` tuple, for readers outside the emulator
        (bench/e2e_world.py) written against it."""
        return iter((self.start, self.end, self.active, self.closed_in_gl))


def _ledgers(ledgers: Iterable[str]) -> frozenset[WorkspaceLedger]:
    """The named workspaces; a misspelt one is an error, not a closing that silently does nothing."""
    chosen = frozenset(ledgers)
    unknown = sorted(chosen - set(LEDGERS))
    if unknown:
        raise ValueError(f"not a workspace ledger: {', '.join(unknown)} (one of {', '.join(LEDGERS)})")
    return chosen  # type: ignore[return-value]


def _add_months(day: dt.date, months: int) -> dt.date:
    """The same day of the month `months` later (used with day 1 only: every month has one)."""
    index = day.year * 12 + day.month - 1 + months
    return day.replace(year=index // 12, month=index % 12 + 1)


def fiscal_year_bounds(year: int, start_month: int = 1, belongs_to_next_year: bool = False) -> tuple[dt.date, dt.date]:
    """First and last day of financial year `year`: twelve months from the 1st of `start_month`.

    Visma.net names a financial year by the calendar year it starts in, unless the year's "Belongs to next
    year" option (GL101000) is set: then by the year after (financial year 2021 starting 2020-09-15). So
    year 2026 from July is 2026-07-01..2027-06-30, or with `belongs_to_next_year` 2025-07-01..2026-06-30.
    """
    if not 1 <= start_month <= 12:
        raise ValueError(f"fiscal_start_month must be 1..12, not {start_month}")
    start = dt.date(year - 1 if belongs_to_next_year else year, start_month, 1)
    return start, _add_months(start, 12) - dt.timedelta(days=1)


def fiscal_periods(
    year: int, periods_per_year: int = 12, start_month: int = 1, belongs_to_next_year: bool = False
) -> list[tuple[str, dt.date, dt.date, str]]:
    """The periods `(YYYYPP, start, end, description)` of financial year `year`.

    12 periods: the twelve months from the year's first day. 13 periods: 28 days each from the year's first day,
    the 13th taking what is left up to the year's end (29 days, 30 when it holds a February 29th).
    """
    first, last = fiscal_year_bounds(year, start_month, belongs_to_next_year)
    periods: list[tuple[str, dt.date, dt.date, str]] = []
    if periods_per_year == 12:
        for number in range(1, 13):
            start = _add_months(first, number - 1)
            end = _add_months(first, number) - dt.timedelta(days=1)
            periods.append((f"{year}{number:02d}", start, end, month_name[start.month]))
    elif periods_per_year == 13:
        for number in range(1, 14):
            start = first + FOUR_WEEKS * (number - 1)
            end = last if number == 13 else start + FOUR_WEEKS - dt.timedelta(days=1)
            periods.append((f"{year}{number:02d}", start, end, f"Period {number}"))
    else:
        raise ValueError(f"periods_per_year must be 12 or 13, not {periods_per_year}")
    return periods


@dataclass
class Tenant:
    tenant_id: str
    name: str
    accounts: dict[str, tuple[str, bool]]  # number -> (description, active)
    branches: dict[str, str]  # number -> name
    ledgers: dict[str, str]  # id -> description
    segments: dict[int, tuple[str, int, dict[str, bool]]]  # id -> (description, length, {value: active})
    periods: dict[str, PeriodRecord]  # YYYYPP -> the period
    dimension_id: str = "SUBACCOUNT"
    batches: dict[str, StoredTransaction] = field(default_factory=dict)
    next_batch: int = 1
    require_complete_subaccounts: bool | None = None  # None: the world's switch decides

    def close_period(self, period_id: str, ledgers: Iterable[WorkspaceLedger] = LEDGERS) -> PeriodRecord:
        """Close a period in the given workspaces (all six by default), the others left as they are.

        Visma.net closes the general ledger only after the other five; the emulator lets a test close any mix,
        so that a check reading only `closedInGeneralLedger` is told apart from one reading another flag.
        """
        record = self.periods[period_id]
        closed = replace(record, closed_in=record.closed_in | _ledgers(ledgers))
        self.periods[period_id] = closed
        return closed

    def open_period(self, period_id: str, ledgers: Iterable[WorkspaceLedger] = LEDGERS) -> PeriodRecord:
        """Reopen a period in the given workspaces (all six by default)."""
        record = self.periods[period_id]
        opened = replace(record, closed_in=record.closed_in - _ledgers(ledgers))
        self.periods[period_id] = opened
        return opened


@dataclass(frozen=True)
class StoredLine:
    line_number: int
    account: str
    subaccount: dict[int, str]  # segment id -> value (missing segments get the zero default)
    reference: str
    description: str
    debit: Decimal
    credit: Decimal
    branch: str


@dataclass
class StoredTransaction:
    batch_number: str
    period_id: str
    transaction_date: dt.date
    ledger: str
    branch: str
    description: str
    hold: bool
    status: str  # Hold, Balanced (both unreleased: editable), Unposted, Posted
    lines: list[StoredLine]
    last_modified: dt.datetime
    currency: str = "EUR"
    created_at: float = 0.0  # world.clock() when booked (the listing's `listing_lag` counts from it)
    reversing_entry: bool = False  # made by Visma.net's Reverse action (`reversingEntry`)
    original_batch_number: str = ""  # a reversing batch: the batch it reverses (`originalBatchNumber`)

    @property
    def debit_total(self) -> Decimal:
        return sum((line.debit for line in self.lines), Decimal("0"))

    @property
    def credit_total(self) -> Decimal:
        return sum((line.credit for line in self.lines), Decimal("0"))


@dataclass
class OAuthClient:
    client_id: str
    secret: str
    kind: Literal["service", "interactive"]
    tenants: frozenset[str]
    redirect_uris: tuple[str, ...] = ()
    rotate_refresh_tokens: bool = True  # one-time refresh tokens (else re-usable)


@dataclass
class Grant:
    """An access or refresh token (or authorization code) the emulator issued."""

    client_id: str
    tenant_id: str
    scopes: frozenset[str]
    expires_at: float
    kind: Literal["access", "refresh", "code"] = "access"
    user: str | None = None
    used_at: float | None = None  # refresh tokens and codes: when first redeemed
    redirect_uri: str | None = None  # codes
    code_challenge: str | None = None  # codes


@dataclass
class Faults:
    """Switches tests flip at run time. Shares are drawn from a seeded generator, so runs repeat."""

    create_latency: float = 0.0  # seconds added to every create
    read_latency: float = 0.0  # seconds added to every read
    server_error_share: float = 0.0  # share of API calls answered 500
    fail_next: int = 0  # the next N API calls are answered 503 (deterministic)
    lose_next_creates: int = 0  # the next N creates commit, then lose the response
    lose_mode: LoseMode = "502"
    lose_timeout: float = 5.0  # "timeout": seconds to hold the answer back (make it exceed the client timeout)
    echo_secrets: bool = False  # error bodies echo every credential the request carried (sandbox/echo.py)


@dataclass(frozen=True)
class Received:
    """One API request as the emulator got it (contract tests validate these bodies)."""

    time: float
    method: str
    path: str
    query: str
    tenant_id: str | None
    body: bytes


@dataclass
class RateBudget:
    window_start: float
    used: int = 0


class VismaWorld:
    """All state of one emulator instance. Defaults are the real service's; tests shorten them.

    Listing switches (`GET /v2/journaltransaction`; plain attributes, flip them at run time):

    - `listing_pages`: what a page counts. "lines" (default): `pageSize` lines, a batch cut by a page boundary
      shows on both pages, `metadata.totalCount` counts lines. "batches": `pageSize` whole batches, each with
      all its lines, and `totalCount` counts batches.
    - `listing_lag`: seconds after a create during which the new batch is missing from the listing (an
      eventually consistent read); `GET /v2/journaltransaction/{number}` finds it at once. Default 0: no lag.

    Create switch: `require_complete_subaccounts` (default True, as the published schema makes the subaccount
    mandatory; a tenant's own value, when set, wins): a line whose `subaccount` leaves out a segment of the
    tenant's SUBACCOUNT dimension is refused, naming the segment. Off, Visma.net's zero value is booked for it.
    """

    def __init__(
        self,
        *,
        access_token_lifetime: float = 3600.0,
        refresh_token_lifetime: float = 30 * 24 * 3600.0,
        refresh_grace_period: float = 10.0,
        code_lifetime: float = 300.0,
        rate_limit_per_window: int = 5000,
        rate_window_seconds: float = 3600.0,
        max_page_size: int = 1000,
        listing_pages: ListingPages = "lines",
        listing_lag: float = 0.0,
        post_on_release: bool = True,
        require_complete_subaccounts: bool = True,
        clock: Callable[[], float] = time.time,
        seed: int = 7,
    ) -> None:
        import random

        self.lock = threading.RLock()
        self.tenants: dict[str, Tenant] = {}
        self.clients: dict[str, OAuthClient] = {}
        self.grants: dict[str, Grant] = {}  # token or code -> grant
        self.access_token_lifetime = access_token_lifetime
        self.refresh_token_lifetime = refresh_token_lifetime
        self.refresh_grace_period = refresh_grace_period
        self.code_lifetime = code_lifetime
        self.rate_limit_per_window = rate_limit_per_window
        self.rate_window_seconds = rate_window_seconds
        self.max_page_size = max_page_size
        self.listing_pages: ListingPages = listing_pages
        self.listing_lag = listing_lag
        self.post_on_release = post_on_release
        self.require_complete_subaccounts = require_complete_subaccounts
        self.faults = Faults()
        self.clock = clock
        self.random = random.Random(seed)
        self.budgets: dict[str, RateBudget] = {}
        self.received: list[Received] = []  # every API request, in arrival order
        self.token_requests: list[tuple[float, str]] = []  # (time, grant_type)

    # -- seeding --

    def seed_demo(self) -> VismaWorld:
        """The demo world: every tenant of demo_data, the demo clients, two years of periods."""
        for demo in demo_data.TENANTS:
            self.add_tenant(demo.tenant_id, demo.name, branches=demo.branches, ledger=demo.ledger)
        every = frozenset(self.tenants)
        self.add_client(OAuthClient(SERVICE_CLIENT_ID, SERVICE_CLIENT_SECRET, "service", every))
        self.add_client(
            OAuthClient(INTERACTIVE_CLIENT_ID, INTERACTIVE_CLIENT_SECRET, "interactive", every, (DEMO_REDIRECT_URI,))
        )
        return self

    def add_tenant(
        self,
        tenant_id: str,
        name: str,
        *,
        branches: tuple[str, ...] = ("1",),
        ledger: str = "L",
        periods_per_year: int = 12,
        fiscal_start_month: int = 1,
        belongs_to_next_year: bool = False,
        inactive_periods: Collection[str] = demo_data.INACTIVE_PERIODS,
        closed_periods: Collection[str] = demo_data.CLOSED_PERIODS,
    ) -> Tenant:
        """A tenant with the demo accounts and segments and the financial years `demo_data.YEARS`.

        The calendar is `fiscal_periods(year, periods_per_year, fiscal_start_month, belongs_to_next_year)`;
        the period ids in `closed_periods` are closed in all six workspaces, those in `inactive_periods` inactive.
        """
        periods: dict[str, PeriodRecord] = {}
        for year in demo_data.YEARS:
            for period_id, start, end, description in fiscal_periods(
                year, periods_per_year, fiscal_start_month, belongs_to_next_year
            ):
                periods[period_id] = PeriodRecord(
                    start=start,
                    end=end,
                    description=description,
                    active=period_id not in inactive_periods,
                    closed_in=frozenset(LEDGERS) if period_id in closed_periods else frozenset(),
                )
        tenant = Tenant(
            tenant_id=tenant_id,
            name=name,
            accounts={number: (description, active) for number, description, active in demo_data.ACCOUNTS},
            branches={number: f"{name} branch {number}" for number in branches},
            ledgers={ledger: "Actual ledger"},
            segments={
                sid: (description, length, dict(values)) for sid, description, length, values in demo_data.SEGMENTS
            },
            periods=periods,
        )
        with self.lock:
            self.tenants[tenant_id] = tenant
        return tenant

    def complete_subaccounts_required(self, tenant: Tenant) -> bool:
        """Whether a create in `tenant` must give every subaccount segment (the tenant's switch, else the world's)."""
        own = tenant.require_complete_subaccounts
        return self.require_complete_subaccounts if own is None else own

    def add_client(self, client: OAuthClient) -> None:
        with self.lock:
            self.clients[client.client_id] = client

    # -- listing --

    def listed(self, tx: StoredTransaction) -> bool:
        """Whether the listing shows a batch yet (`listing_lag` after its creation)."""
        return self.listing_lag <= 0 or self.clock() - tx.created_at >= self.listing_lag

    # -- what tests inspect --

    def transactions(self, tenant_id: str) -> list[StoredTransaction]:
        """Every batch booked in a tenant, in creation order."""
        with self.lock:
            return list(self.tenants[tenant_id].batches.values())

    # -- what a user does in Visma.net's own windows (the published API has no DELETE and no reverse action) --

    def delete_batch(self, tenant_id: str, batch_number: str) -> StoredTransaction:
        """Delete a batch as a user does in the Journal transactions window (GL301000): only one not released
        yet (on hold or balanced); a released batch can only be reversed. Returns the deleted batch."""
        with self.lock:
            tenant = self.tenants[tenant_id]
            tx = tenant.batches.get(batch_number)
            if tx is None:
                raise KeyError(f"tenant {tenant_id} holds no batch {batch_number}")
            if tx.status not in UNRELEASED:
                raise ValueError(f"batch {batch_number} has status {tx.status}: a released batch cannot be deleted")
            return tenant.batches.pop(batch_number)

    def reverse_batch(self, tenant_id: str, batch_number: str) -> StoredTransaction:
        """Visma.net's Reverse action on a batch: a new balanced batch in the original's period and on its date,
        every line with debit and credit swapped, the original's description, `reversingEntry` set and
        `originalBatchNumber` naming the batch it reverses. Returns the reversing batch."""
        with self.lock:
            tenant = self.tenants[tenant_id]
            original = tenant.batches.get(batch_number)
            if original is None:
                raise KeyError(f"tenant {tenant_id} holds no batch {batch_number}")
            lines = [replace(line, debit=line.credit, credit=line.debit) for line in original.lines]
            number = f"{tenant.next_batch:06d}"
            tenant.next_batch += 1
            reversing = replace(
                original,
                batch_number=number,
                hold=False,
                status="Balanced",
                lines=lines,
                last_modified=dt.datetime.now(dt.UTC),
                created_at=self.clock(),
                reversing_entry=True,
                original_batch_number=batch_number,
            )
            tenant.batches[number] = reversing
            return reversing

    # -- tokens --

    def new_token(self, grant: Grant) -> str:
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.grants[token] = grant
        return token

    def grant(self, token: str) -> Grant | None:
        with self.lock:
            return self.grants.get(token)

    def expire_access_tokens(self) -> None:
        """Make every issued access token expire now (tests of the client's re-authentication)."""
        now = self.clock()
        with self.lock:
            for grant in self.grants.values():
                if grant.kind == "access":
                    grant.expires_at = min(grant.expires_at, now)

    # -- rate limits --

    def take_budget(self, tenant_id: str) -> tuple[bool, int, float]:
        """Count one API call against the tenant's window: (allowed, remaining, seconds until reset)."""
        now = self.clock()
        with self.lock:
            budget = self.budgets.get(tenant_id)
            if budget is None or now - budget.window_start >= self.rate_window_seconds:
                budget = self.budgets[tenant_id] = RateBudget(window_start=now)
            reset = budget.window_start + self.rate_window_seconds - now
            if budget.used >= self.rate_limit_per_window:
                return False, 0, reset
            budget.used += 1
            return True, self.rate_limit_per_window - budget.used, reset

    # -- faults --

    def draw_server_error(self) -> bool:
        with self.lock:
            if self.faults.fail_next > 0:
                self.faults.fail_next -= 1
                return True
            return self.faults.server_error_share > 0 and self.random.random() < self.faults.server_error_share

    def take_lost_create(self) -> LoseMode | None:
        with self.lock:
            if self.faults.lose_next_creates > 0:
                self.faults.lose_next_creates -= 1
                return self.faults.lose_mode
            return None


__all__ = [
    "DEMO_REDIRECT_URI",
    "DEMO_USER",
    "INTERACTIVE_CLIENT_ID",
    "INTERACTIVE_CLIENT_SECRET",
    "INTERACTIVE_SCOPES",
    "LEDGERS",
    "SERVICE_CLIENT_ID",
    "SERVICE_CLIENT_SECRET",
    "SERVICE_SCOPES",
    "UNRELEASED",
    "Faults",
    "Grant",
    "ListingPages",
    "OAuthClient",
    "PeriodRecord",
    "Received",
    "StoredLine",
    "StoredTransaction",
    "Tenant",
    "VismaWorld",
    "WorkspaceLedger",
    "fiscal_periods",
    "fiscal_year_bounds",
]
