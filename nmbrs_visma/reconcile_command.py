"""`nmbrs-visma reconcile`: the reconciliation flow run now, in this process, and its rows on the command line.

A table that fits the console (company, run, period, batch, account and side, subaccount, expected, found,
difference, verdict; amounts and numbers never split), the reason of every transaction that differs below it,
or `--format json|csv` for scripts (every row with its reason, nothing else on stdout). Exit status: 0 when
everything agrees (skipped companies, such as a test company, are no alarm), 1 on any difference or anything
that could not be checked, 2 when the command could not run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nmbrs_visma.output import Column, OutputFormat, print_rows, stdout_console

if TYPE_CHECKING:
    from nmbrs_visma.journals.reconcile import ReconcileRow, TransactionCheck

SIDES = {"debit": "Dr", "credit": "Cr"}
STYLES = {
    "agrees": "green",
    "skipped": "dim",
    "unchecked": "yellow",
    "not sent": "red",
    "changed": "magenta",
}


def record(row: ReconcileRow) -> dict[str, Any]:
    """One row as a script reads it (stable keys; amounts exact, as strings with two decimals in JSON)."""
    return {
        "company": row.company,
        "company_name": row.company_name,
        "run": row.reference,
        "administration": row.administration,
        "period": row.period,
        "batch": row.batch_number,
        "account": row.account,
        "subaccount": row.subaccount,
        "side": row.side,
        "expected": row.expected,
        "found": row.found,
        "difference": row.difference,
        "verdict": row.verdict,
        "reason": row.reason,
    }


def _account(record_: dict[str, Any]) -> str:
    side = SIDES.get(record_["side"], "")
    return f"{record_['account']} {side}".strip()


def _amount(name: str) -> Any:
    return lambda record_: f"{record_[name]:.2f}"


def layouts() -> list[list[Column]]:
    """Widest first: with company names and reasons; with reasons; the numbers only (reasons then follow the
    table, one line per transaction)."""
    numbers = [
        Column("company", "Company", "code"),
        Column("run", "Run", "code"),
        Column("period", "Period", "code"),
        Column("batch", "Batch", "code"),
        Column("account", "Account", "code", show=_account),
        Column("subaccount", "Subaccount", "code"),
        Column("expected", "Expected", "amount", show=_amount("expected")),
        Column("found", "Found", "amount", show=_amount("found")),
        Column("difference", "Difference", "amount", show=_amount("difference")),
    ]
    verdict = Column("verdict", "Verdict", "text", min_width=7)
    reason = Column("reason", "Reason", "text", min_width=20)
    name = Column("company_name", "Name", "text", min_width=10)
    return [
        [numbers[0], name, *numbers[1:], verdict, reason],
        [*numbers, verdict, reason],
        [*numbers, verdict],
    ]


def _style(record_: dict[str, Any]) -> str | None:
    verdict = str(getattr(record_["verdict"], "value", record_["verdict"]))
    return STYLES.get(verdict, "bold red")


def reasons(checks: Sequence[TransactionCheck]) -> list[str]:
    """One line per transaction that does not agree: who it is and why."""
    from nmbrs_visma.journals.reconcile import Verdict

    lines = []
    for check in checks:
        if check.verdict is Verdict.AGREES:
            continue
        who = f"company {check.company} {check.company_name}".strip()
        where = ", ".join(
            part
            for part in (
                who,
                f"run {check.reference}" if check.reference else "",
                f"period {check.period}" if check.period else "",
                f"batch {check.batch_number}" if check.batch_number else "",
            )
            if part
        )
        lines.append(f"{where}: {check.verdict.value}: {check.reason}")
    return lines


def run_reconcile(
    *,
    period: str | None,
    companies: Sequence[int] | None,
    payroll_run: str | None,
    output: OutputFormat = "table",
    all_lines: bool = False,
) -> int:
    """Reconcile now (the deployment's flow, in this process); print the rows; 0 / 1 / 2 as the module says."""
    from nmbrs_visma.commands import _error, _fail
    from nmbrs_visma.flows.reconcile import checks_of, reconcile_label, reconcile_payroll_journals
    from nmbrs_visma.journals.reconcile import rows_of, summary

    try:
        label = reconcile_label(period, payroll_run)  # a malformed period is refused before any work
    except ValueError as exc:
        return _fail(str(exc))
    try:
        state = reconcile_payroll_journals(
            period=period,
            run=payroll_run,
            companies=list(companies) if companies else None,
            return_state=True,
        )
        checks = checks_of(state)
    except Exception as exc:  # one line, not a traceback
        return _error(exc)
    rows = rows_of(checks, all_lines=all_lines)
    print_rows(
        [record(row) for row in rows],
        layouts(),
        output=output,
        title=f"Reconciliation {label}",
        footer=summary(checks),
        row_style=_style,
    )
    if output == "table":  # the reasons under the table, each wrapped at words (an amount is one word)
        console = stdout_console()
        for line in reasons(checks):
            console.print(line, markup=False)
    return 1 if any(check.differs for check in checks) else 0
