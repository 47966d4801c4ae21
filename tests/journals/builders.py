"""Builders for the journal-core tests: the demo world's Visma.net reference, runs, mappings, XML."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nmbrs_visma.journals.models import (
    AdministrationMapping,
    DimensionSetting,
    PayrollRun,
)
from nmbrs_visma.sandbox.demo_data import demo_reference

__all__ = ["MARCH_WITH_CORRECTION", "by_code", "demo_reference", "journal_xml", "line_xml", "make_mapping", "make_run"]


def make_run(company: int = 1002, *, run_id: str = "run-1", number: int = 1, period: int = 3, **changes) -> PayrollRun:
    values = dict(
        company_id=f"company-{company}",
        company_number=company,
        run_id=run_id,
        run_number=number,
        year=2026,
        period_start=period,
        period_end=period,
        locked=True,
    )
    return PayrollRun(**(values | changes))


def make_mapping(company: int = 1002, *, dimensions: bool = True, **changes) -> AdministrationMapping:
    values: dict = dict(nmbrs_company=company, visma_account="demo", branch="2", ledger="L")
    if dimensions:
        values["cost_center"] = DimensionSetting(enabled=True, description="Department")
        values["cost_unit"] = DimensionSetting(enabled=True, description="Project")
    return AdministrationMapping(**(values | changes))


def line_xml(
    account: str, value: str, side: str = "debit", cost_center: str | None = None, cost_unit: str | None = None,
    description: str = "",
) -> str:  # fmt: skip
    parts = [f"<dim1>{account}</dim1>"]
    if cost_center is not None:
        parts.append(f"<dim2>{cost_center}</dim2>")
    if cost_unit is not None:
        parts.append(f"<dim3>{cost_unit}</dim3>")
    parts += [f"<value>{value}</value>", f"<debitcredit>{side}</debitcredit>"]
    parts.append(f"<description>{description}</description>")
    return "<line>" + "".join(parts) + "</line>"


def journal_xml(
    transactions: Iterable[tuple[str, str, Iterable[str]]],
    *,
    declaration: str = '<?xml version="1.0" encoding="UTF-8"?>',
) -> bytes:
    """A journal document from (date, period, line elements) per transaction."""
    body = "".join(
        f"<transaction><header><date>{date}</date><period>{period}</period></header>"
        f"<lines>{''.join(lines)}</lines></transaction>"
        for date, period, lines in transactions
    )
    return f"{declaration}\n<transactions>{body}</transactions>".encode()


# A March 2026 run of company 1002 correcting January: balanced per period, with dimensions and a negative value.
MARCH_WITH_CORRECTION = journal_xml(
    [
        (
            "20260325",
            "3/2026",
            [
                line_xml("4000", "2500,00", "debit", "100", "1", "Bruto loon"),
                line_xml("4000", "1500,00", "debit", "200", "2", "Bruto loon"),
                line_xml("4100", "800,00", "debit", "100", "1", "Werkgeverslasten"),
                line_xml("1600", "1200,00", "credit", description="Loonheffing"),
                line_xml("1610", "800,00", "credit", description="Sociale lasten"),
                line_xml("1700", "2800,00", "credit", description="Netto loon"),
            ],
        ),
        (
            "20260325",
            "1/2026",
            [
                line_xml("4000", "-100,50", "debit", "100", "1", "Correctie bruto"),
                line_xml("1700", "-100,50", "credit", description="Correctie netto"),
            ],
        ),
    ]
)


def by_code(refusals: Iterable) -> Mapping[str, list[str]]:
    found: dict[str, list[str]] = {}
    for refusal in refusals:
        found.setdefault(refusal.code, []).append(refusal.message)
    return found
