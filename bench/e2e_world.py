"""The synthetic world of `bench/e2e.py`: N administrations, each one Visma.net tenant mapped to one Nmbrs
company whose March run carries 400 journal lines over three periods (its own March and corrections of
January and February), balanced per period, with 67 expense and 67 liability accounts so every line stays
its own line after aggregation. Deterministic (no clock, no randomness).
"""

from __future__ import annotations

import uuid
from typing import Any

from nmbrs_visma.journals.models import (
    AdministrationMapping,
    AdministrationReference,
    FinancialPeriod,
    LedgerAccount,
    PayrollRun,
    Segment,
)
from nmbrs_visma.sandbox.demo_data import DemoCompany, DemoDebtor
from nmbrs_visma.sandbox.nmbrs import NmbrsWorld
from nmbrs_visma.sandbox.visma_net import SERVICE_CLIENT_ID, SERVICE_CLIENT_SECRET, OAuthClient, VismaWorld

YEAR, MONTH = 2026, 3
PERIOD = f"{YEAR}-{MONTH:02d}"
LINES_PER_PERIOD = {1: 134, 2: 133, 3: 133}  # 400 lines per run
EXPENSES = [f"{4000 + i}" for i in range(67)]
LIABILITIES = [f"{1600 + i}" for i in range(67)]
DEBTOR = DemoDebtor("9f1c5a10-0000-4000-8000-00000000b001", "901", "Bench bureau")
NAMESPACE = uuid.UUID("0b7c2f4e-5a61-4d0e-8f3b-6c1d2e3f4a5b")


def tenant_id(index: int) -> str:
    return f"{2_000_001 + index}"


def company_number(index: int) -> int:
    return 10_001 + index


def account_name(index: int) -> str:
    return f"bench-{tenant_id(index)}"


def company(index: int) -> DemoCompany:
    number = company_number(index)
    return DemoCompany(str(uuid.uuid5(NAMESPACE, str(number))), number, f"Bench {number} BV", DEBTOR.number, "")


def _period_lines(index: int, period: int) -> list[tuple[str, str, int]]:
    """(account, side, cents): debits on expense accounts, credits on liability accounts, equal totals."""
    count = LINES_PER_PERIOD[period]
    debits = count // 2
    credits = count - debits
    sign = -1 if period == 2 else 1  # the February correction lowers wages: negative amounts, each on its side
    amounts = [sign * (10_000 + (index * 7919 + line * 104_729 + period * 31) % 400_000) for line in range(debits)]
    total = sum(amounts)
    shares = [total // credits] * credits
    shares[-1] += total - sum(shares)
    lines = [(EXPENSES[i], "debit", cents) for i, cents in enumerate(amounts)]
    lines += [(LIABILITIES[i], "credit", cents) for i, cents in enumerate(shares)]
    return lines


def journal_document(index: int) -> bytes:
    """The company's March run as Nmbrs journal XML: January and February corrections, then March."""
    parts = ['<?xml version="1.0" encoding="utf-8"?>', "<transactions>"]
    for period in (1, 2, 3):
        parts.append(f"<transaction><header><date>{YEAR}-{MONTH:02d}-31</date><period>{YEAR}/{period}</period>")
        parts.append("</header><lines>")
        for account, side, cents in _period_lines(index, period):
            value = f"{'-' if cents < 0 else ''}{abs(cents) // 100}.{abs(cents) % 100:02d}"
            parts.append(
                f"<line><dim1>{account}</dim1><dim2/><dim3/><value>{value}</value>"
                f"<debitcredit>{side}</debitcredit><description>Bench {account} {period}</description></line>"
            )
        parts.append("</lines></transaction>")
    parts.append("</transactions>")
    return "\n".join(parts).encode()


def visma_world(admins: int, *, create_latency: float, read_latency: float, budget: int, window: float) -> VismaWorld:
    """A fresh Visma.net emulator world: one tenant per administration, the bench accounts, the service client."""
    world = VismaWorld(
        access_token_lifetime=300.0,  # under the pipeline's 10-minute margin: every run refreshes every account
        rate_limit_per_window=budget,
        rate_window_seconds=window,
    )
    accounts = {number: (f"Expense {number}", True) for number in EXPENSES}
    accounts |= {number: (f"Liability {number}", True) for number in LIABILITIES}
    for index in range(admins):
        tenant = world.add_tenant(tenant_id(index), f"Bench administration {index}")
        tenant.accounts = dict(accounts)
    world.add_client(OAuthClient(SERVICE_CLIENT_ID, SERVICE_CLIENT_SECRET, "service", frozenset(world.tenants)))
    world.faults.create_latency = create_latency
    world.faults.read_latency = read_latency
    return world


def nmbrs_world(admins: int) -> NmbrsWorld:
    world = NmbrsWorld(document_polls=0)
    world.debtors[DEBTOR.debtor_id] = DEBTOR
    for index in range(admins):
        demo = company(index)
        world.add_company(demo, DEBTOR.debtor_id)
        world.add_run(demo, YEAR, MONTH, corrections=(1, 2), locked=True)
        world.documents[demo.number] = journal_document(index)
    return world


def config(admins: int, visma_url: str, nmbrs_url: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The `config apply` data of the bench and the environment holding its (public demo) secrets."""
    from nmbrs_visma.demo import emulator_accounts

    accounts, env = emulator_accounts(
        visma_url, nmbrs_url, {account_name(index): tenant_id(index) for index in range(admins)}
    )
    companies = [
        {"nmbrs_company": company_number(index), "visma_account": account_name(index), "branch": "1", "ledger": "L"}
        for index in range(admins)
    ]
    return {**accounts, "companies": companies}, env


def reference(world: VismaWorld, index: int) -> AdministrationReference:
    """What the pipeline reads from Visma.net for a tenant, taken straight from the world (for the bare run)."""
    tenant = world.tenants[tenant_id(index)]
    return AdministrationReference(
        tenant_id=tenant.tenant_id,
        periods={
            period_id: FinancialPeriod(
                period_id=period_id, start_date=start, end_date=end, active=active, closed_in_gl=closed
            )
            for period_id, (start, end, active, closed) in tenant.periods.items()
        },
        accounts={n: LedgerAccount(number=n, description=d, active=a) for n, (d, a) in tenant.accounts.items()},
        segments=tuple(
            Segment(segment_id=sid, description=d, length=n, values=dict(v))
            for sid, (d, n, v) in tenant.segments.items()
        ),
    )


def payloads(nmbrs: NmbrsWorld, visma: VismaWorld, admins: int) -> dict[str, list[bytes]]:
    """Tenant -> the exact create payloads the pipeline posts (the core's own parse and build)."""
    from nmbrs_visma.journals.build import build_transactions
    from nmbrs_visma.journals.nmbrs_xml import parse_journal_xml

    built: dict[str, list[bytes]] = {}
    for index in range(admins):
        demo = company(index)
        record = nmbrs.run_for_period(demo.number, YEAR, MONTH)
        run = PayrollRun(
            company_id=demo.company_id,
            company_number=demo.number,
            company_name=demo.name,
            run_id=record.run_id,
            run_number=record.number,
            year=YEAR,
            period_start=MONTH,
            period_end=MONTH,
            locked=True,
        )
        mapping = AdministrationMapping(
            nmbrs_company=demo.number, visma_account=account_name(index), branch="1", ledger="L"
        )
        lines = parse_journal_xml(nmbrs.documents[demo.number], source=f"company {demo.number}")
        planned = build_transactions(lines, run, mapping, reference(visma, index))
        built[tenant_id(index)] = [transaction.payload for transaction in planned]
    return built
