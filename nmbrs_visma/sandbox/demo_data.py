"""The seeded demo world, shared by both emulators and the demo configuration.

One source of truth so that the accounts in the Nmbrs journals exist in the Visma.net tenants, the
segment descriptions match the mapping, and the flow tests know what must land in the ledger.
Everything is fixed (no clock, no randomness) so the demo and the tests are reproducible.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field

from nmbrs_visma.journals.models import AdministrationReference, FinancialPeriod, LedgerAccount, Segment

DEMO_YEAR = 2026
DEMO_PERIOD = 3  # the demo books the March 2026 runs (one of them corrects January and February)
YEARS = (2025, 2026)  # financial periods the Visma.net emulator holds

# Visma.net general-ledger accounts (number, description, active)
ACCOUNTS: tuple[tuple[str, str, bool], ...] = (
    ("1600", "Wage tax payable", True),
    ("1610", "Social charges payable", True),
    ("1620", "Pension premiums payable", True),
    ("1700", "Net wages payable", True),
    ("4000", "Gross wages", True),
    ("4100", "Employer social charges", True),
    ("4200", "Pension costs", True),
    ("4300", "Travel allowances", True),
    ("4999", "Old wages account (inactive)", False),
)

# SUBACCOUNT dimension: segment id, description, length, {value: active}; the all-zero value of each segment is
# what a line without a department or project books (every line gives every segment a value)
SEGMENTS: tuple[tuple[int, str, int, dict[str, bool]], ...] = (
    (1, "Department", 4, {"0000": True, "0100": True, "0200": True, "0300": True, "0900": False}),
    (2, "Project", 3, {"000": True, "001": True, "002": True, "003": True}),
)

CLOSED_PERIODS = {"202501", "202502", "202503", "202504", "202505", "202506"}  # closed in the GL
INACTIVE_PERIODS = {"202612"}


@dataclass(frozen=True)
class DemoTenant:
    """A Visma.net company (tenant) in the emulator."""

    tenant_id: str
    name: str
    branches: tuple[str, ...] = ("1",)
    ledger: str = "L"


TENANTS: tuple[DemoTenant, ...] = (
    DemoTenant("1000001", "Bakkerij Groep Administratie"),
    DemoTenant("1000002", "Bakkerij Zuid Administratie", branches=("1", "2")),
    DemoTenant("1000003", "Holding Administratie"),
)


@dataclass(frozen=True)
class DemoDebtor:
    debtor_id: str
    number: str
    name: str
    blocked: bool = False


DEBTORS: tuple[DemoDebtor, ...] = (
    DemoDebtor("9f1c5a10-0000-4000-8000-000000000101", "101", "Bakkerij Groep"),
    DemoDebtor("9f1c5a10-0000-4000-8000-000000000102", "102", "Slapende Holding", blocked=True),
)


@dataclass(frozen=True)
class DemoCompany:
    """A Nmbrs company, its March run, and the Visma.net administration it is mapped to in the demo."""

    company_id: str
    number: int
    name: str
    debtor: str  # debtor number
    tenant_id: str
    branch: str = "1"
    locked: bool = True
    corrections: tuple[int, ...] = ()  # earlier periods of DEMO_YEAR the March run corrects
    cost_centers: tuple[str, ...] = ()  # Nmbrs cost center codes used on cost lines (Visma "Department")
    cost_units: tuple[str, ...] = ()  # Nmbrs cost unit codes used on cost lines (Visma "Project")
    test_company: bool = False
    employees: int = 3
    notes: tuple[str, ...] = field(default=())
    period_type: str = "month"  # Nmbrs periodType: month, 4-weeks or 1-week (its runs' periods count alike)


COMPANIES: tuple[DemoCompany, ...] = (
    DemoCompany("3a0e0000-0000-4000-8000-000000001001", 1001, "Bakkerij Noord BV", "101", "1000001"),
    DemoCompany(
        "3a0e0000-0000-4000-8000-000000001002",
        1002,
        "Bakkerij Zuid BV",
        "101",
        "1000002",
        branch="2",
        cost_centers=("100", "200"),
        cost_units=("1", "2"),
    ),
    DemoCompany(
        "3a0e0000-0000-4000-8000-000000001003",
        1003,
        "Bakkerij Oost BV",
        "101",
        "1000001",
        corrections=(1, 2),
    ),
    DemoCompany(
        "3a0e0000-0000-4000-8000-000000001004", 1004, "Demo Testbedrijf BV", "101", "1000001", test_company=True
    ),
    DemoCompany("3a0e0000-0000-4000-8000-000000001005", 1005, "Bakkerij West BV", "101", "1000001", locked=False),
    DemoCompany("3a0e0000-0000-4000-8000-000000002001", 2001, "Slapende Holding BV", "102", "1000003"),
    DemoCompany(  # pays per four weeks: its period 3 (23 February .. 22 March) corrects period 1
        "3a0e0000-0000-4000-8000-000000001006",
        1006,
        "Bakkerij Vierweken BV",
        "101",
        "1000002",
        corrections=(1,),
        period_type="4-weeks",
    ),
)


def demo_reference(tenant_id: str = "1000002") -> AdministrationReference:
    """What the Visma.net emulator holds for a demo tenant (accounts, segments, periods of the demo years)."""
    periods = {}
    for year in YEARS:
        for month in range(1, 13):
            period_id = f"{year}{month:02d}"
            periods[period_id] = FinancialPeriod(
                period_id=period_id,
                start_date=dt.date(year, month, 1),
                end_date=dt.date(year, month, calendar.monthrange(year, month)[1]),
                active=period_id not in INACTIVE_PERIODS,
                closed_in_gl=period_id in CLOSED_PERIODS,
            )
    return AdministrationReference(
        tenant_id=tenant_id,
        periods=periods,
        accounts={n: LedgerAccount(number=n, description=t, active=a) for n, t, a in ACCOUNTS},
        segments=tuple(Segment(segment_id=i, description=t, length=n, values=v) for i, t, n, v in SEGMENTS),
    )
