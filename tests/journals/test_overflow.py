"""Integer-cent sums that cannot fit int64 are refused (`amount_too_large`), never wrapped into a wrong total."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from nmbrs_visma.journals.build import RunContext, build_many, plan_run
from nmbrs_visma.journals.frame import make_lines, runs_past_sum_limit
from nmbrs_visma.journals.money import MAX_CENTS, MAX_SUM_CENTS
from nmbrs_visma.journals.nmbrs_xml import parse_journal_xml

from .builders import MARCH_WITH_CORRECTION, journal_xml, line_xml, make_run

BIGGEST = "9999999999999,99"  # the largest amount the parser reads (MAX_CENTS - 1 cents)


def huge_journal(lines: int) -> bytes:
    """A balanced March journal of `lines` debits of the biggest amount on one account, and as many credits."""
    debits = [line_xml("4000", BIGGEST, "debit", "100", "1") for _ in range(lines)]
    credits = [line_xml("1700", BIGGEST, "credit") for _ in range(lines)]
    return journal_xml([("20260325", "3/2026", debits + credits)])


def test_a_run_whose_sums_would_wrap_int64_is_refused_naming_company_run_and_line(mapping, reference) -> None:
    lines = parse_journal_xml(huge_journal(10_000))  # each line fits; 10 000 of them on one account do not
    debit = lines["debit_cents"].to_numpy()
    assert int(debit.max()) == MAX_CENTS - 1
    assert int(debit.sum()) != sum(int(v) for v in debit), "the premise: an int64 sum of these lines wraps"

    run = make_run()
    plan = plan_run(lines, run, mapping, reference)

    assert plan.refused and not plan.transactions
    (refusal,) = plan.refusals
    assert refusal.code == "amount_too_large" and refusal.company == 1002
    assert refusal.message.startswith(f"company 1002 run 1 of 2026 ({run.run_id}): transaction 1 line 1 debit ")
    assert "9999999999999.99" in refusal.message and str(MAX_SUM_CENTS // 100) in refusal.message


def test_only_the_run_past_the_bound_is_refused_the_others_build(mapping, reference) -> None:
    big, small = make_run(run_id="big"), make_run(run_id="small")
    frames = [
        parse_journal_xml(huge_journal(2500)).assign(run_id="big"),
        parse_journal_xml(MARCH_WITH_CORRECTION).assign(run_id="small"),
    ]
    lines = pd.concat(frames, ignore_index=True).astype({"run_id": "str"})
    plans = build_many(
        lines, {"big": RunContext(big, mapping, reference), "small": RunContext(small, mapping, reference)}
    )
    assert [r.code for r in plans["big"].refusals] == ["amount_too_large"]
    assert not plans["small"].refused
    assert [t.financial_period for t in plans["small"].transactions] == ["202601", "202603"]


def frame(debit: int, credit: int) -> pd.DataFrame:
    """Two lines of one March transaction: a debit of `debit` cents and a credit of `credit` cents."""
    return make_lines(
        {
            "transaction": [1, 1],
            "line": [1, 2],
            "period_id": ["202603", "202603"],
            "date": [pd.Timestamp(dt.date(2026, 3, 25))] * 2,
            "account": ["4000", "1700"],
            "cost_center": ["100", ""],
            "cost_unit": ["1", ""],
            "debit_cents": [debit, 0],
            "credit_cents": [0, credit],
            "description": ["", ""],
            "run_id": ["run-1", "run-1"],
        }
    )


def test_the_bound_holds_for_a_frame_built_by_hand_and_below_it_totals_are_exact(mapping, reference) -> None:
    below = MAX_SUM_CENTS // 2 - 1  # debit + credit magnitudes just under the bound
    plan = plan_run(frame(below, below), make_run(), mapping, reference)
    assert not plan.refused
    (transaction,) = plan.transactions
    assert transaction.debit_cents == transaction.credit_cents == below

    at = MAX_SUM_CENTS // 2
    plan = plan_run(frame(at, at), make_run(), mapping, reference)
    assert [r.code for r in plan.refusals] == ["amount_too_large"]
    assert "transaction 1 line 1 debit" in plan.refusals[0].message

    wrapped = np.iinfo(np.int64).min  # a line that is itself out of range: refused, its magnitude read as a bound
    plan = plan_run(frame(0, wrapped), make_run(), mapping, reference)
    assert [r.code for r in plan.refusals] == ["amount_too_large"]
    assert "transaction 1 line 2 credit" in plan.refusals[0].message


def test_ordinary_journals_take_the_fast_path() -> None:
    lines = parse_journal_xml(MARCH_WITH_CORRECTION).assign(run_id="run-1").astype({"run_id": "str"})
    assert runs_past_sum_limit(lines) == {}
    assert runs_past_sum_limit(lines.iloc[0:0]) == {}
