"""The command-line side of the flows: `post`, `backfill`, `status` (and `connect`), each returning an exit status.

`post` and `backfill` run the same flows as the deployments, now, in this process (against the Prefect API
the profile names, or a temporary local one), with the administrations done / total on stderr while they run
(on a terminal). They print the result rows (`--format table|json|csv`, see `nmbrs_visma.output`); the exit
status is 1 when anything was refused, changed, pending or failed (the rows say why), 2 when the command itself
could not run, with one line on stderr saying why (`NMBRS_VISMA_DEBUG=1` adds the traceback of an unexpected
error).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nmbrs_visma.output import (
    OutputFormat,
    debug_enabled,
    fail,
    fail_with,
    note,
    print_rows,
    progress_display,
    stderr_console,
)
from nmbrs_visma.results import (
    STATUS_STYLES,
    StatusRow,
    has_problems,
    sort_rows,
    status_layouts,
    status_record,
    summary,
)

if TYPE_CHECKING:
    from nmbrs_visma.outcomes import StatusLine

# -- errors: one line, no Python type names (printed by `nmbrs_visma.output.fail`, as every command's) -----


def _expected() -> tuple[type[BaseException], ...]:
    """The errors whose own message says what is wrong (a value, a file, the ledger, an account, an API)."""
    from nmbrs_visma.clients.errors import ApiError
    from nmbrs_visma.config import ConfigError
    from nmbrs_visma.posting_ledger import LedgerUnavailable, LockTimeout
    from nmbrs_visma.tasks.reference import ReferenceUnavailable
    from nmbrs_visma.tasks.tokens import AccountNotAuthorised

    return (
        ValueError,
        OSError,
        LedgerUnavailable,
        LockTimeout,
        ConfigError,
        AccountNotAuthorised,
        ReferenceUnavailable,
        ApiError,
    )


_fail = fail  # `error: <message>` on stderr, one line; exit status 2


def _error(exc: BaseException) -> int:
    """An exception as one line (`fail_with`): its message when it is one of the expected kinds, else the
    message and how to see the traceback (printed too when NMBRS_VISMA_DEBUG=1)."""
    return fail_with(exc, expected=_expected())


class _WithoutTraceback(logging.Formatter):
    """A console log formatter that leaves an exception's traceback out (the run's logs in Prefect keep it)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None, "stack_info": None})
        return self.inner.format(record)


@contextlib.contextmanager
def _one_line_logs() -> Iterator[None]:
    """While a flow runs in this process, Prefect's console logs print a failure's message without its traceback
    (the command's own error line says what went wrong; the Prefect UI and NMBRS_VISMA_DEBUG=1 show the rest)."""
    if debug_enabled():
        yield
        return
    from prefect.logging.handlers import APILogHandler

    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    handlers = {
        handler
        for logger in loggers
        for handler in getattr(logger, "handlers", [])
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, APILogHandler)
    }
    kept = {handler: handler.formatter for handler in handlers}
    for handler, formatter in kept.items():
        handler.setFormatter(_WithoutTraceback(formatter or logging.Formatter()))
    try:
        yield
    finally:
        for handler, formatter in kept.items():
            handler.setFormatter(formatter)


def _interrupted() -> int:
    stderr_console().print("interrupted: a run stopped mid-way is looked up before anything is posted again")
    return 130


# -- printing ------------------------------------------------------------------------------------------------


def _report(rows: Sequence[StatusRow], title: str, output: OutputFormat = "table") -> int:
    """The rows, the summary line, and where a dry run's payloads are; the exit status of the rows."""
    ordered = sort_rows(rows)
    print_rows(
        [status_record(row) for row in ordered],
        status_layouts(ordered),
        output=output,
        title=title,
        footer=summary(ordered),
        row_style=_style,
    )
    folders = sorted({str(Path(row.payload_file).parent) for row in ordered if row.payload_file})
    for folder in folders:
        note(f"Payload files (nothing was sent): {folder}", output)
    return 1 if has_problems(ordered) else 0


def _style(record: Mapping[str, Any]) -> str | None:
    return STATUS_STYLES.get(record["status"])


# -- the commands ----------------------------------------------------------------------------------------------


def run_post(
    *,
    period: str | None,
    companies: Sequence[int] | None,
    journal_file: Path | None,
    dry_run: bool,
    run_number: int = 1,
    repost_changed: bool = False,
    payroll_run: str | None = None,
    output: OutputFormat = "table",
) -> int:
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
        from nmbrs_visma.flows.post_payroll_journals import pass_rows, post_payroll_journals

        with _one_line_logs(), progress_display("Posting", enabled=output == "table"):
            state = post_payroll_journals(
                period=period,
                companies=list(companies) if companies else None,
                run=payroll_run,
                journal_file=str(journal_file) if journal_file else None,
                dry_run=dry_run,
                run_number=run_number,
                repost_changed=repost_changed,
                return_state=True,
            )
        rows = pass_rows(state)
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as exc:  # one clear line, not a traceback
        return _error(exc)
    return _report(rows, f"Payroll journals {label}" + (" (dry run)" if dry_run else ""), output)


def run_backfill(
    *,
    start: str,
    end: str,
    companies: Sequence[int] | None,
    dry_run: bool,
    repost_changed: bool = False,
    output: OutputFormat = "table",
) -> int:
    from nmbrs_visma.payroll_period import range_filter

    try:
        try:
            range_filter(start, end)
        except ValueError as exc:
            return _fail(str(exc))
        from nmbrs_visma.flows.backfill import backfill_correction_periods
        from nmbrs_visma.flows.post_payroll_journals import pass_rows

        with _one_line_logs(), progress_display("Backfilling", enabled=output == "table"):
            state = backfill_correction_periods(
                start=start,
                end=end,
                companies=list(companies) if companies else None,
                dry_run=dry_run,
                repost_changed=repost_changed,
                return_state=True,
            )
        rows = pass_rows(state)
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as exc:
        return _error(exc)
    return _report(rows, f"Backfill {start}..{end}" + (" (dry run)" if dry_run else ""), output)


def status_lines(
    period: str | None = None,
    companies: Sequence[int] | None = None,
    *,
    booked: str | None = None,
    payroll_run: str | None = None,
) -> list[StatusLine]:
    """The latest outcome of every run recorded in the posting ledger (see `nmbrs_visma.outcomes`): `period`
    the runs' payroll period (YYYY-MM: the runs of that month, also when booked in another financial period;
    YYYY/NN; previous-month), `booked` the financial period YYYYPP booked in, `payroll_run` a run reference."""
    from nmbrs_visma.outcomes import StatusQuery
    from nmbrs_visma.outcomes import status_lines as read

    return read(StatusQuery.parse(period=period, booked=booked, run=payroll_run, companies=companies))


def status_rows(period: str | None = None, companies: Sequence[int] | None = None) -> list[StatusRow]:
    """`status_lines`' rows."""
    return [line.row for line in status_lines(period, companies)]


def run_status(
    *,
    period: str | None,
    companies: Sequence[int] | None,
    booked: str | None = None,
    payroll_run: str | None = None,
    output: OutputFormat = "table",
) -> int:
    from nmbrs_visma.outcomes import StatusQuery

    try:
        query = StatusQuery.parse(period=period, booked=booked, run=payroll_run, companies=companies)
    except ValueError as exc:
        return _fail(str(exc))
    try:
        lines = status_lines(period, companies, booked=booked, payroll_run=payroll_run)
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as exc:
        return _error(exc)
    where = f" ({query})" if str(query) else ""
    if not lines and output == "table":
        note(f"Nothing recorded yet{where}.")
        return 0
    records = [
        {**status_record(line.row), "recorded_at": line.recorded_at, "flow_run_id": line.flow_run_id} for line in lines
    ]
    rows = [line.row for line in lines]
    print_rows(
        records,
        status_layouts(rows),
        output=output,
        title=f"Latest outcome of each run{where}",
        footer=summary(rows),
        row_style=_style,
    )
    return 1 if has_problems(rows) else 0


def run_connect(*, system: str, account: str, port: int) -> int:
    from nmbrs_visma.flows.connect import run_connect as connect

    return connect(system=system, account=account, port=port)
