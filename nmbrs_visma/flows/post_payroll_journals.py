"""The `post-payroll-journals` flow: locked payroll runs from Nmbrs into the Visma.net general ledger, exactly once.

It reads like the process: load the mappings and accounts -> refresh tokens -> per administration
(flows/administrations.py): find its companies' runs to post -> extract their journals -> check eligibility
(every reason) -> split by period and build one transaction per (administration, payroll period) -> look up
and post -> release when configured -> record each completely booked run -> show status. Administrations run
side by side, at most `Settings.max_workers` creating at once; the settings are read once, when the run starts
(flows/run_settings.py), and handed down.

`backfill.py` runs the same stages for a range of periods; `commands.py` runs both from the command line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State
from pydantic import Field

from nmbrs_visma.blocks.mapping import load_mappings
from nmbrs_visma.flows.administrations import Administrations, Pass, preview
from nmbrs_visma.flows.connections import connect_accounts, select_companies
from nmbrs_visma.flows.run_settings import SettingsTaskRunner, run_settings
from nmbrs_visma.payroll_period import PERIOD_PATTERN, period_filter, today
from nmbrs_visma.posting_ledger import PostingLedger
from nmbrs_visma.results import PROBLEMS, StatusRow, has_problems, outcome_message, sort_rows, summary
from nmbrs_visma.settings import Settings
from nmbrs_visma.tasks.journal_file import file_period
from nmbrs_visma.tasks.report import PayloadFile, output_dir, publish_payloads, publish_results
from nmbrs_visma.tasks.runs import RunFilter

# The parameters as the Prefect UI's run form shows them: titles, patterns and examples here, descriptions from
# the flows' docstrings (Prefect reads their Args sections).

PeriodParameter = Annotated[
    str | None,
    Field(pattern=PERIOD_PATTERN, json_schema_extra={"title": "Period", "examples": ["2026-03", "2026/13"]}),
]
CompaniesParameter = Annotated[list[int] | None, Field(json_schema_extra={"title": "Companies", "examples": [[1001]]})]
DryRunParameter = Annotated[bool, Field(json_schema_extra={"title": "Dry run (send nothing)"})]
RepostParameter = Annotated[bool, Field(json_schema_extra={"title": "Repost changed journals"})]


RUN_TAGS = ("nmbrs-visma", "payroll")  # on every flow run (the deployments carry them too): for filters, alerts


def run_state(rows: list[StatusRow]) -> State:
    """The flow run's final state: FAILED when anything was refused, changed, pending or failed (a state an
    automation can alert on), COMPLETED otherwise (sent, already sent, skipped, waiting, nothing new); the message
    counts the rows and names the companies with a problem; the data is the rows."""
    message = outcome_message(rows)
    return Failed(message=message, data=rows) if has_problems(rows) else Completed(message=message, data=rows)


def pass_rows(state: State) -> list[StatusRow]:
    """The rows of a finished run of either flow (`return_state=True`), COMPLETED or FAILED; a run that failed
    before it had any (a crash, a bad parameter, the configuration) raises its error."""
    return listed_result(state, "the run", "rows")


def listed_result(state: State, run: str, items: str) -> list[Any]:
    """The list a finished flow run (`return_state=True`) carries as its data, COMPLETED or FAILED (this package's
    flows end FAILED with their rows kept); a run that failed before it had one raises its error."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, list):
        return result
    if isinstance(result, BaseException):
        raise result
    raise RuntimeError(state.message or f"{run} ended {state.type.value} without {items}")


def run_name(what: str) -> str:
    """A flow run's name: what it posts (a period, a run, a range, or every new locked run), the companies when
    a few are named, and a dry-run mark."""
    parameters = flow_run.parameters
    companies = parameters.get("companies") or []
    shown = ""
    if companies:
        listed = ", ".join(str(c) for c in companies[:3]) + (f" +{len(companies) - 3}" if len(companies) > 3 else "")
        shown = f" · compan{'y' if len(companies) == 1 else 'ies'} {listed}"
    return f"{what}{shown}" + (" · dry run" if parameters.get("dry_run") else "")


def post_run_name() -> str:
    parameters = flow_run.parameters
    if parameters.get("journal_file"):
        what = f"file {Path(parameters['journal_file']).name}"
    elif parameters.get("run"):
        what = f"run {parameters['run']}"
    else:
        what = parameters.get("period") or "new locked runs"
    return run_name(what)


def tag_run(*extra: str) -> None:
    """Add this project's tags (and `extra`, e.g. `dry-run`) to the current flow run, best effort: a run started
    outside a deployment (the CLI, a test) carries them too."""
    run_id = flow_run.get_id()
    if not run_id:
        return
    wanted = [tag for tag in (*RUN_TAGS, *extra) if tag not in flow_run.tags]
    if not wanted:
        return
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(run_id, tags=[*flow_run.tags, *wanted])
    except Exception as exc:  # a view: never fails a run
        get_run_logger().warning("could not tag the flow run: %s", exc)


# -- the flow -----------------------------------------------------------------------------------------------


def run_pass(
    run_filter: RunFilter,
    companies: Sequence[int] | None,
    *,
    journal_file: str | None,
    dry_run: bool,
    title: str,
    run_key: str,
    run_number: int = 1,
    repost_changed: bool = False,
    settings: Settings | None = None,
) -> list[StatusRow]:
    """The stages shared by both flows: configuration and connections once, then every administration's line.

    `settings`: the run's (default: those read when the flow run started, `run_settings()`); the worker count,
    the ledger's URL and lock time-out, the settle time and the output folder come from them alone."""
    log = get_run_logger()
    settings = settings or run_settings()
    path = Path(journal_file) if journal_file else None
    if path is not None and (not companies or len(set(companies)) != 1):
        raise ValueError("a journal file belongs to exactly one company: give exactly one company with it")
    selection = select_companies(load_mappings(), companies)
    ledger = PostingLedger.from_settings(settings, pool_size=2 * settings.max_workers + 4)
    connections = connect_accounts(selection, use_nmbrs=path is None)
    work = Pass(
        selection,
        connections,
        ledger,
        run_filter,
        workers=settings.max_workers,
        settle_seconds=settings.settle_seconds,
        document_wait=settings.document_wait,
        today=today(),
        post=not dry_run,
        repost_changed=repost_changed,
        journal_file=path,
        run_number=run_number,
        title=title,
    )
    if path is None:  # the runs booked before (skipped when run-driven) and the period types they record
        work.completed = ledger.completed_runs(selection.mappings)
    administrations = Administrations(work)
    try:
        administrations.run()
    finally:
        connections.close()
    rows = administrations.rows
    files: list[PayloadFile] = []
    if dry_run:
        preview_rows, files = preview(administrations.postings, ledger, output_dir(settings.output_dir))
        rows = rows + preview_rows
    rows = sort_rows([*selection.rows, *rows])
    from nmbrs_visma.outcomes import record_pass  # the latest outcome of each run, for `status` (never fails a run)

    record_pass(ledger, rows, work, dry_run=dry_run)
    publish_results(rows, title=title, run_key=run_key, dry_run=dry_run, published=administrations.published)
    if dry_run:
        publish_payloads(files, title=title, run_key=run_key)
    log.info("%s: %s", title, summary(rows))
    for row in rows:
        if row.status in PROBLEMS:
            log.warning("company %s %s %s: %s: %s", row.company, row.administration, row.period, row.status, row.reason)
    return rows


@flow(
    name="post-payroll-journals",
    flow_run_name=post_run_name,
    task_runner=SettingsTaskRunner(),
    description="Post every locked Nmbrs payroll run not yet booked (or those of a period or run) to the Visma.net "
    "general ledger, exactly once.",
)
def post_payroll_journals(
    period: PeriodParameter = None,
    companies: CompaniesParameter = None,
    run: Annotated[str | None, Field(json_schema_extra={"title": "Payroll run", "examples": ["NM2603R1"]})] = None,
    journal_file: Annotated[str | None, Field(json_schema_extra={"title": "Journal file (path)"})] = None,
    dry_run: DryRunParameter = False,
    run_number: Annotated[int, Field(ge=1, json_schema_extra={"title": "Journal file's run number"})] = 1,
    repost_changed: RepostParameter = False,
) -> State:
    """Post every locked payroll run of the mapped companies that is not booked yet (this year's, and last
    year's until a run of this year is booked); unlocked runs are reported as waiting.

    Args:
        period: Only the runs of this period: a month YYYY-MM (for a 4-weekly or weekly company, its periods
            ending in that month), a payroll period YYYY/NN (for example 2026/13), or previous-month. Empty:
            every locked run not booked yet.
        companies: Nmbrs company numbers. Empty: every mapped company.
        run: Only this payroll run, by its reference (for example NM2603R1) or its Nmbrs id.
        journal_file: An Nmbrs journal XML file on the worker to post instead of reading the API, with exactly
            one company; its run's period is its latest period, and a period given must agree.
        dry_run: Build and show the exact payloads; send nothing.
        run_number: The journal file's run number (a second run of the same period is 2).
        repost_changed: Reverse a journal sent before whose content changed since, and post the new one
            (otherwise it is reported as changed).
    """
    settings = run_settings()  # read when the run started; a bad value ends the run here, naming the variable
    tag_run(*(["dry-run"] if dry_run else []))
    if journal_file and companies:
        run_filter = RunFilter(period=file_period(Path(journal_file), companies[0], period))
    else:
        run_filter = RunFilter(period=period_filter(period) if period else None, run=run or None)
    label = "" if run_filter.run_driven else f" {run_filter}"
    rows = run_pass(
        run_filter,
        companies,
        journal_file=journal_file,
        dry_run=dry_run,
        title=f"Payroll journals{label}",
        run_key="payroll-journals" + ("-" + str(run_filter).replace("/", "-") if label else ""),
        run_number=run_number,
        repost_changed=repost_changed,
        settings=settings,
    )
    return run_state(rows)
