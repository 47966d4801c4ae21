"""The command-line side of the flows: `post`, `backfill`, `status` (and `connect`), each returning an exit status.

`post` and `backfill` run the same flows as the deployments, now, in this process (against the Prefect API
the profile names, or a temporary local one). They print the result table; the exit status is 1 when anything
was refused or failed (the table says why), 2 when the command itself could not run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from nmbrs_visma.results import StatusRow, has_problems, rich_table, summary


def _console() -> Console:
    """A console wide enough for the reasons column, also when the output is piped to a file."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=200)


def _report(rows: Sequence[StatusRow], title: str) -> int:
    console = _console()
    console.print(rich_table(rows, title=title))
    console.print(summary(rows))
    return 1 if has_problems(rows) else 0


def _fail(message: str) -> int:
    _console().print(f"[red]error:[/] {message}")
    return 2


def run_post(
    *,
    period: str | None,
    companies: Sequence[int] | None,
    journal_file: Path | None,
    dry_run: bool,
    run_number: int = 1,
    repost_changed: bool = False,
    payroll_run: str | None = None,
) -> int:
    from nmbrs_visma.flows.post_payroll_journals import post_payroll_journals
    from nmbrs_visma.journal_file import JournalFileError
    from nmbrs_visma.payroll_period import period_filter
    from nmbrs_visma.tasks.journal_file import file_period
    from nmbrs_visma.tasks.runs import RunFilter

    try:
        if run_number < 1:
            return _fail(f"--run {run_number}: a run number is 1 or more")
        if journal_file is not None:
            if not companies or len(set(companies)) != 1:
                return _fail("--journal-file needs exactly one --company (the company the file belongs to)")
            if not journal_file.is_file():
                return _fail(f"journal file {journal_file} does not exist")
            try:  # the file names its own period; a --period that disagrees is refused before any run
                label = str(file_period(journal_file, companies[0], period))
            except JournalFileError as exc:
                return _fail(str(exc))
        else:
            if run_number != 1:
                return _fail("--run names the run of a --journal-file; runs read from Nmbrs carry their own number")
            try:
                label = str(RunFilter(period_filter(period) if period else None, payroll_run))
            except ValueError as exc:
                return _fail(str(exc))
        rows = post_payroll_journals(
            period=period,
            companies=list(companies) if companies else None,
            run=payroll_run,
            journal_file=str(journal_file) if journal_file else None,
            dry_run=dry_run,
            run_number=run_number,
            repost_changed=repost_changed,
        )
    except Exception as exc:  # a clear line, not a traceback
        return _fail(f"{type(exc).__name__}: {exc}")
    return _report(rows, f"Payroll journals {label}" + (" (dry run)" if dry_run else ""))


def run_backfill(
    *, start: str, end: str, companies: Sequence[int] | None, dry_run: bool, repost_changed: bool = False
) -> int:
    from nmbrs_visma.flows.backfill import backfill_correction_periods
    from nmbrs_visma.payroll_period import range_filter

    try:
        range_filter(start, end)
        rows = backfill_correction_periods(
            start=start,
            end=end,
            companies=list(companies) if companies else None,
            dry_run=dry_run,
            repost_changed=repost_changed,
        )
    except Exception as exc:
        return _fail(f"{type(exc).__name__}: {exc}")
    return _report(rows, f"Backfill {start}..{end}" + (" (dry run)" if dry_run else ""))


def status_rows(period: str | None = None, companies: Sequence[int] | None = None) -> list[StatusRow]:
    """What the posting ledger holds, as status rows (period: YYYY-MM, the financial period booked)."""
    from nmbrs_visma.payroll_period import parse_period
    from nmbrs_visma.posting_ledger import PostingLedger, PostingState
    from nmbrs_visma.results import Status

    period_id = parse_period(period).period_id if period else None
    wanted = set(companies or ())
    rows = []
    for entry in PostingLedger().all_entries():
        if (period_id and entry.period_id != period_id) or (wanted and entry.company not in wanted):
            continue
        what = "reversal of batch " + entry.reverses if entry.reverses else ""
        if entry.state is PostingState.SENT:
            status, reason = Status.SENT, ("released" if entry.released else entry.message)
        elif entry.state is PostingState.REVERSED:
            status, reason = Status.SENT, entry.message
        elif entry.state is PostingState.INTENT:
            status, reason = Status.PENDING, "outcome unknown (answer lost); the next run looks it up before posting"
        elif entry.state is PostingState.LOST:
            status, reason = Status.FAILED, entry.message
        else:
            status, reason = Status.FAILED, entry.message
        reason = "; ".join(part for part in (what, reason) if part)
        rows.append(
            StatusRow(
                company=entry.company,
                administration=entry.administration,
                period=entry.period_id,
                reference=entry.reference,
                lines=entry.lines,
                debit=entry.debit,
                credit=entry.credit,
                batch_number=entry.batch_number,
                status=status,
                reason=reason,
            )
        )
    return rows


def run_status(*, period: str | None, companies: Sequence[int] | None) -> int:
    try:
        rows = status_rows(period, companies)
    except Exception as exc:
        return _fail(f"{type(exc).__name__}: {exc}")
    if not rows:
        _console().print("Nothing recorded yet" + (f" for {period}" if period else "") + ".")
        return 0
    return _report(rows, "Posted journal transactions" + (f" in {period}" if period else ""))


def run_connect(*, system: str, account: str, port: int) -> int:
    from nmbrs_visma.flows.connect import run_connect as connect

    return connect(system=system, account=account, port=port)
