"""The `post-payroll-journals` flow: a payroll month from Nmbrs into the Visma.net general ledger, exactly once.

It reads like the process: load the mappings and accounts -> refresh tokens -> per period, per company: read
its Visma.net tenant's reference data (once per run) -> find the run(s) of the period in Nmbrs and extract
their journals -> check eligibility (every reason) -> split by period and build one transaction per
(administration, period) -> post per administration -> release when configured -> record and show status.
The per-company steps run as a pipeline (flows/period.py): reads go ahead, and each administration posts as
soon as its companies are planned, each within `max_workers` tasks at once.

`backfill.py` runs the same stages for a range of periods; `commands.py` runs both from the command line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from nmbrs_visma.blocks.mapping import load_mappings
from nmbrs_visma.flows.connections import connect_accounts, select_companies
from nmbrs_visma.flows.period import PeriodRun, StatusBoard, preview
from nmbrs_visma.payroll_period import PayrollPeriod, resolve_period
from nmbrs_visma.posting_ledger import PostingLedger
from nmbrs_visma.results import PROBLEMS, StatusRow, sort_rows, summary
from nmbrs_visma.tasks.journal_file import file_period
from nmbrs_visma.tasks.report import PayloadFile, output_dir, publish_payloads, publish_results

MAX_WORKERS_ENV = "NMBRS_VISMA_MAX_WORKERS"


def max_workers() -> int:
    """Administrations posted at once, and as many reads (companies, tenants) ahead of them; Visma.net rate
    limits are per tenant."""
    return max(1, int(os.environ.get(MAX_WORKERS_ENV, "8")))


def task_threads() -> int:
    """The flow's task runner threads: the `post` lane at its limit, twice `max_workers` (flows/period.py; the
    `read` and `look` lanes have threads of their own)."""
    return 2 * max_workers()


# -- the flow -----------------------------------------------------------------------------------------------


def run_periods(
    periods: Sequence[PayrollPeriod],
    companies: Sequence[int] | None,
    *,
    journal_file: str | None,
    dry_run: bool,
    title: str,
    run_key: str,
    run_number: int = 1,
    repost_changed: bool = False,
) -> list[StatusRow]:
    """The stages shared by both flows: configuration and connections once, then each period in turn."""
    log = get_run_logger()
    path = Path(journal_file) if journal_file else None
    if path is not None and (not companies or len(set(companies)) != 1):
        raise ValueError("a journal file belongs to exactly one company: give exactly one company with it")
    if path is not None and len(periods) != 1:
        raise ValueError("a journal file is posted for one period, not a range")
    selection = select_companies(load_mappings(), companies, periods[0])
    ledger = PostingLedger(pool_size=2 * max_workers() + 4)
    connections = connect_accounts(selection, use_nmbrs=path is None)
    rows: list[StatusRow] = []
    files: list[PayloadFile] = []
    payload_dir = output_dir() if dry_run else None
    board = None if dry_run else StatusBoard(title)  # a dry run's rows are known only after the preview
    try:
        for number, period in enumerate(periods, start=1):
            run = PeriodRun(
                selection,
                connections,
                period,
                ledger=ledger,
                workers=max_workers(),
                journal_file=path,
                run_number=run_number,
                post=not dry_run,
                board=board,
                last_period=number == len(periods),
                repost_changed=repost_changed,
            )
            run.run()
            rows.extend(run.rows)
            if dry_run:
                preview_rows, preview_files = preview(run.postings, ledger, payload_dir or output_dir())
                rows.extend(preview_rows)
                files.extend(preview_files)
    finally:
        connections.close()
        if board is not None:
            board.close()  # the status artifacts still queued
    rows = sort_rows([*selection.rows, *rows])
    publish_results(rows, title=title, run_key=run_key, dry_run=dry_run, published=board.published if board else set())
    if dry_run:
        publish_payloads(files, title=title, run_key=run_key)
    log.info("%s: %s", title, summary(rows))
    for row in rows:
        if row.status in PROBLEMS:
            log.warning("company %s %s %s: %s: %s", row.company, row.administration, row.period, row.status, row.reason)
    return rows


@flow(
    name="post-payroll-journals",
    task_runner=ThreadPoolTaskRunner(max_workers=task_threads()),
    description="Post one payroll month's journals from Nmbrs to the Visma.net general ledger, exactly once.",
)
def post_payroll_journals(
    period: str | None = None,
    companies: list[int] | None = None,
    journal_file: str | None = None,
    dry_run: bool = False,
    run_number: int = 1,
    repost_changed: bool = False,
) -> list[StatusRow]:
    """Post the payroll journals of `period` (YYYY-MM; default the previous month in Europe/Amsterdam).

    companies: Nmbrs company numbers (default: every mapped company). journal_file: an Nmbrs journal XML file
    to post instead of reading the API (with exactly one company): its run's period is its latest period, and
    `period`, when given, must agree. run_number: the file's run number (default 1; a second run of the same
    period is 2). dry_run: build and show the exact payloads, send nothing. repost_changed: a journal sent
    before whose content changed is reversed and posted again (otherwise it is reported `changed`).
    """
    if journal_file and companies:
        payroll_period = file_period(Path(journal_file), companies[0], period)
    else:
        payroll_period = resolve_period(period)
    return run_periods(
        [payroll_period],
        companies,
        journal_file=journal_file,
        dry_run=dry_run,
        title=f"Payroll journals {payroll_period}",
        run_key=f"payroll-journals-{payroll_period}",
        run_number=run_number,
        repost_changed=repost_changed,
    )
