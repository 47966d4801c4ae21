"""`nmbrs-visma demo`: the whole pipeline on a fresh machine, no credentials, nothing left behind.

Starts both emulators on free loopback ports, applies the demo configuration (accounts pointing at the
emulators with their public demo client credentials; a mapping for every company of `sandbox/demo_data.py`),
connects the Nmbrs account (the emulator approves the demo user at once), runs `post-payroll-journals` for
the demo month for real, prints the table, runs it again to show nothing is sent twice, and stops everything.

It runs in a child process with its own throwaway PREFECT_HOME (Prefect reads its settings at import, and the
demo must neither touch nor depend on the user's Prefect profile); Prefect's temporary local server serves it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nmbrs_visma.sandbox.demo_data import COMPANIES, DEBTORS, DEMO_PERIOD, DEMO_YEAR, TENANTS

DEMO_PERIOD_TEXT = f"{DEMO_YEAR}-{DEMO_PERIOD:02d}"
_CHILD_FLAG = "NMBRS_VISMA_DEMO_CHILD"
_ENV_VISMA_SECRET = "NMBRS_VISMA_DEMO_VISMA_SECRET"
_ENV_NMBRS_SECRET = "NMBRS_VISMA_DEMO_NMBRS_SECRET"
_ENV_NMBRS_KEY = "NMBRS_VISMA_DEMO_NMBRS_SUBSCRIPTION_KEY"


def visma_account_name(tenant_id: str) -> str:
    return f"demo-{tenant_id}"


def demo_config(visma_url: str, nmbrs_url: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The demo configuration (as `config apply` reads it) and the environment holding its secrets."""
    blocked = {debtor.number for debtor in DEBTORS if debtor.blocked}
    companies = []
    for company in COMPANIES:
        spec: dict[str, Any] = {
            "nmbrs_company": company.number,
            "visma_account": visma_account_name(company.tenant_id),
            "nmbrs_account": "default",
            "branch": company.branch,
            "ledger": next(t.ledger for t in TENANTS if t.tenant_id == company.tenant_id),
            "test_company": company.test_company,
            "debtor_blocked": company.debtor in blocked,
        }
        if company.period_type != "month":  # a 4-weekly payroll into a monthly ledger: by the period's last day
            spec["period_mapping"] = "end_date"
        if company.cost_centers or company.cost_units:
            spec["dimensions"] = {
                "cost_center": {"enabled": bool(company.cost_centers), "description": "Department"},
                "cost_unit": {"enabled": bool(company.cost_units), "description": "Project"},
            }
        companies.append(spec)
    accounts, env = emulator_accounts(
        visma_url, nmbrs_url, {visma_account_name(tenant.tenant_id): tenant.tenant_id for tenant in TENANTS}
    )
    return {**accounts, "companies": companies}, env


def emulator_accounts(
    visma_url: str, nmbrs_url: str, visma_tenants: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The `visma_net` and `nmbrs` sections of a configuration of the emulators (one service account per
    Visma.net tenant, account name -> tenant id; the Nmbrs demo client), and the environment holding their
    public demo secrets."""
    from nmbrs_visma.sandbox.nmbrs.world import (
        DEMO_CLIENT_ID,
        DEMO_CLIENT_SECRET,
        DEMO_REDIRECT_URI,
        DEMO_SUBSCRIPTION_KEY,
    )
    from nmbrs_visma.sandbox.nmbrs.world import SCOPES as NMBRS_SCOPES
    from nmbrs_visma.sandbox.visma_net.world import SERVICE_CLIENT_ID, SERVICE_CLIENT_SECRET

    accounts = {
        "visma_net": {
            "accounts": {
                name: {
                    "base_url": visma_url,
                    "token_url": f"{visma_url}/connect/token",
                    "authorize_url": f"{visma_url}/connect/authorize",
                    "grant_type": "client_credentials",
                    "client_id": SERVICE_CLIENT_ID,
                    "client_secret_env": _ENV_VISMA_SECRET,
                    "tenant_id": tenant_id,
                }
                for name, tenant_id in visma_tenants.items()
            }
        },
        "nmbrs": {
            "accounts": {
                "default": {
                    "base_url": nmbrs_url,
                    "token_url": f"{nmbrs_url}/connect/token",
                    "authorize_url": f"{nmbrs_url}/connect/authorize",
                    "client_id": DEMO_CLIENT_ID,
                    "client_secret_env": _ENV_NMBRS_SECRET,
                    "subscription_key_env": _ENV_NMBRS_KEY,
                    "redirect_uri": DEMO_REDIRECT_URI,
                    "scopes": sorted(NMBRS_SCOPES),
                }
            }
        },
    }
    env = {
        _ENV_VISMA_SECRET: SERVICE_CLIENT_SECRET,
        _ENV_NMBRS_SECRET: DEMO_CLIENT_SECRET,
        _ENV_NMBRS_KEY: DEMO_SUBSCRIPTION_KEY,
    }
    return accounts, env


def connect_demo_nmbrs(account: str = "default") -> None:
    """Authorise the Nmbrs account against the emulator, as `nmbrs-visma connect nmbrs` would with a browser."""
    from nmbrs_visma.blocks.nmbrs import NmbrsAccount
    from nmbrs_visma.sandbox.nmbrs.browser import approve_authorization

    block = NmbrsAccount.load(account, _sync=True)
    auth = block.get_auth()
    request = auth.authorization_request()
    auth.complete_authorization(approve_authorization(request.url), request)  # saves the tokens to the block


def configure_demo(visma_url: str, nmbrs_url: str) -> None:
    """Apply the demo configuration to the current Prefect API and connect the Nmbrs account."""
    from nmbrs_visma.config import apply_config

    data, env = demo_config(visma_url, nmbrs_url)
    apply_config(data, env)
    connect_demo_nmbrs()


def _quiet_logging() -> None:
    """Keep the demo's output to its tables: Prefect's own run chatter and server noise stay out."""
    warnings.filterwarnings("ignore")
    for name in ("prefect", "httpx", "httpx2", "uvicorn", "nmbrs_visma", "alembic", "aiosqlite", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _demo_body() -> int:
    from rich.console import Console

    from nmbrs_visma.flows.post_payroll_journals import pass_rows, post_payroll_journals
    from nmbrs_visma.results import Status, rich_table, summary
    from nmbrs_visma.sandbox.serve import running_sandboxes

    _quiet_logging()
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=200)
    with running_sandboxes() as sandboxes:
        console.print(f"Visma.net emulator on {sandboxes.visma_url}, Nmbrs emulator on {sandboxes.nmbrs_url}")
        configure_demo(sandboxes.visma_url, sandboxes.nmbrs_url)
        console.print(f"Demo configuration applied: {len(COMPANIES)} companies, {len(TENANTS)} administrations.\n")

        first = pass_rows(post_payroll_journals(period=DEMO_PERIOD_TEXT, return_state=True))
        console.print(rich_table(first, title=f"First run: payroll journals {DEMO_PERIOD_TEXT}"))
        console.print(f"First run: {summary(first)}\n")
        ledger = sum(len(sandboxes.visma_world.transactions(tenant.tenant_id)) for tenant in TENANTS)

        second = pass_rows(post_payroll_journals(period=DEMO_PERIOD_TEXT, return_state=True))
        console.print(rich_table(second, title=f"Second run: payroll journals {DEMO_PERIOD_TEXT}"))
        console.print(f"Second run: {summary(second)}")
        ledger_after = sum(len(sandboxes.visma_world.transactions(tenant.tenant_id)) for tenant in TENANTS)

    sent = [row for row in first if row.status is Status.SENT]
    refused = [row for row in first if row.status is Status.REFUSED]
    failed = [row for row in [*first, *second] if row.status is Status.FAILED]
    resent = [row for row in second if row.status is Status.SENT]
    ok = bool(sent) and bool(refused) and not failed and not resent and ledger == ledger_after == len(sent)
    if ok:
        console.print(
            f"\n[green]Demo OK[/]: {len(sent)} journal transactions in the ledger, "
            f"{len({row.company for row in refused})} companies refused with their reasons, "
            "and the second run sent nothing again."
        )
    else:
        console.print(f"\n[red]Demo did not behave as expected[/] (ledger {ledger} -> {ledger_after}).")
    return 0 if ok else 1


def demo_environment(home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean Prefect environment under `home`: no profile, no API URL (Prefect's temporary local server)."""
    env = {
        key: value
        for key, value in (base if base is not None else os.environ).items()
        if not key.startswith(("PREFECT_", "NMBRS_VISMA_"))
    }
    env.update(
        {
            "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "CRITICAL",
            "PREFECT_LOGGING_SERVER_LEVEL": "CRITICAL",
            "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
            "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "200",
            "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "200",
            "NMBRS_VISMA_LEDGER_URL": f"sqlite:///{home / 'ledger.db'}",
            "NMBRS_VISMA_OUTPUT_DIR": str(home / "output"),
            _CHILD_FLAG: "1",
        }
    )
    return env


def run_demo() -> int:
    """Run the demo in a child process with a throwaway Prefect home; 0 when it behaved as expected."""
    if os.environ.get(_CHILD_FLAG) == "1":
        return _demo_body()
    with tempfile.TemporaryDirectory(prefix="nmbrs-visma-demo-") as home:
        command = [sys.executable, "-m", "nmbrs_visma.demo"]
        try:
            return subprocess.run(command, env=demo_environment(Path(home)), check=False).returncode
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    sys.exit(run_demo())
