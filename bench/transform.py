"""Benchmark of the parse-free transform: line frame in, payload bytes out, against a bare pandas groupby.

1,000,000 synthetic journal lines over 2,000 companies, each with three periods (its own March run and
corrections of January and February, partly negative), all mapped with cost centers and cost units. The
pipeline is `build_many`, the very function the flows call: aggregation, every check, mapping, correction
split, posting keys and JSON rendering. The baseline is `groupby(keys)[amounts].sum()` of the same frame in
the same process. Peak memory is the process's maximum resident set size (ru_maxrss).

    python bench/transform.py [--lines N] [--companies N] [--repeat N]

The last line is `ratio=<pipeline/bare> peak_mb=<MB>` (target: ratio <= 3, peak < 1536 MB).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from nmbrs_visma.journals.build import RunContext, build_many
from nmbrs_visma.journals.frame import GROUP_KEYS, RUN_COLUMN, make_lines
from nmbrs_visma.journals.models import (
    AdministrationMapping,
    DimensionSetting,
    PayrollRun,
)
from nmbrs_visma.sandbox import demo_data

YEAR, OWN_PERIOD = 2026, 3
PERIODS = ("202601", "202602", "202603")
BLOCK = 5  # lines per employee and period: gross, social charges (debit) / wage tax, social, net (credit)


def synthetic_lines(n_lines: int, n_companies: int, seed: int = 7) -> tuple[pd.DataFrame, list[str]]:
    """A balanced multi-run line frame (`run_id` column); per company 60% own period, 20% per correction."""
    rng = np.random.default_rng(seed)
    blocks_per_company = max(3, n_lines // (n_companies * BLOCK))
    n_blocks = blocks_per_company * n_companies
    company = np.repeat(np.arange(n_companies), blocks_per_company)
    position = np.tile(np.arange(blocks_per_company), n_companies) / blocks_per_company
    period = np.where(position < 0.2, 0, np.where(position < 0.4, 1, 2))
    gross = rng.integers(150_000, 600_000, n_blocks)
    gross = np.where((period < 2) & (rng.random(n_blocks) < 0.3), -gross // 10, gross)  # negative corrections
    tax = gross * 3 // 10
    social = gross // 5
    cost_center = rng.choice(np.array(["100", "200", "300"], dtype=object), n_blocks)
    cost_unit = rng.choice(np.array(["1", "2", "3"], dtype=object), n_blocks)

    n = n_blocks * BLOCK
    kind = np.tile(np.arange(BLOCK), n_blocks)
    block = np.repeat(np.arange(n_blocks), BLOCK)
    amount = np.stack([gross, social, tax, social, gross - tax], axis=1).ravel()
    is_debit = kind < 2
    accounts = np.array(["4000", "4100", "1600", "1610", "1700"], dtype=object)
    texts = np.array(["Bruto loon", "Werkgeverslasten", "Loonheffing", "Sociale lasten", "Netto loon"], dtype=object)
    on_costs = is_debit  # cost lines carry the dimensions, balance-sheet lines none
    run_ids = np.array([f"00000000-0000-4000-8000-{c:012d}" for c in range(n_companies)], dtype=object)
    period_ids = np.array(PERIODS, dtype=object)
    dates = np.array(["2026-01-31", "2026-02-28", "2026-03-25"], dtype="datetime64[ns]")
    transaction = (period[block] + 1).astype(np.int32)
    frame = make_lines(
        {
            RUN_COLUMN: run_ids[company[block]],
            "transaction": transaction,
            "line": (np.arange(n) % 1_000_000 + 1).astype(np.int32),
            "period_id": period_ids[period[block]],
            "date": np.full(n, dates[2]),  # Nmbrs dates every transaction of the run on the run date
            "account": accounts[kind],
            "cost_center": np.where(on_costs, cost_center[block], ""),
            "cost_unit": np.where(on_costs, cost_unit[block], ""),
            "debit_cents": np.where(is_debit, amount, 0),
            "credit_cents": np.where(is_debit, 0, amount),
            "description": texts[kind],
        }
    )
    return frame, list(run_ids)


def contexts_for(run_ids: list[str]) -> dict[str, RunContext]:
    """One run, mapping and administration (own tenant) per company, on the demo world's accounts/segments."""
    base = demo_data.demo_reference()
    contexts = {}
    for number, run_id in enumerate(run_ids, start=10_000):
        run = PayrollRun(
            company_id=run_id, company_number=number, run_id=run_id, run_number=1, year=YEAR,
            period_start=OWN_PERIOD, period_end=OWN_PERIOD, locked=True,
        )  # fmt: skip
        mapping = AdministrationMapping(
            nmbrs_company=number, visma_account="bench", branch="1", ledger="L",
            cost_center=DimensionSetting(enabled=True, description="Department"),
            cost_unit=DimensionSetting(enabled=True, description="Project"),
        )  # fmt: skip
        contexts[run_id] = RunContext(run, mapping, base.model_copy(update={"tenant_id": str(number)}))
    return contexts


def best_of(repeat: int, **actions: Callable[[], object]) -> tuple[dict[str, float], dict[str, object]]:
    """Best wall time of each action over `repeat` rounds, the actions interleaved so load hits them alike."""
    best = dict.fromkeys(actions, float("inf"))
    results: dict[str, object] = {}
    for _ in range(repeat):
        for name, action in actions.items():
            start = time.perf_counter()
            results[name] = action()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--companies", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    frame, run_ids = synthetic_lines(args.lines, args.companies)
    contexts = contexts_for(run_ids)
    keys = list(GROUP_KEYS)
    times, results = best_of(
        args.repeat,
        bare=lambda: frame.groupby(keys)[["debit_cents", "credit_cents"]].sum(),
        pipeline=lambda: build_many(frame, contexts),
    )
    bare, pipeline, plans = times["bare"], times["pipeline"], results["pipeline"]

    transactions = [t for plan in plans.values() for t in plan.transactions]
    refused = sum(plan.refused for plan in plans.values())
    payload_mb = sum(len(t.payload) for t in transactions) / 1e6
    posted = sum(t.debit_cents for t in transactions)
    assert refused == 0 and posted == int(frame["debit_cents"].sum()), "the bench's data must be sent in full"
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"lines={len(frame)} companies={len(run_ids)} transactions={len(transactions)} payload_mb={payload_mb:.1f}")
    print(f"bare_groupby_s={bare:.3f} pipeline_s={pipeline:.3f}")
    print(f"ratio={pipeline / bare:.2f} peak_mb={peak_mb:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
