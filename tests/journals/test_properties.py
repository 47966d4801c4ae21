"""Properties over random balanced journals: not a cent lost or moved, balance kept, every payload valid."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmbrs_visma.journals.build import plan_run
from nmbrs_visma.journals.frame import make_lines
from nmbrs_visma.journals.models import ClosedPeriodPolicy
from nmbrs_visma.journals.split import split_by_period

from .builders import demo_reference, make_mapping, make_run

ACCOUNTS = ("4000", "4100", "4200", "4300", "1600", "1610", "1620")
# 2025: 202505/06 are closed in the demo ledger; with NEXT_OPEN they move into 202507.
SCENARIOS = {
    "refuse": (2026, 3, ("202601", "202602", "202603"), ClosedPeriodPolicy.REFUSE, {}),
    "next_open": (2025, 8, ("202505", "202506", "202507", "202508"), ClosedPeriodPolicy.NEXT_OPEN,
                  {"202505": "202507", "202506": "202507"}),
}  # fmt: skip

line = st.tuples(
    st.sampled_from(ACCOUNTS),
    st.sampled_from(("", "100", "200", "300")),
    st.sampled_from(("", "1", "2", "3")),
    st.integers(min_value=-(10**9), max_value=10**9),
    st.booleans(),
)


@st.composite
def journals(draw):
    scenario = draw(st.sampled_from(sorted(SCENARIOS)))
    periods = SCENARIOS[scenario][2]
    chosen = draw(st.lists(st.sampled_from(periods), min_size=1, max_size=len(periods), unique=True))
    return scenario, {period: draw(st.lists(line, min_size=1, max_size=12)) for period in chosen}


def frame_of(journal: dict) -> pd.DataFrame:
    """One transaction per period, closed by a balancing credit on 1700 (negative when credits exceed)."""
    rows = []
    for number, (period, lines) in enumerate(journal.items(), start=1):
        balance = sum(c if debit else -c for _, _, _, c, debit in lines)
        for index, (account, center, unit, cents, debit) in enumerate([*lines, ("1700", "", "", balance, False)]):
            rows.append(
                (number, index + 1, period, account, center, unit, cents if debit else 0, 0 if debit else cents)
            )
    columns = list(zip(*rows, strict=True))
    return make_lines(
        {
            "transaction": columns[0], "line": columns[1], "period_id": columns[2],
            "date": [pd.Timestamp(f"{p[:4]}-{p[4:]}-20") for p in columns[2]],
            "account": columns[3], "cost_center": columns[4], "cost_unit": columns[5],
            "debit_cents": columns[6], "credit_cents": columns[7], "description": ["x"] * len(rows),
        }
    )  # fmt: skip


def totals(frame: pd.DataFrame, keys: list[str]) -> dict:
    sums = frame.groupby(keys)[["debit_cents", "credit_cents"]].sum()
    return {key: tuple(int(v) for v in row) for key, row in zip(sums.index, sums.to_numpy(), strict=True)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(journals())
def test_split_and_build_keep_every_cent_and_the_balance(check_payload, drawn) -> None:
    scenario, journal = drawn
    year, period, _, policy, moves = SCENARIOS[scenario]
    run, reference = make_run(year=year, period=period), demo_reference()
    mapping = make_mapping(closed_period_policy=policy)
    lines = frame_of(journal)

    # The split: every line in exactly one journal, totals per account / cost center / cost unit unchanged.
    split = split_by_period(lines, run, periods=reference.periods, policy=policy)
    assert sum(len(j.lines) for j in split) == len(lines)
    together = pd.concat([j.lines for j in split])
    assert sorted(together.index) == sorted(lines.index)
    for keys in (["account"], ["cost_center"], ["cost_unit"], ["account", "cost_center", "cost_unit"]):
        assert totals(together, keys) == totals(lines, keys)
    for journal_part in split:
        assert journal_part.lines["debit_cents"].sum() == journal_part.lines["credit_cents"].sum()

    # The payloads: posted per (period, account, segments, side) equals the payroll, to the cent.
    plan = plan_run(lines, run, mapping, reference)
    assert not plan.refused, plan.refusals
    own = [t.payroll_period for t in plan.transactions]  # one per payroll period, booked where it moves
    assert own == sorted(set(own)) and set(own) <= set(journal)
    assert all(t.financial_period == moves.get(t.payroll_period, t.payroll_period) for t in plan.transactions)
    posted: Counter = Counter()
    for transaction in plan.transactions:
        model = check_payload(transaction.payload)
        assert model.financialPeriod.value == transaction.financial_period
        debit = credit = 0
        for payload_line in json.loads(transaction.payload, parse_float=Decimal)["journalTransactionLines"]:
            segments = {s["segmentId"]: s["segmentValue"] for s in payload_line.get("subaccount", [])}
            key = (transaction.financial_period, payload_line["accountNumber"]["value"], segments.get(1, ""),
                   segments.get(2, ""))  # fmt: skip
            if "debitAmountInCurrency" in payload_line:
                cents = int(payload_line["debitAmountInCurrency"]["value"] * 100)
                posted[(*key, "debit")] += cents
                debit += cents
            else:
                cents = int(payload_line["creditAmountInCurrency"]["value"] * 100)
                posted[(*key, "credit")] += cents
                credit += cents
        assert debit == credit == transaction.debit_cents == transaction.credit_cents  # balanced stays balanced
    expected: Counter = Counter()
    for row in lines.itertuples():
        center = row.cost_center.zfill(4) if row.cost_center else "0000"  # padded to the Department segment
        unit = row.cost_unit.zfill(3) if row.cost_unit else "000"  # padded to the Project segment, or its zero
        key = (moves.get(row.period_id, row.period_id), row.account, center, unit)
        expected[(*key, "debit")] += row.debit_cents
        expected[(*key, "credit")] += row.credit_cents
    # Every non-zero total, negative ones included (a zero total posts no line).
    assert {k: v for k, v in posted.items() if v} == {k: v for k, v in expected.items() if v}
