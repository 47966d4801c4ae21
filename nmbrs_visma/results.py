"""What a run did, one row per (company, run, administration, period): for artifacts, the CLI and the record.

Why one module: the Prefect UI's table artifact, the per-administration status artifact, `nmbrs-visma post`
and `nmbrs-visma status` all show the same rows the same way, so a bureau reads one vocabulary everywhere.
Rows carry business data only (numbers, amounts, reasons), never a credential.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


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


def table_artifact_rows(rows: Sequence[StatusRow]) -> list[dict[str, str]]:
    """Rows for `create_table_artifact`, keyed by the column titles."""
    return [{title: row.cells()[name] for name, title in COLUMNS} for row in sort_rows(rows)]


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[StatusRow]) -> str:
    header = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---:" if name in {"lines", "debit", "credit"} else "---" for name, _ in COLUMNS) + "|"
    body = [
        "| " + " | ".join(_markdown_cell(row.cells()[name]) for name, _ in COLUMNS) + " |" for row in sort_rows(rows)
    ]
    return "\n".join([header, rule, *body])


def summary(rows: Sequence[StatusRow]) -> str:
    """One line: how many transactions per status, e.g. `4 sent, 2 refused`."""
    counts: dict[Status, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return ", ".join(f"{counts[status]} {status.value}" for status in Status if status in counts) or "nothing to do"


def rich_table(rows: Sequence[StatusRow], title: str | None = None) -> object:
    """A `rich.table.Table` of the rows, problems in red, for the command line."""
    from rich.table import Table

    styles = {
        Status.SENT: "green",
        Status.ALREADY_SENT: "cyan",
        Status.REFUSED: "red",
        Status.CHANGED: "magenta",
        Status.PENDING: "yellow",
        Status.FAILED: "bold red",
    }
    table = Table(title=title, show_lines=False)
    for name, header in COLUMNS:
        table.add_column(header, justify="right" if name in {"lines", "debit", "credit"} else "left", overflow="fold")
    for row in sort_rows(rows):
        cells = row.cells()
        table.add_row(*(cells[name] for name, _ in COLUMNS), style=styles.get(row.status))
    return table


_KEY_UNSAFE = re.compile(r"[^a-z0-9-]+")


def artifact_key(*parts: object) -> str:
    """A Prefect artifact key: lowercase letters, digits and dashes only."""
    text = "-".join(str(part) for part in parts).lower()
    return _KEY_UNSAFE.sub("-", text).strip("-")
