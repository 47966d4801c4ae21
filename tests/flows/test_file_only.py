"""A file-only configuration (Visma.net accounts and companies, no Nmbrs API account): its companies post from
journal files given by hand, and a run reading from the Nmbrs API refuses them, naming each, while the
other companies go on and no Nmbrs account is connected for them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nmbrs_visma.blocks.mapping import LoadedMappings
from nmbrs_visma.flows.connections import Connections, select_companies
from nmbrs_visma.journals.models import AdministrationMapping
from nmbrs_visma.results import Status, StatusRow
from nmbrs_visma.sandbox.demo_data import DEMO_PERIOD, DEMO_YEAR, TENANTS
from tests.support import demo_company, post

PERIOD = f"{DEMO_YEAR}-{DEMO_PERIOD:02d}"
FILE_ONLY = (7001, 7002)  # not demo companies: mapped by the file-only configuration alone
TEMPLATE = demo_company(1001)  # its administration, its journal


def _reason(company: int) -> str:
    return (
        f"company {company} has no Nmbrs account in its mapping (journal files only): post it with "
        "--journal-file, or add nmbrs_account to its mapping"
    )


# -- the contract, without Prefect --------------------------------------------------------------------------


def _mapping(company: int) -> AdministrationMapping:
    return AdministrationMapping(nmbrs_company=company, visma_account="main", branch="1", ledger="L")


def test_a_company_without_nmbrs_account_is_refused_only_when_the_run_reads_the_api() -> None:
    loaded = LoadedMappings(
        mappings={7001: _mapping(7001), 1001: _mapping(1001)}, nmbrs_accounts={7001: None, 1001: "default"}
    )
    selection = select_companies(loaded, None)
    assert selection.nmbrs_accounts == {7001: None, 1001: "default"}  # None carried through, not "default"
    assert selection.rows == []

    status, refusal = Connections(use_nmbrs=True).problem(_mapping(7001), None) or (None, None)
    assert status is Status.REFUSED
    assert refusal is not None and refusal.code == "unmapped_company" and refusal.company == 7001
    assert refusal.message == _reason(7001)
    assert Connections(use_nmbrs=True).problem(_mapping(1001), "default") is None
    assert Connections(use_nmbrs=False).problem(_mapping(7001), None) is None  # a journal file: nothing missing


# -- against the emulators ----------------------------------------------------------------------------------


@pytest.fixture
def file_only_config(sandboxes: Any) -> Iterator[dict[str, Any]]:
    """Apply a configuration with Visma.net accounts and companies only (no `nmbrs` section) next to the demo
    one; its mapping blocks are deleted afterwards (Prefect's blocks live for the whole session)."""
    from nmbrs_visma.blocks.mapping import AdministrationMappingBlock, load_mappings, mapping_block_name
    from nmbrs_visma.config import apply_config
    from nmbrs_visma.demo import emulator_accounts, visma_account_name

    account = visma_account_name(TEMPLATE.tenant_id)
    accounts, env = emulator_accounts(sandboxes.visma_url, sandboxes.nmbrs_url, {account: TEMPLATE.tenant_id})
    ledger = next(tenant.ledger for tenant in TENANTS if tenant.tenant_id == TEMPLATE.tenant_id)
    data = {
        "visma_net": accounts["visma_net"],
        "companies": [
            {"nmbrs_company": number, "visma_account": account, "branch": TEMPLATE.branch, "ledger": ledger}
            for number in FILE_ONLY
        ],
    }
    visma_secrets = {key: value for key, value in env.items() if key.endswith("_VISMA_SECRET")}  # no Nmbrs ones
    applied = apply_config(data, visma_secrets)
    try:
        assert applied.nmbrs_accounts == []
        assert {company: load_mappings().nmbrs_accounts[company] for company in FILE_ONLY} == dict.fromkeys(FILE_ONLY)
        yield data
    finally:
        for number in FILE_ONLY:
            AdministrationMappingBlock.delete(mapping_block_name(number), _sync=True)


class Submissions:
    """Wraps a task so the test sees what it was submitted with, then submits it for real."""

    def __init__(self, task: Any) -> None:
        self.task = task
        self.calls: list[tuple[Any, ...]] = []

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(args)
        return self.task.submit(*args, **kwargs)


@pytest.fixture
def nmbrs_tasks(monkeypatch: pytest.MonkeyPatch) -> tuple[Submissions, Submissions]:
    """(token refreshes, company listings) as `connect_accounts` submits them."""
    from nmbrs_visma.flows import connections

    refreshes, listings = Submissions(connections.refresh_token), Submissions(connections.find_nmbrs_companies)
    monkeypatch.setattr(connections, "refresh_token", refreshes)
    monkeypatch.setattr(connections, "find_nmbrs_companies", listings)
    return refreshes, listings


@pytest.mark.slow
def test_a_file_only_company_posts_from_a_journal_file(
    sandboxes: Any, ledger: Any, workspace: Path, file_only_config: dict[str, Any], nmbrs_tasks: Any
) -> None:
    world = sandboxes.nmbrs_world
    path = workspace / "export-7001.xml"  # an Nmbrs journal export, given by hand as company 7001's
    path.write_bytes(world.journal_document(world.run_for_period(TEMPLATE.number, DEMO_YEAR, DEMO_PERIOD), "journals"))

    rows = post(companies=[7001], journal_file=str(path))

    assert rows and {row.status for row in rows} == {Status.SENT}, rows
    assert {row.company for row in rows} == {7001}
    expected = world.expected_lines(TEMPLATE.number, DEMO_YEAR, DEMO_PERIOD, "journals")
    debit_cents = sum(cents for key, cents in expected.items() if key[-1] == "debit")
    assert sum(int(row.debit * 100) for row in rows) == debit_cents > 0
    booked = {t.batch_number: t for t in ledger(sandboxes, TEMPLATE.tenant_id)}
    assert {row.batch_number for row in rows} == set(booked)
    refreshes, listings = nmbrs_tasks
    assert [call for call in refreshes.calls if call[0] == "nmbrs"] == [] and listings.calls == []

    (again,) = {row.status for row in post(companies=[7001], journal_file=str(path))}
    assert again is Status.ALREADY_SENT  # the same file meets the same posting keys
    assert len(ledger(sandboxes, TEMPLATE.tenant_id)) == len(booked)


@pytest.mark.slow
def test_an_api_run_refuses_the_companies_without_nmbrs_account_and_posts_the_others(
    sandboxes: Any, ledger: Any, file_only_config: dict[str, Any], nmbrs_tasks: Any
) -> None:
    rows = post(companies=[1001, *FILE_ONLY])

    by_company: dict[int, list[StatusRow]] = {}
    for row in rows:
        by_company.setdefault(row.company, []).append(row)
    assert set(by_company) == {1001, *FILE_ONLY}
    for number in FILE_ONLY:
        (row,) = by_company[number]
        assert row.status is Status.REFUSED and row.codes == ("unmapped_company",), row
        assert row.reason == _reason(number)
        assert not row.batch_number
    assert {row.status for row in by_company[1001]} == {Status.SENT}  # the other company goes on
    booked = {t.batch_number for t in ledger(sandboxes, TEMPLATE.tenant_id)}
    assert booked == {row.batch_number for row in by_company[1001]}  # nothing of 7001 or 7002

    refreshes, listings = nmbrs_tasks  # only 1001's Nmbrs account is connected and listed, once
    assert [call for call in refreshes.calls if call[0] == "nmbrs"] == [("nmbrs", "default")]
    assert [call[0] for call in listings.calls] == ["default"]


@pytest.mark.slow
def test_an_api_run_of_only_file_only_companies_connects_no_account(
    sandboxes: Any, file_only_config: dict[str, Any], nmbrs_tasks: Any
) -> None:
    from nmbrs_visma.commands import run_post

    assert run_post(period=PERIOD, companies=[7001], journal_file=None, dry_run=False) == 1  # refused: non-zero
    refreshes, listings = nmbrs_tasks
    assert refreshes.calls == [] and listings.calls == []
    assert sandboxes.visma_calls == []  # not even the Visma.net account is asked for a token
