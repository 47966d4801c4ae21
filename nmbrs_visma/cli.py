"""The `nmbrs-visma` command line: sandbox, demo, post, backfill, config, connect, status.

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

Companies = Annotated[list[int] | None, Parameter(name=["--company", "-c"], help="Nmbrs company number (repeatable)")]


@app.command
def sandbox(
    *,
    visma_port: int = 8701,
    nmbrs_port: int = 8702,
    host: str = "127.0.0.1",
) -> None:
    """Serve the Visma.net ERP and Nmbrs emulators, seeded with the demo data, until Ctrl-C."""
    from nmbrs_visma.sandbox.serve import serve_forever

    serve_forever(visma_port=visma_port, nmbrs_port=nmbrs_port, host=host)


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
) -> None:
    """Post what is missing for a range of periods (idempotent: sent periods are skipped)."""
    from nmbrs_visma.commands import run_backfill

    sys.exit(run_backfill(start=start, end=end, companies=company, dry_run=dry_run, repost_changed=repost_changed))


@app.command
def connect(system: Literal["visma", "nmbrs"], *, account: str = "default", port: int = 8765) -> None:
    """Authorise an account interactively (fresh login, PKCE) and save its tokens to the block."""
    from nmbrs_visma.commands import run_connect

    sys.exit(run_connect(system=system, account=account, port=port))


@app.command
def status(*, period: str | None = None, company: Companies = None) -> None:
    """Print what was sent: per company, administration and period, with batch numbers and reasons."""
    from nmbrs_visma.commands import run_status

    sys.exit(run_status(period=period, companies=company))


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
