"""The `backfill-correction-periods` flow: post what is missing for a range of payroll periods.

The same flow as `post-payroll-journals` with a period range as its filter (so it is idempotent: a key
recorded or found in Visma.net is never sent again), in one flow run: tokens, clients and Visma.net reference
data are set up once for the whole range, and each administration posts its runs of the range in order. Its
settings are read once, when the run starts, as for `post-payroll-journals` (flows/run_settings.py).
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from prefect.runtime import flow_run
from prefect.states import State
from pydantic import Field

from nmbrs_visma.flows.post_payroll_journals import (
    CompaniesParameter,
    DryRunParameter,
    RepostParameter,
    run_name,
    run_pass,
    run_state,
    tag_run,
)
from nmbrs_visma.flows.run_settings import SettingsTaskRunner, run_settings
from nmbrs_visma.payroll_period import PERIOD_PATTERN, range_filter
from nmbrs_visma.tasks.runs import RunFilter

RANGE_END = PERIOD_PATTERN.replace("|previous-month", "")  # a range is given in months or in payroll periods


def backfill_run_name() -> str:
    return run_name(f"backfill {flow_run.parameters.get('start')}..{flow_run.parameters.get('end')}")


@flow(
    name="backfill-correction-periods",
    flow_run_name=backfill_run_name,
    task_runner=SettingsTaskRunner(),  # sized by the run's settings, read when it starts
    description="Post the payroll journals still missing for a range of periods (idempotent).",
)
def backfill_correction_periods(
    start: Annotated[
        str, Field(pattern=RANGE_END, json_schema_extra={"title": "From period", "examples": ["2026-01"]})
    ],
    end: Annotated[str, Field(pattern=RANGE_END, json_schema_extra={"title": "To period", "examples": ["2026-06"]})],
    companies: CompaniesParameter = None,
    dry_run: DryRunParameter = False,
    repost_changed: RepostParameter = False,
) -> State:
    """Post every payroll run from `start` to `end` inclusive; what was sent before is reported "already sent"
    and not sent again, a journal whose content changed since is reported `changed` (or, with
    `repost_changed`, reversed and posted again).

    Args:
        start: The first period: a month YYYY-MM, or a payroll period YYYY/NN.
        end: The last period, of the same form as the first.
        companies: Nmbrs company numbers. Empty: every mapped company.
        dry_run: Build and show the exact payloads; send nothing.
        repost_changed: Reverse a journal sent before whose content changed since, and post the new one.
    """
    settings = run_settings()  # read when the run started; a bad value ends the run here, naming the variable
    tag_run("backfill", *(["dry-run"] if dry_run else []))
    run_filter = RunFilter(period=range_filter(start, end))
    rows = run_pass(
        run_filter,
        companies,
        journal_file=None,
        dry_run=dry_run,
        title=f"Backfill {run_filter.period}",
        run_key=f"backfill-{start}-{end}".replace("/", "-"),
        repost_changed=repost_changed,
        settings=settings,
    )
    return run_state(rows)
