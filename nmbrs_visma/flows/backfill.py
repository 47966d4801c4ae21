"""The `backfill-correction-periods` flow: post what is missing for a range of payroll periods.

The same stages and posting path as `post-payroll-journals` (so it is idempotent: a key recorded or found in
Visma.net is never sent again), in one flow run: tokens, clients and Visma.net reference data are set up once
for the whole range, then each period runs in turn. A fan-out over `run_deployment(..., idempotency_key=...)`
would buy parallel periods at the price of one flow run and one set of reference reads per period; periods
of one company must be posted in order anyway, so the direct loop is the better trade.
"""

from __future__ import annotations

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from nmbrs_visma.flows.post_payroll_journals import run_periods, task_threads
from nmbrs_visma.payroll_period import period_range
from nmbrs_visma.results import StatusRow


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
    """Post every payroll period from `start` to `end` (YYYY-MM, inclusive) for `companies` (default: all
    mapped); what was sent before is reported "already sent" and not sent again, a journal whose content
    changed since is reported `changed` (or, with `repost_changed`, reversed and posted again)."""
    periods = period_range(start, end)
    return run_periods(
        periods,
        companies,
        journal_file=None,
        dry_run=dry_run,
        title=f"Backfill {periods[0]}..{periods[-1]}",
        run_key=f"backfill-{periods[0]}-{periods[-1]}",
        repost_changed=repost_changed,
    )
