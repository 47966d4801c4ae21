"""What a run did, one row per (company, run, administration, period): for artifacts, the CLI and the record.

Why one module: the Prefect UI's table artifact, the per-administration status artifact, `nmbrs-visma post`
and `nmbrs-visma status` all show the same rows the same way, so a bureau reads one vocabulary everywhere.
Rows carry business data only (numbers, amounts, reasons), never a credential.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from nmbrs_visma.output import Column, RowsTable, amount_text


class Status(StrEnum):
    SENT = "sent"
    ALREADY_SENT = "already sent"
    REFUSED = "refused"
    CHANGED = "changed"  # sent before with other content: nothing posted unless changed journals are reposted
    PENDING = "pending"  # a create's outcome is not known yet: looked up again after the settle time
    FAILED = "failed"
    DRY_RUN = "dry run"
    NO_RUN = "no run"
    WAITING = "waiting"  # a run not locked in Nmbrs yet: posted by the first pass after it is locked
    SKIPPED = "skipped"  # a test company: never posted, reported, not a problem


PROBLEMS = frozenset({Status.REFUSED, Status.CHANGED, Status.PENDING, Status.FAILED})

COLUMNS: tuple[tuple[str, str], ...] = (
    ("company", "Company"),
    ("administration", "Administration"),
    ("period", "Period"),
    ("reference", "Run"),
    ("lines", "Lines"),
    ("debit", "Debit"),
    ("credit", "Credit"),
    ("batch_number", "Batch"),
    ("status", "Status"),
    ("reason", "Reason"),
)


class StatusRow(BaseModel):
    """One journal transaction's fate (or one company's refusal, which covers all its periods)."""

    model_config = ConfigDict(frozen=True)

    company: int
    company_name: str = ""
    administration: str = ""
    period: str = ""  # financial period YYYYPP (the payroll period for a refusal)
    reference: str = ""
    lines: int = 0
    debit: Decimal = Decimal("0.00")
    credit: Decimal = Decimal("0.00")
    batch_number: str | None = None
    status: Status
    reason: str = ""
    codes: tuple[str, ...] = ()  # the refusal codes behind `reason` (machine-readable; not shown in tables)
    run_period: str = ""  # the payroll period of the row's run as a person writes it (2026-03, 2026/13)
    payload_file: str = ""  # a dry run's payload file (absolute path)

    def cells(self) -> dict[str, str]:
        """The row as display strings, in `COLUMNS` order (amounts with two decimals)."""
        return {
            "company": f"{self.company} {self.company_name}".strip(),
            "administration": self.administration,
            "period": self.period,
            "reference": self.reference,
            "lines": str(self.lines) if self.lines else "",
            "debit": f"{self.debit:.2f}" if self.lines else "",
            "credit": f"{self.credit:.2f}" if self.lines else "",
            "batch_number": self.batch_number or "",
            "status": self.status.value,
            "reason": self.reason,
        }


def sort_rows(rows: Iterable[StatusRow]) -> list[StatusRow]:
    return sorted(rows, key=lambda row: (row.company, row.administration, row.period, row.reference))


def has_problems(rows: Iterable[StatusRow]) -> bool:
    """True when anything was refused, changed, pending or failed: the CLI's exit status."""
    return any(row.status in PROBLEMS for row in rows)


def outcome_message(rows: Sequence[StatusRow]) -> str:
    """The flow run's state message: the counts, then, when anything went wrong, the companies and why (what a
    notification shows: the first few companies, each with its first reason)."""
    problems = [row for row in rows if row.status in PROBLEMS]
    if not problems:
        return summary(rows)
    by_company: dict[int, list[StatusRow]] = {}
    for row in sort_rows(problems):
        by_company.setdefault(row.company, []).append(row)
    named = [
        f"company {f'{company} {found[0].company_name}'.strip()}: {found[0].status.value}"
        + (f" ({found[0].reason})" if found[0].reason else "")
        for company, found in list(by_company.items())[:5]
    ]
    more = f"; and {len(by_company) - 5} more companies" if len(by_company) > 5 else ""
    return f"{len(problems)} problem(s) in {len(by_company)} company(ies) ({summary(rows)}): " + "; ".join(named) + more


def table_artifact_rows(rows: Sequence[StatusRow]) -> list[dict[str, str]]:
    """Rows for `create_table_artifact`, keyed by the column titles."""
    return [{title: cells[name] for name, title in COLUMNS} for cells in (row.cells() for row in sort_rows(rows))]


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[StatusRow]) -> str:
    header = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---:" if name in {"lines", "debit", "credit"} else "---" for name, _ in COLUMNS) + "|"
    body = [
        "| " + " | ".join(_markdown_cell(cells[name]) for name, _ in COLUMNS) + " |"
        for cells in (row.cells() for row in sort_rows(rows))
    ]
    return "\n".join([header, rule, *body])


def summary(rows: Sequence[StatusRow]) -> str:
    """One line: how many transactions per status, e.g. `4 sent, 2 refused`."""
    counts: dict[Status, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return ", ".join(f"{counts[status]} {status.value}" for status in Status if status in counts) or "nothing to do"


STATUS_STYLES: dict[Status, str] = {
    Status.SENT: "green",
    Status.ALREADY_SENT: "cyan",
    Status.REFUSED: "red",
    Status.CHANGED: "magenta",
    Status.PENDING: "yellow",
    Status.FAILED: "bold red",
}


def status_record(row: StatusRow) -> dict[str, Any]:
    """The row as a record for `nmbrs-visma ... --format json|csv`: every field, in the model's order."""
    return row.model_dump()


def _amount(name: str) -> Callable[[Mapping[str, Any]], str]:
    def cell(record: Mapping[str, Any]) -> str:
        return amount_text(record[name]) if record["lines"] else ""

    return cell


def _company(record: Mapping[str, Any]) -> str:
    return f"{record['company']} {record['company_name']}".strip()


def status_layouts(rows: Sequence[StatusRow]) -> list[list[Column]]:
    """The command line's table of status rows, widest layout first: every column; without lines; with the
    administration under the company; with the period under the run. A transaction's debit and credit totals
    are equal (the journal balances), so the narrower layouts show one amount, unless some row's are not."""
    company = Column("company", "Company", show=_company, min_width=14)
    administration = Column("administration", "Administration", kind="code")
    period = Column("period", "Period", kind="code")
    run = Column("reference", "Run", kind="code")
    lines = Column("lines", "Lines", kind="count", show=lambda record: str(record["lines"] or ""))
    debit = Column("debit", "Debit", kind="amount", show=_amount("debit"))
    credit = Column("credit", "Credit", kind="amount", show=_amount("credit"))
    batch = Column("batch_number", "Batch", kind="code")
    status = Column("status", "Status", min_width=7)
    reason = Column("reason", "Reason", min_width=30)
    balanced = all(row.debit == row.credit for row in rows if row.lines)
    amounts = [Column("debit", "Amount", kind="amount", show=_amount("debit"))] if balanced else [debit, credit]
    both = Column(
        "company",
        "Company / administration",
        show=lambda record: "\n".join(part for part in (_company(record), record["administration"]) if part),
        min_width=14,
    )
    run_and_period = Column(
        "reference",
        "Run / period",
        kind="code",
        show=lambda record: "\n".join(part for part in (record["reference"], record["period"]) if part),
    )
    short_reason = Column("reason", "Reason", min_width=20)
    return [
        [company, administration, period, run, lines, debit, credit, batch, status, reason],
        [company, administration, period, run, *amounts, batch, status, reason],
        [both, period, run, *amounts, batch, status, reason],
        [both, run_and_period, *amounts, batch, status, short_reason],
    ]


def rich_table(rows: Sequence[StatusRow], title: str | None = None) -> object:
    """The rows as a rich renderable for the command line, problems in red, fitting the width it is printed in
    (amounts, periods, batch and company numbers never split; see `nmbrs_visma.output`)."""
    ordered = sort_rows(rows)
    return RowsTable(
        [status_record(row) for row in ordered],
        status_layouts(ordered),
        title=title,
        row_style=lambda record: STATUS_STYLES.get(record["status"]),
    )


_KEY_UNSAFE = re.compile(r"[^a-z0-9-]+")


def artifact_key(*parts: object) -> str:
    """A Prefect artifact key: lowercase letters, digits and dashes only."""
    text = "-".join(str(part) for part in parts).lower()
    return _KEY_UNSAFE.sub("-", text).strip("-")
