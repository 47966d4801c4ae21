"""The monthly flow against both emulators over real HTTP: what lands in the ledger, to the cent, exactly once."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from nmbrs_visma.results import Status, StatusRow
from nmbrs_visma.sandbox.demo_data import COMPANIES, DEMO_PERIOD, DEMO_YEAR
from tests.support import at_once, demo_company, post

pytestmark = pytest.mark.slow

SENT_COMPANIES = {1001, 1002, 1003, 1006}  # 1004 test company, 1005 run not locked, 2001 blocked debtor; 1006 4-weekly


def _journal_calls(sandboxes: object) -> list[tuple[str, str]]:
    return [call for call in sandboxes.visma_calls if call[1].startswith("/v2/journaltransaction")]  # type: ignore[attr-defined]


def _expected_by_tenant(sandboxes: object) -> dict[str, dict[tuple, int]]:
    """Cents per (period, account, department, project, side) that the demo's sent companies must book."""
    nmbrs = sandboxes.nmbrs_world  # type: ignore[attr-defined]
    expected: dict[str, dict[tuple, int]] = defaultdict(lambda: defaultdict(int))
    for number in SENT_COMPANIES:
        demo = demo_company(number)
        kind = "journalscostcenterunit" if demo.cost_centers else "journals"
        for (period_id, account, cost_center, cost_unit, side), cents in nmbrs.expected_lines(
            number, DEMO_YEAR, DEMO_PERIOD, kind
        ).items():
            department = cost_center.zfill(4) if cost_center else ""
            project = cost_unit.zfill(3) if cost_unit else ""
            expected[demo.tenant_id][(period_id, account, department, project, side)] += cents
    return {tenant: {k: v for k, v in lines.items() if v} for tenant, lines in expected.items()}


def _booked_by_tenant(sandboxes: object, ledger) -> dict[str, dict[tuple, int]]:
    booked: dict[str, dict[tuple, int]] = defaultdict(lambda: defaultdict(int))
    for tenant_id in {demo_company(n).tenant_id for n in SENT_COMPANIES}:
        for transaction in ledger(sandboxes, tenant_id):
            for line in transaction.lines:
                department = line.subaccount.get(1, "").strip("0") and line.subaccount[1]
                project = line.subaccount.get(2, "").strip("0") and line.subaccount[2]
                for side, amount in (("debit", line.debit), ("credit", line.credit)):
                    if amount:
                        key = (transaction.period_id, line.account, department, project, side)
                        booked[tenant_id][key] += int(amount * 100)
    return {tenant: {k: v for k, v in lines.items() if v} for tenant, lines in booked.items()}


def _assert_administration_locks_free(administrations: set[str]) -> None:
    """Every administration lock the pass reserved ahead (in batches, flows/administrations.py) or took is free
    again: held ones released, unneeded ones given up, none left to lapse at its deadline."""
    from prefect.client.orchestration import get_client

    from nmbrs_visma.tasks.posting import administration_lock_name

    with get_client(sync_client=True) as client:
        for administration in administrations:
            limit = client.read_global_concurrency_limit_by_name(administration_lock_name(administration))
            assert limit.active_slots == 0, administration


def test_the_demo_month_lands_to_the_cent_once_and_a_second_run_sends_nothing(sandboxes: object, ledger) -> None:
    rows = post()

    by_company: dict[int, list[StatusRow]] = defaultdict(list)
    for row in rows:
        by_company[row.company].append(row)
    assert set(by_company) == {c.number for c in COMPANIES}
    for number in SENT_COMPANIES:
        assert {row.status for row in by_company[number]} == {Status.SENT}, by_company[number]
        assert all(row.batch_number for row in by_company[number])
    (skipped,) = by_company[1004]  # a test company is reported skipped: no alarm
    assert skipped.status is Status.SKIPPED and skipped.codes == ("test_company",) and "test company" in skipped.reason
    refused = {2001: by_company[2001]}
    assert all(row.status is Status.REFUSED for rows_ in refused.values() for row in rows_)
    (waiting,) = by_company[1005]  # an unlocked run waits: it is not a refusal
    assert waiting.status is Status.WAITING and "not locked in Nmbrs yet" in waiting.reason
    assert "debtor_blocked" in refused[2001][0].codes and "blocked" in refused[2001][0].reason
    assert ledger(sandboxes, demo_company(2001).tenant_id) == []  # nothing of a refused company is posted

    # to the cent, per period, account, cost center, cost unit and side
    assert _booked_by_tenant(sandboxes, ledger) == _expected_by_tenant(sandboxes)

    # the correction run of 1003 books January, February and March separately, all with the run's reference
    corrections = [row for row in by_company[1003]]
    assert sorted(row.period for row in corrections) == ["202601", "202602", "202603"]
    assert len({row.reference for row in corrections}) == 1
    reference = corrections[0].reference
    batches = {row.batch_number for row in corrections}
    booked = [t for t in ledger(sandboxes, demo_company(1003).tenant_id) if t.batch_number in batches]
    assert sorted(t.period_id for t in booked) == ["202601", "202602", "202603"]
    assert {line.reference for t in booked for line in t.lines} == {reference}
    for row in corrections:  # the row's totals are the ledger's
        (transaction,) = [t for t in booked if t.batch_number == row.batch_number]
        assert (transaction.debit_total, transaction.credit_total) == (row.debit, row.credit)
        assert row.debit == row.credit != Decimal("0")

    count = len(ledger(sandboxes))
    assert count == sum(1 for row in rows if row.status is Status.SENT)
    calls_before = len(_journal_calls(sandboxes))
    _assert_administration_locks_free({row.administration for row in rows if row.status is Status.SENT})

    again = post()
    assert len(ledger(sandboxes)) == count
    sent_before = {(r.company, r.period): r.batch_number for r in rows if r.status is Status.SENT}
    sent_again = {(r.company, r.period): r.batch_number for r in again if r.status is Status.ALREADY_SENT}
    assert sent_again == sent_before
    assert not [r for r in again if r.status is Status.SENT]
    assert len(_journal_calls(sandboxes)) == calls_before  # no look-up, no create: the record answered


def test_a_create_whose_answer_is_lost_gives_one_transaction(sandboxes: object, ledger) -> None:
    world = sandboxes.visma_world  # type: ignore[attr-defined]
    world.faults.lose_next_creates = 1  # commit, then answer 502
    rows = post(companies=[1001])
    (row,) = rows
    assert row.status is Status.SENT and "answer lost" in row.reason
    booked = ledger(sandboxes, demo_company(1001).tenant_id)
    assert len(booked) == 1 and booked[0].batch_number == row.batch_number

    again = post(companies=[1001])
    assert [r.status for r in again] == [Status.ALREADY_SENT]
    assert len(ledger(sandboxes, demo_company(1001).tenant_id)) == 1


def test_a_lost_answer_recorded_only_as_intent_is_looked_up_not_resent(sandboxes: object, ledger) -> None:
    """A crash after Visma.net committed (intent recorded, no outcome): the next run finds it by its key."""
    from nmbrs_visma.posting_ledger import PostingLedger, PostingState

    post(companies=[1001])
    ledger_db = PostingLedger()
    (entry,) = ledger_db.all_entries()
    with ledger_db.holding([entry.key]) as held:  # as if the worker died between the create and the outcome
        held.put(entry.model_copy(update={"state": PostingState.INTENT, "batch_number": None}))

    rows = post(companies=[1001])
    assert [r.status for r in rows] == [Status.ALREADY_SENT]
    assert rows[0].batch_number == entry.batch_number and "found in Visma.net" in rows[0].reason
    assert len(ledger(sandboxes, demo_company(1001).tenant_id)) == 1
    (after,) = ledger_db.entries([entry.key])[entry.key]
    assert (after.state, after.batch_number) == (PostingState.SENT, entry.batch_number)


def test_two_runs_started_at_once_post_each_transaction_once(sandboxes: object, ledger) -> None:
    results = at_once([lambda: post(companies=[1001, 1003])] * 2, timeout=120)
    booked = ledger(sandboxes, demo_company(1001).tenant_id)
    descriptions = [t.description for t in booked]
    assert len(booked) == 4  # 1001: March; 1003: January, February, March
    assert len(set(descriptions)) == 4
    statuses = sorted(row.status for rows in results for row in rows)
    assert statuses.count(Status.SENT) == 4 and statuses.count(Status.ALREADY_SENT) == 4


def test_a_dry_run_writes_the_exact_payloads_and_sends_nothing(sandboxes: object, ledger, workspace: Path) -> None:
    import json

    rows = post(companies=[1002, 1004], dry_run=True)
    assert ledger(sandboxes) == []
    assert not [call for call in _journal_calls(sandboxes) if call[0] == "POST"]
    previews = [row for row in rows if row.status is Status.DRY_RUN]
    assert previews and all(row.company == 1002 for row in previews)
    files = sorted((workspace / "output").rglob("*.json"))
    assert len(files) == len(previews)
    payload = json.loads(files[0].read_bytes())
    assert payload["financialPeriod"]["value"] == "202603"
    assert any(line.get("subaccount") for line in payload["journalTransactionLines"])
    assert [row.status for row in rows if row.company == 1004] == [Status.SKIPPED]

    # the previewed payload is what the real run sends
    real = post(companies=[1002])
    assert [row.status for row in real] == [Status.SENT]
    (transaction,) = ledger(sandboxes, demo_company(1002).tenant_id)
    assert transaction.debit_total == Decimal(str(previews[0].debit))
