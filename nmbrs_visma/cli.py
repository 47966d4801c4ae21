"""The `nmbrs-visma` command line: sandbox, demo, post, backfill, config, connect, status, reconcile, alerts.

Each command is a thin shell over a function elsewhere; imports are lazy so `--help` is instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

from cyclopts import App, Parameter

app = App(
    name="nmbrs-visma",
    help="Post Visma Nmbrs payroll journals to the Visma.net ERP general ledger, exactly once.",
)
config_app = App(name="config", help="Accounts and administration mappings as code (Prefect blocks).")
app.command(config_app)
alerts_app = App(
    name="alerts",
    help="Notify someone (Slack, Teams, e-mail, a webhook: a Prefect notification block) when a run ends "
    "FAILED or CRASHED.",
)
app.command(alerts_app)

Companies = Annotated[list[int] | None, Parameter(name=["--company", "-c"], help="Nmbrs company number (repeatable)")]
Format = Annotated[
    Literal["table", "json", "csv"],
    Parameter(name="--format", help="table, or json / csv for scripts (then nothing else on stdout)"),
]


@app.command
def sandbox(
    *,
    visma_port: int = 8701,
    nmbrs_port: int = 8702,
    host: str = "127.0.0.1",
    write_config: Annotated[
        Path | None,
        Parameter(help="write a configuration of the sandbox to this YAML file, for `config apply`"),
    ] = None,
) -> None:
    """Serve the Visma.net ERP and Nmbrs emulators, seeded with the demo data, until Ctrl-C."""
    from nmbrs_visma.sandbox.serve import serve_forever

    sys.exit(serve_forever(visma_port=visma_port, nmbrs_port=nmbrs_port, host=host, write_config=write_config))


@app.command
def demo() -> None:
    """Start both emulators, configure the demo, post the demo month twice (nothing is sent twice)."""
    from nmbrs_visma.demo import run_demo

    sys.exit(run_demo())


@app.command
def post(
    *,
    period: Annotated[
        str | None,
        Parameter(help="only this period: YYYY-MM, a payroll period YYYY/NN (2026/13), or previous-month"),
    ] = None,
    company: Companies = None,
    payroll_run: Annotated[str | None, Parameter(help="only this run: its Nmbrs id or reference (NM2603R1)")] = None,
    journal_file: Annotated[Path | None, Parameter(help="an Nmbrs journal XML file (with one --company)")] = None,
    run: Annotated[int, Parameter(help="the journal file's run number (a second run of a period is 2)")] = 1,
    dry_run: bool = False,
    repost_changed: Annotated[
        bool, Parameter(help="reverse a sent journal whose content changed, and post the new one")
    ] = False,
    output: Format = "table",
) -> None:
    """Post every locked payroll run not booked yet, or those of --period / --payroll-run (the deployments' flow)."""
    from nmbrs_visma.commands import run_post

    sys.exit(
        run_post(
            period=period,
            companies=company,
            payroll_run=payroll_run,
            journal_file=journal_file,
            dry_run=dry_run,
            run_number=run,
            repost_changed=repost_changed,
            output=output,
        )
    )


@app.command
def backfill(
    *,
    start: Annotated[str, Parameter(name="--from", help="first period: YYYY-MM, or a payroll period YYYY/NN")],
    end: Annotated[str, Parameter(name="--to", help="last period, of the same form")],
    company: Companies = None,
    dry_run: bool = False,
    repost_changed: Annotated[
        bool, Parameter(help="reverse a sent journal whose content changed, and post the new one")
    ] = False,
    output: Format = "table",
) -> None:
    """Post what is missing for a range of periods (idempotent: sent periods are skipped)."""
    from nmbrs_visma.commands import run_backfill

    sys.exit(
        run_backfill(
            start=start, end=end, companies=company, dry_run=dry_run, repost_changed=repost_changed, output=output
        )
    )


@app.command
def connect(system: Literal["visma", "nmbrs"], *, account: str = "default", port: int = 8765) -> None:
    """Authorise an account interactively (fresh login, PKCE) and save its tokens to the block."""
    from nmbrs_visma.commands import run_connect

    sys.exit(run_connect(system=system, account=account, port=port))


@app.command
def status(
    *,
    period: Annotated[
        str | None,
        Parameter(help="the runs of this payroll period, wherever booked: YYYY-MM, YYYY/NN or previous-month"),
    ] = None,
    booked: Annotated[str | None, Parameter(help="what is booked in this financial period: YYYYPP (202603)")] = None,
    payroll_run: Annotated[str | None, Parameter(help="only this run, by its reference (NM2603R1)")] = None,
    company: Companies = None,
    output: Format = "table",
) -> None:
    """Print the latest outcome of every run: sent, refused, failed, waiting, with batch numbers and reasons.
    The accounts and their refresh tokens' days left: `nmbrs-visma accounts`."""
    from nmbrs_visma.commands import run_status

    sys.exit(run_status(period=period, companies=company, booked=booked, payroll_run=payroll_run, output=output))


@app.command
def accounts(*, output: Format = "table") -> None:
    """Print each Visma.net and Nmbrs account: its grant, its state (connected, needs connect, access token valid
    until, client credentials) and the days its refresh token has left; exit 1 when one needs `connect`."""
    from nmbrs_visma.accounts import run_accounts

    sys.exit(run_accounts(output))


@app.command
def reconcile(
    *,
    period: Annotated[
        str | None,
        Parameter(help="the runs of this period: YYYY-MM, YYYY/NN or previous-month (the default without a run)"),
    ] = None,
    payroll_run: Annotated[str | None, Parameter(help="only this run: its Nmbrs id or reference (NM2603R1)")] = None,
    company: Companies = None,
    all_lines: Annotated[bool, Parameter(help="every line of every transaction, not only those that differ")] = False,
    output: Format = "table",
) -> None:
    """Compare Nmbrs' journals with what Visma.net holds now for the batches posted (per company, run, period,
    account and subaccount, to the cent); exit 1 when anything was edited, deleted, reversed or not sent."""
    from nmbrs_visma.reconcile_command import run_reconcile

    sys.exit(
        run_reconcile(period=period, companies=company, payroll_run=payroll_run, output=output, all_lines=all_lines)
    )


@config_app.command(name="apply")
def config_apply(file: Path) -> None:
    """Load a YAML file of accounts and mappings into Prefect blocks (secrets from environment variables)."""
    from nmbrs_visma.config import apply_config_file

    sys.exit(apply_config_file(file))


@config_app.command(name="show")
def config_show() -> None:
    """Print the configured accounts and mappings, secrets masked."""
    from nmbrs_visma.config import show_config

    sys.exit(show_config())


AlertBlock = Annotated[
    str, Parameter(help="a Prefect notification block: its name, or TYPE/NAME (slack-webhook/payroll-team)")
]


@alerts_app.command(name="add")
def alerts_add(*, block: AlertBlock) -> None:
    """Make a Prefect automation that sends a message through the block when a run of this project's flows ends
    FAILED or CRASHED, with its state message and a link (adding it again keeps one)."""
    from nmbrs_visma.alerts import run_alerts_add

    sys.exit(run_alerts_add(block))


@alerts_app.command(name="list")
def alerts_list(
    *, output: Annotated[Literal["table", "json"], Parameter(name="--format", help="json: for scripts")] = "table"
) -> None:
    """Print this project's alerts: the block each sends to, and the runs it watches."""
    from nmbrs_visma.alerts import run_alerts_list

    sys.exit(run_alerts_list(output))


@alerts_app.command(name="remove")
def alerts_remove(
    *,
    block: Annotated[str | None, Parameter(help="the block of the alert to remove: NAME or TYPE/NAME")] = None,
    every: Annotated[bool, Parameter(name="--all", negative=(), help="remove every alert of this project")] = False,
) -> None:
    """Remove the alert of a block (the block itself is kept), or --all of them."""
    from nmbrs_visma.alerts import run_alerts_remove

    sys.exit(run_alerts_remove(block, every=every))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
