"""The `backfill-correction-periods` flow: post what is missing for a range of payroll periods.

The same flow as `post-payroll-journals` with a period range as its filter (so it is idempotent: a key
recorded or found in Visma.net is never sent again), in one flow run: tokens, clients and Visma.net reference
data are set up once for the whole range, and each administration posts its runs of the range in order.
"""

from __future__ import annotations

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from nmbrs_visma.flows.post_payroll_journals import run_pass, task_threads
from nmbrs_visma.payroll_period import range_filter
from nmbrs_visma.results import StatusRow
from nmbrs_visma.tasks.runs import RunFilter


@flow(
    name="backfill-correction-periods",
    task_runner=ThreadPoolTaskRunner(max_workers=task_threads()),
    description="Post the payroll journals still missing for a range of periods (idempotent).",
)
def backfill_correction_periods(
    start: str,
    end: str,
    companies: list[int] | None = None,
    dry_run: bool = False,
    repost_changed: bool = False,
) -> list[StatusRow]:
    """Post every payroll run from `start` to `end` inclusive (both `YYYY-MM` months, or both payroll periods
    `YYYY/NN`) for `companies` (default: all mapped); what was sent before is reported "already sent" and not
    sent again, a journal whose content changed since is reported `changed` (or, with `repost_changed`,
    reversed and posted again)."""
    run_filter = RunFilter(period=range_filter(start, end))
    return run_pass(
        run_filter,
        companies,
        journal_file=None,
        dry_run=dry_run,
        title=f"Backfill {run_filter.period}",
        run_key=f"backfill-{start}-{end}".replace("/", "-"),
        repost_changed=repost_changed,
    )
