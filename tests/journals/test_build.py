"""Planned transactions: one per financial period, exact totals, the run's reference, findable keys."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from decimal import Decimal

import pandas as pd
import pytest

from nmbrs_visma.journals.build import RunContext, RunRefused, build_many, build_transactions, plan_run
from nmbrs_visma.journals.keys import posting_key, read_marker
from nmbrs_visma.journals.models import ClosedPeriodPolicy, DimensionSetting
from nmbrs_visma.journals.nmbrs_xml import parse_journal_xml

from .builders import MARCH_WITH_CORRECTION, demo_reference, journal_xml, line_xml, make_mapping, make_run


def lines_payload(transaction) -> list[dict]:
    return json.loads(transaction.payload, parse_float=Decimal)["journalTransactionLines"]


def test_demo_run_builds_one_transaction_per_period(run, mapping, reference, check_payload) -> None:
    planned = build_transactions(parse_journal_xml(MARCH_WITH_CORRECTION), run, mapping, reference)
    assert [t.financial_period for t in planned] == ["202601", "202603"]
    january, march = planned
    for t in planned:
        model = check_payload(t.payload)
        assert model.financialPeriod.value == t.financial_period
        assert model.branch.value == "2" and model.ledger.value == "L"
        assert read_marker(model.description.value) == (t.posting_key, t.fingerprint)
        assert t.posting_key == posting_key(1002, 2026, 3, 1, t.payroll_period, "1000002/2/L")
        assert {line.referenceNumber.value for line in model.journalTransactionLines} == {"NM2603R1"}
        assert t.debit_cents == t.credit_cents
    assert (january.is_correction, january.transaction_date) == (True, dt.date(2026, 1, 31))
    assert (march.is_correction, march.transaction_date) == (False, dt.date(2026, 3, 25))
    assert january.debit == Decimal("-100.50") and march.debit == Decimal("4800.00")
    assert "correction 2026-01" in january.model().description.value
    assert january.model().transactionDate.value == dt.datetime(2026, 1, 31)
    assert len({t.posting_key for t in planned}) == 2
    march_lines = lines_payload(march)
    assert march.line_count == len(march_lines) == 6
    gross = [line for line in march_lines if line["accountNumber"]["value"] == "4000"]
    assert [line["subaccount"] for line in gross] == [
        [{"segmentId": 1, "segmentValue": "0100"}, {"segmentId": 2, "segmentValue": "001"}],
        [{"segmentId": 1, "segmentValue": "0200"}, {"segmentId": 2, "segmentValue": "002"}],
    ]
    net = next(line for line in march_lines if line["accountNumber"]["value"] == "1700")
    assert net["subaccount"] == [{"segmentId": 1, "segmentValue": "0000"}, {"segmentId": 2, "segmentValue": "000"}]
    assert net["creditAmountInCurrency"]["value"] == Decimal("2800.00")
    correction = lines_payload(january)
    sides = [(x["accountNumber"]["value"], x.get("debitAmountInCurrency"), x.get("creditAmountInCurrency"))
             for x in correction]  # fmt: skip
    assert sides == [("1700", None, {"value": Decimal("-100.50")}), ("4000", {"value": Decimal("-100.50")}, None)]


def test_lines_are_aggregated_but_debit_and_credit_never_netted(run, mapping, reference, check_payload) -> None:
    lines = parse_journal_xml(
        journal_xml(
            [
                (
                    "20260325",
                    "3/2026",
                    [
                        line_xml("4000", "100,00", "debit", "100", description="Bruto A"),
                        line_xml("4000", "50,25", "debit", "100", description="Bruto B"),
                        line_xml("4000", "-20,00", "debit", "100"),
                        line_xml("4000", "30,00", "credit", "100", description="Terugboeking"),
                        line_xml("4000", "0,00", "debit", "200"),
                        line_xml("1700", "100,25", "credit"),
                    ],
                )
            ]
        )
    )
    (march,) = build_transactions(lines, run, mapping, reference)
    check_payload(march.payload)
    got = [
        (line["accountNumber"]["value"], line["transactionDescription"]["value"], line.get("debitAmountInCurrency"),
         line.get("creditAmountInCurrency"))
        for line in lines_payload(march)
    ]  # fmt: skip
    assert got == [
        ("1700", "", None, {"value": Decimal("100.25")}),
        ("4000", "Bruto A", {"value": Decimal("130.25")}, None),  # the first description of the group
        ("4000", "Bruto A", None, {"value": Decimal("30.00")}),  # same account, other side: a line of its own
    ]
    assert march.debit_cents == march.credit_cents == 13025


def test_account_translation_and_hold(run, reference, check_payload) -> None:
    mapping = make_mapping(account_translation={"4100": "4200"}, hold=True)
    planned = build_transactions(parse_journal_xml(MARCH_WITH_CORRECTION), run, mapping, reference)
    model = check_payload(planned[1].payload)
    accounts = Counter(line.accountNumber.value for line in model.journalTransactionLines)
    assert accounts["4200"] == 1 and accounts["4100"] == 0
    assert model.hold.value is True


def test_refused_run_raises_with_every_reason(reference) -> None:
    lines = parse_journal_xml(MARCH_WITH_CORRECTION)
    with pytest.raises(RunRefused) as error:
        build_transactions(lines, make_run(locked=False), make_mapping(test_company=True), reference)
    assert {r.code for r in error.value.refusals} == {"run_not_locked", "test_company"}
    assert "company 1002 run 1: the payroll run is not locked" in str(error.value)
    plan = plan_run(lines, make_run(locked=False), make_mapping(), reference)
    assert plan.refused and plan.transactions == ()


def test_next_open_moves_a_closed_period_under_its_own_key(check_payload) -> None:
    run = make_run(year=2025, period=7)
    lines = parse_journal_xml(
        journal_xml(
            [
                ("20250725", "7/2025", [line_xml("4000", "10,00"), line_xml("1700", "10,00", "credit")]),
                ("20250725", "6/2025", [line_xml("4000", "2,00"), line_xml("1700", "2,00", "credit")]),
            ]
        )
    )
    mapping = make_mapping(closed_period_policy=ClosedPeriodPolicy.NEXT_OPEN)
    june, july = build_transactions(lines, run, mapping, demo_reference())
    model = check_payload(june.payload)
    assert (june.payroll_period, june.financial_period, june.moved_from) == ("202506", "202507", ("202506",))
    assert june.is_correction and not july.is_correction
    assert june.transaction_date == july.transaction_date == dt.date(2025, 7, 25)  # inside July, the run's own
    assert "202506 booked in 202507" in june.note
    assert "correction 2025-06 booked in 202507" in model.description.value
    assert (june.line_count, june.debit_cents, july.line_count, july.debit_cents) == (2, 200, 2, 1000)
    # where the lines are booked never changes which journal they are
    refusing = make_mapping()
    assert june.posting_key == posting_key(1002, 2025, 7, 1, "202506", "1000002/2/L")
    assert june.fingerprint != july.fingerprint
    refused = plan_run(lines, run, refusing, demo_reference())
    assert {r.code for r in refused.refusals} == {"period_closed"}


def test_all_zero_period_posts_nothing(run, mapping, reference) -> None:
    lines = parse_journal_xml(
        journal_xml(
            [
                ("20260325", "3/2026", [line_xml("4000", "1,00"), line_xml("1700", "1,00", "credit")]),
                ("20260325", "2/2026", [line_xml("4000", "0"), line_xml("1700", "0,00", "credit")]),
            ]
        )
    )
    assert [t.financial_period for t in build_transactions(lines, run, mapping, reference)] == ["202603"]


def test_build_many_equals_one_run_at_a_time(check_payload) -> None:
    """The batch path the bench measures gives the very bytes the one-run path gives."""
    base = parse_journal_xml(MARCH_WITH_CORRECTION)
    contexts, frames = {}, []
    variants = [
        (1001, make_mapping(1001, dimensions=False, branch="1"), "1000001"),
        (1002, make_mapping(1002), "1000002"),
        (1003, make_mapping(1003, account_translation={"4000": "4300"}), "1000001"),
        (1004, make_mapping(1004, test_company=True), "1000001"),
        (1005, make_mapping(1005, cost_unit=DimensionSetting(enabled=True, description="Department"),
                            cost_center=DimensionSetting(enabled=True, description="Project")), "1000001"),
    ]  # fmt: skip
    for number, mapping, tenant in variants:
        run = make_run(number, run_id=f"run-{number}", number=number % 10)
        lines = base if number != 1001 else base.assign(cost_center="", cost_unit="")
        lines = lines if number != 1005 else lines.assign(cost_center="1", cost_unit="100")
        contexts[run.run_id] = RunContext(run, mapping, demo_reference(tenant))
        frames.append(lines.assign(run_id=pd.Series(run.run_id, index=lines.index, dtype="str")))
    empty = make_run(1006, run_id="run-empty")
    contexts[empty.run_id] = RunContext(empty, make_mapping(1006), demo_reference())
    together = build_many(pd.concat(frames[::-1], ignore_index=True), contexts)
    assert list(together) == list(contexts)
    assert {r.code for r in together["run-1004"].refusals} == {"test_company"}
    assert {r.code for r in together["run-empty"].refusals} == {"invalid_journal"}
    for run_id, context in contexts.items():
        if run_id == "run-empty":
            continue
        alone = plan_run(frames[list(contexts).index(run_id)].drop(columns="run_id"), context.run,
                         context.mapping, context.reference)  # fmt: skip
        assert together[run_id] == alone
        for transaction in alone.transactions:
            check_payload(transaction.payload)
    seg = together["run-1005"].transactions[1].model().journalTransactionLines
    assert [s.model_dump() for s in seg[-1].subaccount] == [
        {"segmentId": 1, "segmentValue": "0100"},
        {"segmentId": 2, "segmentValue": "001"},
    ]
    assert together["run-1003"].transactions[0].model().journalTransactionLines[1].accountNumber.value == "4300"


def test_build_many_needs_a_context_per_run(run, mapping, reference) -> None:
    lines = parse_journal_xml(MARCH_WITH_CORRECTION).assign(run_id="someone-else")
    lines["run_id"] = lines["run_id"].astype("str")
    with pytest.raises(ValueError, match="without a context"):
        build_many(lines, {run.run_id: RunContext(run, mapping, reference)})
    with pytest.raises(ValueError, match="need their administration's reference"):
        build_many(lines, {"someone-else": RunContext(run, mapping, None)})
