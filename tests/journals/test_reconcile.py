"""Reconciliation, the pure comparison: what the pipeline would post against what Visma.net holds, to the cent.

The Visma.net side is booked and rendered by the emulator's own functions (validate_create / validate_update /
transaction_dto, no HTTP), so the DTOs read back have Visma.net's shape: plain account numbers, every subaccount
segment (all-zero values for those left out), debit and credit amounts of each line.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from nmbrs_visma.journals.build import PlannedTransaction, build_transactions
from nmbrs_visma.journals.keys import reversal_fingerprint, reversal_key
from nmbrs_visma.journals.nmbrs_xml import parse_journal_xml
from nmbrs_visma.journals.reconcile import (
    DIFFERENCES,
    Expected,
    ReadBack,
    Verdict,
    batches_to_read,
    booked_fingerprint,
    dto_lines,
    outcome_message,
    payload_lines,
    periods_to_list,
    reconcile,
    rows_of,
)
from nmbrs_visma.posting_ledger import PostingEntry, PostingState
from nmbrs_visma.sandbox.visma_net import VismaWorld
from nmbrs_visma.sandbox.visma_net.journal import transaction_dto, validate_create, validate_update

from .builders import MARCH_WITH_CORRECTION, demo_reference, journal_xml, line_xml, make_mapping, make_run

TENANT = "1000002"


@pytest.fixture
def world() -> VismaWorld:
    return VismaWorld().seed_demo()


def planned(xml: bytes = MARCH_WITH_CORRECTION, **mapping: Any) -> list[PlannedTransaction]:
    return build_transactions(
        parse_journal_xml(xml), make_run(), make_mapping(**mapping), demo_reference(tenant_id=TENANT)
    )


def expected_of(transaction: PlannedTransaction) -> Expected:
    return Expected(
        key=transaction.posting_key,
        fingerprint=transaction.fingerprint,
        company=transaction.company_number,
        reference="NM2603R1",
        administration=transaction.administration_id,
        payroll_period=transaction.payroll_period,
        period_id=transaction.financial_period,
        payload=transaction.payload,
        company_name="Bakkerij Zuid BV",
    )


def book(world: VismaWorld, payload: bytes) -> str:
    """Create the batch in the emulator's tenant, as `POST /v2/journaltransaction` does; its number."""
    tenant = world.tenants[TENANT]
    transaction, _ = validate_create(tenant, json.loads(payload, parse_float=Decimal), complete_subaccounts=True)
    transaction.batch_number = f"{tenant.next_batch:06d}"
    tenant.next_batch += 1
    tenant.batches[transaction.batch_number] = transaction
    return transaction.batch_number


def sent(transaction: PlannedTransaction, batch: str, **changes: Any) -> PostingEntry:
    values: dict[str, Any] = dict(
        key=transaction.posting_key,
        fingerprint=transaction.fingerprint,
        state=PostingState.SENT,
        company=transaction.company_number,
        reference="NM2603R1",
        payroll_period=transaction.payroll_period,
        period_id=transaction.financial_period,
        administration=transaction.administration_id,
        lines=transaction.line_count,
        debit=transaction.debit,
        credit=transaction.credit,
        batch_number=batch,
        updated_at=dt.datetime(2026, 4, 1, tzinfo=dt.UTC),
    )
    return PostingEntry(**(values | changes))


def read_back(world: VismaWorld, numbers: set[tuple[str, str]], **kwargs: Any) -> ReadBack:
    tenant = world.tenants[TENANT]
    batches = {
        (TENANT, n): transaction_dto(tenant, tenant.batches[n]) if n in tenant.batches else None for _, n in numbers
    }
    return ReadBack(batches=batches, **kwargs)


def post_all(world: VismaWorld, transactions: list[PlannedTransaction]) -> list[PostingEntry]:
    return [sent(t, book(world, t.payload)) for t in transactions]


def test_the_fingerprint_of_a_batch_as_booked_is_the_one_it_was_sent_with(world: VismaWorld) -> None:
    plain = journal_xml([("20260325", "3/2026", [line_xml("4000", "10,00"), line_xml("1700", "10,00", "credit")])])
    for xml, mapping in ((MARCH_WITH_CORRECTION, {}), (plain, {"dimensions": False})):
        for transaction in planned(xml, **mapping):
            number = book(world, transaction.payload)
            dto = transaction_dto(world.tenants[TENANT], world.tenants[TENANT].batches[number])
            assert booked_fingerprint(1002, transaction.payroll_period, dto) == transaction.fingerprint


def test_payload_and_booked_lines_are_exact_decimal_cents_with_all_zero_segments_as_none(world: VismaWorld) -> None:
    january, march = planned()
    lines = payload_lines(january.payload)
    assert [(line.account, line.side, line.cents) for line in lines] == [
        ("1700", "credit", -10050),
        ("4000", "debit", -10050),
    ]
    number = book(world, march.payload)
    booked = dto_lines(transaction_dto(world.tenants[TENANT], world.tenants[TENANT].batches[number]))
    assert sorted(line.key for line in booked) == sorted(line.key for line in payload_lines(march.payload))
    net = next(line for line in booked if line.account == "1700")
    assert net.subaccount == "0000-000" and net.segments == ()  # every segment booked, none significant
    wages = next(line for line in booked if line.account == "4000" and line.cents == 250000)
    assert wages.subaccount == "0100-001" and wages.segments == ((1, "0100"), (2, "001"))


def test_untouched_batches_agree_in_one_row_each_with_their_totals(world: VismaWorld) -> None:
    transactions = planned()
    recorded = post_all(world, transactions)
    checks = reconcile([expected_of(t) for t in transactions], recorded, read_back(world, batches_to_read(recorded)))
    assert [check.verdict for check in checks] == [Verdict.AGREES, Verdict.AGREES]
    assert not any(check.differs for check in checks)
    rows = rows_of(checks)
    assert [(row.period, row.batch_number, row.expected, row.found, row.difference) for row in rows] == [
        ("202601", "000001", Decimal("-100.50"), Decimal("-100.50"), Decimal("0.00")),
        ("202603", "000002", Decimal("4800.00"), Decimal("4800.00"), Decimal("0.00")),
    ]
    assert rows[1].reason == "6 line(s) agree" and rows[1].company_name == "Bakkerij Zuid BV"
    assert len(rows_of(checks, all_lines=True)) == 8
    assert outcome_message(checks).startswith("everything agrees")
    assert periods_to_list(recorded) == {(TENANT, "202601"), (TENANT, "202603")}


def test_an_amount_edited_by_one_cent_is_named_with_its_account_and_subaccount(world: VismaWorld) -> None:
    transactions = planned()
    recorded = post_all(world, transactions)
    march = world.tenants[TENANT].batches["000002"]
    wages = next(line for line in march.lines if line.account == "4000" and line.debit == Decimal("1500.00"))
    change = {"hold": {"value": True}, "journalTransactionLines": [
        {"operation": "Update", "lineNumber": {"value": wages.line_number},
         "debitAmountInCurrency": {"value": Decimal("1500.01")}},
    ]}  # fmt: skip
    world.tenants[TENANT].batches["000002"] = validate_update(world.tenants[TENANT], march, change)

    checks = reconcile([expected_of(t) for t in transactions], recorded, read_back(world, batches_to_read(recorded)))
    january, edited = checks
    assert january.verdict is Verdict.AGREES
    assert edited.verdict is Verdict.EDITED and edited.batch_number == "000002" and edited.period == "202603"
    assert "batch 000002 was edited in Visma.net" in edited.reason
    (row,) = rows_of(checks)[1:]
    assert (row.company, row.reference, row.period, row.batch_number) == (1002, "NM2603R1", "202603", "000002")
    assert (row.account, row.subaccount, row.side) == ("4000", "0200-002", "debit")
    assert (row.expected, row.found, row.difference) == (Decimal("1500.00"), Decimal("1500.01"), Decimal("0.01"))
    assert "1 difference(s)" in outcome_message(checks) and "batch 000002: edited" in outcome_message(checks)


def test_an_account_changed_shows_both_accounts_and_a_deleted_batch_every_line_missing(world: VismaWorld) -> None:
    transactions = planned()
    recorded = post_all(world, transactions)
    tenant = world.tenants[TENANT]
    march = tenant.batches["000002"]
    travel = next(line for line in march.lines if line.account == "4100")
    change = {"journalTransactionLines": [
        {"operation": "Update", "lineNumber": {"value": travel.line_number}, "accountNumber": {"value": "4300"}},
    ]}  # fmt: skip
    tenant.batches["000002"] = validate_update(tenant, march, change)
    world.delete_batch(TENANT, "000001")

    checks = reconcile([expected_of(t) for t in transactions], recorded, read_back(world, batches_to_read(recorded)))
    deleted, edited = checks
    assert deleted.verdict is Verdict.DELETED and "batch 000001 is not in Visma.net any more" in deleted.reason
    assert {(line.account, line.expected_cents, line.found_cents) for line in deleted.lines} == {
        ("1700", -10050, 0),
        ("4000", -10050, 0),
    }
    assert edited.verdict is Verdict.EDITED
    moved = {(line.account, line.subaccount): line.difference_cents for line in edited.lines if line.difference_cents}
    assert moved == {("4100", "0100-001"): -80000, ("4300", "0100-001"): 80000}


def test_a_batch_reversed_in_visma_net_nets_to_nothing(world: VismaWorld) -> None:
    transactions = planned()
    recorded = post_all(world, transactions)
    reversing = world.reverse_batch(TENANT, "000002")
    assert reversing.reversing_entry and reversing.original_batch_number == "000002"
    numbers = batches_to_read(recorded) | {(TENANT, reversing.batch_number)}
    read = read_back(world, numbers, reversing={(TENANT, "000002"): [reversing.batch_number]})
    checks = reconcile([expected_of(t) for t in transactions], recorded, read)
    assert checks[1].verdict is Verdict.REVERSED
    assert f"reversed in Visma.net by batch {reversing.batch_number}" in checks[1].reason
    assert all(line.found_cents == 0 and line.expected_cents for line in checks[1].lines)
    assert checks[0].verdict is Verdict.AGREES


def test_a_journal_changed_in_nmbrs_is_told_from_an_edit_in_visma_net(world: VismaWorld) -> None:
    transactions = planned()
    recorded = post_all(world, transactions)
    changed_xml = MARCH_WITH_CORRECTION.replace(b"2500,00", b"2500,10").replace(b"2800,00", b"2800,10")
    now = planned(changed_xml)
    assert now[1].posting_key == transactions[1].posting_key and now[1].fingerprint != transactions[1].fingerprint
    checks = reconcile([expected_of(t) for t in now], recorded, read_back(world, batches_to_read(recorded)))
    assert checks[1].verdict is Verdict.CHANGED and "--repost-changed" in checks[1].reason
    differing = {(line.account, line.difference_cents) for line in checks[1].lines if line.difference_cents}
    assert differing == {("4000", -10), ("1700", -10)}
    assert checks[0].verdict is Verdict.AGREES


def test_reposted_content_agrees_through_the_reversal_the_pipeline_posted(world: VismaWorld) -> None:
    old_january, old_march = planned()
    changed_xml = MARCH_WITH_CORRECTION.replace(b"2500,00", b"2500,10").replace(b"2800,00", b"2800,10")
    new_january, new_march = planned(changed_xml)
    first = sent(old_march, book(world, old_march.payload), state=PostingState.REVERSED)
    tenant = world.tenants[TENANT]
    undo = world.reverse_batch(TENANT, first.batch_number or "")  # the same lines as the pipeline's reversal
    undo.reversing_entry, undo.original_batch_number = False, ""  # ... posted by the API: a plain batch
    reversal = first.model_copy(
        update={
            "key": reversal_key(old_march.posting_key, old_march.fingerprint),
            "fingerprint": reversal_fingerprint(old_march.fingerprint),
            "kind": "reversal",
            "state": PostingState.SENT,
            "batch_number": undo.batch_number,
            "reverses": first.batch_number,
        }
    )
    second = sent(new_march, book(world, new_march.payload), updated_at=dt.datetime(2026, 4, 2, tzinfo=dt.UTC))
    recorded = [sent(old_january, book(world, old_january.payload)), first, reversal, second]
    assert len(tenant.batches) == 4
    checks = reconcile(
        [expected_of(t) for t in (new_january, new_march)], recorded, read_back(world, batches_to_read(recorded))
    )
    assert [check.verdict for check in checks] == [Verdict.AGREES, Verdict.AGREES]
    assert checks[1].batch_number == second.batch_number
    assert f"reversed by batch {undo.batch_number}" in checks[1].reason

    world.delete_batch(TENANT, undo.batch_number)  # the reversal gone: the first content counts twice
    checks = reconcile(
        [expected_of(t) for t in (new_january, new_march)], recorded, read_back(world, batches_to_read(recorded))
    )
    assert checks[1].verdict is Verdict.DELETED and f"reversal (of {first.batch_number})" in checks[1].reason


def test_not_sent_a_period_no_longer_in_nmbrs_unreadable_and_a_lost_marker(world: VismaWorld) -> None:
    january, march = planned()
    recorded = [sent(january, book(world, january.payload))]
    march_only = journal_xml([("20260325", "3/2026", [line_xml("4000", "10,00"), line_xml("1700", "10,00", "credit")])])
    (now_march,) = planned(march_only)
    checks = reconcile([expected_of(now_march)], recorded, read_back(world, batches_to_read(recorded)))
    by_period = {check.period: check for check in checks}
    assert by_period["202603"].verdict is Verdict.NOT_SENT and by_period["202603"].expected_cents == 1000
    assert by_period["202601"].verdict is Verdict.CHANGED and "no longer holds" in by_period["202601"].reason
    assert by_period["202601"].expected_cents == 0 and by_period["202601"].found_cents == -10050

    intent = [sent(march, None, state=PostingState.INTENT)]
    (pending,) = reconcile([expected_of(march)], intent, ReadBack())
    assert pending.verdict is Verdict.NOT_SENT and "answer lost" in pending.reason

    unreadable = ReadBack(unreadable={(TENANT, "000001"): "HTTP 500"})
    (unchecked,) = reconcile([expected_of(january)], recorded, unreadable)
    assert unchecked.verdict is Verdict.UNCHECKED and "HTTP 500" in unchecked.reason and unchecked.differs

    tenant = world.tenants[TENANT]
    tenant.batches["000001"] = validate_update(
        tenant, tenant.batches["000001"], {"description": {"value": "Payroll January, edited by hand"}}
    )
    (lost,) = reconcile([expected_of(january)], recorded, read_back(world, batches_to_read(recorded)))
    assert lost.verdict is Verdict.EDITED and "no longer carries its marker" in lost.reason
    assert not any(line.difference_cents for line in lost.lines)  # amounts agree: the marker alone differs
    assert Verdict.AGREES not in DIFFERENCES and Verdict.SKIPPED not in DIFFERENCES
