"""Lines + run + mapping + Visma.net reference -> planned journal transactions, one per financial period.

`build_many` is the one path: a frame holding many runs (`run_id` column) is checked and built in a single
vectorised pass (aggregation, checks over per-run facts, mapping over unique values, columnar JSON
rendering), so a bureau's thousands of companies are one pass over one frame, not one per company
(bench/transform.py holds it against a bare pandas groupby). `plan_run` and `build_transactions` are the same
path for one run.

Lines are aggregated per (period, account, cost center, cost unit): debits and credits are summed separately
and written as separate lines (never netted), a negative sum stays on its side, so posted totals per account,
cost center and cost unit equal the payroll's to the cent.

One transaction per (run, payroll period its lines belong to, administration): that is the posting's identity
(journals/keys.py). A period closed in the general ledger may move where the lines are booked
(`closed_period_policy: next_open`), never which transaction they are, so a re-run after the close finds them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import pandas as pd

from nmbrs_visma.journals.checks import LineFacts, check_facts, facts_by_run
from nmbrs_visma.journals.frame import RUN_COLUMN, OversizedRun, aggregate_lines, runs_past_sum_limit, validate_lines
from nmbrs_visma.journals.keys import fingerprint, key_marker, mapping_administration_id, posting_key
from nmbrs_visma.journals.mapping import SegmentPlan, segment_plan, translate_account
from nmbrs_visma.journals.models import AdministrationMapping, AdministrationReference, PayrollRun, Refusal
from nmbrs_visma.journals.money import MAX_SUM_CENTS, format_cents, from_cents
from nmbrs_visma.journals.payload import (
    JournalTransactionUpdateDto,
    json_string,
    render_amounts,
    render_lines,
    render_transaction,
    subaccount_fragment,
)
from nmbrs_visma.journals.split import book, moved_note, own_periods, payroll_label


@dataclass(frozen=True)
class RunContext:
    """What building one run needs besides its lines: the run, its mapping and its administration's reference."""

    run: PayrollRun
    mapping: AdministrationMapping | None
    reference: AdministrationReference | None


@dataclass(frozen=True, slots=True)
class PlannedTransaction:
    """One journal transaction ready to post (or to preview in a dry run)."""

    company_number: int
    run_id: str
    administration_id: str
    posting_key: str
    fingerprint: str  # the content booked under the key (journals/keys.py)
    payroll_period: str  # YYYYPP: the payroll period the lines belong to (part of the key)
    financial_period: str  # YYYYPP: where they are booked (the same, unless a closed period moved them)
    transaction_date: dt.date
    is_correction: bool
    line_count: int
    debit_cents: int
    credit_cents: int
    payload: bytes = field(repr=False)
    moved_from: tuple[str, ...] = ()
    note: str = ""

    @property
    def debit(self) -> Decimal:
        return from_cents(self.debit_cents)

    @property
    def credit(self) -> Decimal:
        return from_cents(self.credit_cents)

    def model(self) -> JournalTransactionUpdateDto:
        """The payload as the pydantic model (exact decimals), e.g. for a preview."""
        return JournalTransactionUpdateDto.model_validate_json(self.payload)


@dataclass(frozen=True)
class RunPlan:
    """A run's outcome of planning: refused (with every reason) or its transactions."""

    run: PayrollRun
    refusals: tuple[Refusal, ...] = ()
    transactions: tuple[PlannedTransaction, ...] = ()

    @property
    def refused(self) -> bool:
        return bool(self.refusals)


class RunRefused(Exception):
    """`build_transactions` on a run the checks refuse; `refusals` holds every reason."""

    def __init__(self, refusals: tuple[Refusal, ...]) -> None:
        self.refusals = refusals
        super().__init__("; ".join(refusal.message for refusal in refusals))


def build_transactions(
    lines: pd.DataFrame,
    run: PayrollRun,
    mapping: AdministrationMapping,
    reference: AdministrationReference,
) -> list[PlannedTransaction]:
    """The run's transactions, one per financial period; raises `RunRefused` if any check refuses the run."""
    plan = plan_run(lines, run, mapping, reference)
    if plan.refused:
        raise RunRefused(plan.refusals)
    return list(plan.transactions)


def plan_run(
    lines: pd.DataFrame,
    run: PayrollRun,
    mapping: AdministrationMapping | None,
    reference: AdministrationReference | None,
) -> RunPlan:
    """`build_many` for one run's lines (a `run_id` column is added when missing)."""
    return build_many(with_run_id(lines, run), {run.run_id: RunContext(run, mapping, reference)})[run.run_id]


def with_run_id(lines: pd.DataFrame, run: PayrollRun) -> pd.DataFrame:
    """One run's line frame with its `run_id` column (added when missing), ready to join other runs'."""
    if RUN_COLUMN in lines.columns:
        return lines
    return lines.assign(**{RUN_COLUMN: pd.Series(run.run_id, index=lines.index, dtype="str")})


def build_many(lines: pd.DataFrame, contexts: Mapping[str, RunContext]) -> dict[str, RunPlan]:
    """Check and build every run in `lines` (keyed by `run_id`); a context without lines is refused as empty."""
    validate_lines(lines, require_run=True, key_nulls=False)  # aggregate_lines refuses missing keys
    unready = [run_id for run_id, c in contexts.items() if c.mapping is not None and c.reference is None]
    if unready:
        raise ValueError(f"mapped runs need their administration's reference: {unready[:5]}")
    plans: dict[str, RunPlan] = {}
    oversized = runs_past_sum_limit(lines)  # before any sum: int64 sums would wrap in silence
    if oversized:
        unknown = set(oversized) - set(contexts)
        if unknown:
            raise ValueError(f"lines of runs without a context: {sorted(unknown)[:5]}")
        lines = lines[~lines[RUN_COLUMN].isin(list(oversized))]
        for run_id, big in oversized.items():
            plans[run_id] = RunPlan(contexts[run_id].run, refusals=(_too_large(contexts[run_id].run, big),))
    aggregated = aggregate_lines(lines)
    facts = facts_by_run(aggregated)
    unknown = set(facts) - set(contexts)
    if unknown:
        raise ValueError(f"lines of runs without a context: {sorted(unknown)[:5]}")
    eligible: dict[str, RunContext] = {}
    for run_id, context in contexts.items():
        if run_id in plans:
            continue
        refusals = check_facts(facts.get(run_id, LineFacts()), context.run, context.mapping, context.reference)
        if refusals:
            plans[run_id] = RunPlan(context.run, refusals=tuple(refusals))
        else:
            eligible[run_id] = context
    if eligible:
        keep = aggregated[RUN_COLUMN].isin(list(eligible)) if len(eligible) < len(contexts) else None
        plans.update(_build(aggregated if keep is None else aggregated[keep], eligible))
    return {run_id: plans[run_id] for run_id in contexts}


def _too_large(run: PayrollRun, big: OversizedRun) -> Refusal:
    """The `amount_too_large` refusal: names the company, the run and its biggest line."""
    return Refusal(
        code="amount_too_large",
        message=(
            f"company {run.company_number} run {run.run_number} of {run.year} ({run.run_id}): transaction "
            f"{big.transaction} line {big.line} {big.side} {format_cents(big.cents)}: the run's amounts add up to "
            f"{format_cents(big.magnitude)}, past the {format_cents(MAX_SUM_CENTS)} its sums are kept within "
            "(a total could overflow); refused rather than booked with a wrong total"
        ),
        company=run.company_number,
    )


def _build(aggregated: pd.DataFrame, contexts: Mapping[str, RunContext]) -> dict[str, RunPlan]:
    """Render every eligible run's transactions from its aggregated rows (sorted by run, then period)."""
    run_codes, run_ids = pd.factorize(aggregated[RUN_COLUMN], sort=False)
    run_list = [contexts[run_id] for run_id in run_ids]
    accounts = _account_literals(aggregated["account"], run_codes, run_list)
    subaccounts, subaccount_contents = _subaccount_fragments(aggregated, run_codes, run_list)
    references = np.array([json_string(c.run.reference) for c in run_list], dtype=object)[run_codes]
    descriptions = _literals(aggregated["description"])

    # Up to two output lines per aggregated row: its debit sum, then its credit sum (zero sums are left out).
    debit_sums = aggregated["debit_cents"].to_numpy()
    credit_sums = aggregated["credit_cents"].to_numpy()
    amounts = np.column_stack([debit_sums, credit_sums]).ravel()
    present = amounts != 0
    rows = np.repeat(np.arange(len(aggregated)), 2)[present]
    is_debit = np.tile(np.array([True, False]), len(aggregated))[present]
    fragments = render_lines(
        accounts=accounts[rows].tolist(),
        subaccounts=subaccounts[rows].tolist(),
        references=references[rows].tolist(),
        descriptions=descriptions[rows].tolist(),
        amounts=render_amounts(amounts[present]).tolist(),
        debit=is_debit.tolist(),
    )
    # The content each line books, for the fingerprints: account, subaccount, side, amount (no texts).
    sides = np.where(is_debit, "D", "C").astype(object)
    contents = (accounts[rows] + subaccount_contents[rows] + sides + render_amounts(amounts[present])).tolist()

    # Blocks of (run, source period): contiguous, because the aggregation is sorted by run then period.
    period_codes, period_ids = pd.factorize(aggregated["period_id"], sort=False)
    block_start = (
        np.flatnonzero(np.r_[True, (run_codes[1:] != run_codes[:-1]) | (period_codes[1:] != period_codes[:-1])])
        if len(aggregated)
        else np.array([], dtype=np.int64)
    )
    block_end = np.r_[block_start[1:], len(aggregated)].astype(np.int64)
    line_start = np.searchsorted(rows, block_start)
    line_end = np.searchsorted(rows, block_end)
    block_debit = np.add.reduceat(debit_sums, block_start) if len(block_start) else block_start
    block_credit = np.add.reduceat(credit_sums, block_start) if len(block_start) else block_start
    days = aggregated["date"].to_numpy().astype("datetime64[D]")
    block_date = np.maximum.reduceat(days, block_start).tolist() if len(block_start) else []
    # Plain Python ints from here on: sums of int64 cents stay exact and the loop stays cheap.
    line_start, line_end = line_start.tolist(), line_end.tolist()
    block_debit, block_credit = block_debit.tolist(), block_credit.tolist()
    block_source = np.asarray(period_ids, dtype=object)[period_codes[block_start]].tolist()

    per_run: dict[int, list[int]] = {}
    for block, code in enumerate(run_codes[block_start].tolist()):
        per_run.setdefault(code, []).append(block)
    lines = _BlockLines(fragments, contents, line_start, line_end, block_debit, block_credit, block_date)
    plans = {}
    for code, blocks in per_run.items():
        context = run_list[code]
        own = own_periods(context.run)
        administration = mapping_administration_id(context.mapping, context.reference)
        transactions = [
            _transaction(context, administration, block_source[block], block, own, lines)
            for block in blocks
            if lines.end[block] > lines.start[block]
        ]
        plans[context.run.run_id] = RunPlan(context.run, transactions=tuple(transactions))
    return plans


@dataclass(frozen=True, slots=True)
class _BlockLines:
    """The rendered lines of every (run, payroll period) block, and each block's span and totals."""

    fragments: list[str]
    contents: list[str]
    start: list[int]
    end: list[int]
    debit: list[int]
    credit: list[int]
    date: list[dt.date]


def _transaction(
    context: RunContext, administration: str, source: str, block: int, own: frozenset[str], lines: _BlockLines
) -> PlannedTransaction:
    """The transaction of one (run, payroll period) block, booked in that period or the one it moves to."""
    run, mapping, reference = context.run, context.mapping, context.reference
    booking = book(
        source,
        run,
        lines.date[block],
        reference.periods,
        mapping=mapping.period_mapping_for(run.period_type),
        policy=mapping.closed_period_policy,
    )
    target, moved, date = booking.period_id, booking.moved_from, booking.transaction_date
    key = posting_key(run.company_number, run.year, run.period_end, run.sequence, source, administration)
    content = fingerprint(run.company_number, source, lines.contents[lines.start[block] : lines.end[block]])
    is_correction = source not in own
    label = f"Payroll {run.year}/{run.period_end:02d} run {run.sequence} company {run.company_number}"
    if is_correction:
        label += f" correction {payroll_label(source, run.period_type)}"
    if moved:
        label += f" booked in {target}"
    payload = render_transaction(
        hold=mapping.hold,
        transaction_date=date,
        financial_period=target,
        ledger=mapping.ledger,
        description=f"{label} {key_marker(key, content)}",
        branch=mapping.branch,
        lines=[",".join(lines.fragments[lines.start[block] : lines.end[block]])],
    )
    return PlannedTransaction(
        company_number=run.company_number,
        run_id=run.run_id,
        administration_id=administration,
        posting_key=key,
        fingerprint=content,
        payroll_period=source,
        financial_period=target,
        transaction_date=date,
        is_correction=is_correction,
        line_count=lines.end[block] - lines.start[block],
        debit_cents=lines.debit[block],
        credit_cents=lines.credit[block],
        payload=payload,
        moved_from=moved,
        note=moved_note(moved, target),
    )


def _literals(values: pd.Series) -> np.ndarray:
    """JSON string literals of a text column, escaping each distinct value once."""
    codes, uniques = pd.factorize(values, sort=False)
    return np.array([json_string(v) for v in uniques], dtype=object)[codes]


def _account_literals(accounts: pd.Series, run_codes: np.ndarray, runs: list[RunContext]) -> np.ndarray:
    """Visma.net account literal per row; translation tables are applied only to the runs that have one."""
    literals = _literals(accounts)
    translating = np.array([bool(c.mapping.account_translation) for c in runs], dtype=bool)
    rows = np.flatnonzero(translating[run_codes]) if translating.any() else ()
    for row in rows:
        mapping = runs[run_codes[row]].mapping
        literals[row] = json_string(translate_account(accounts.iat[row], mapping))
    return literals


def _subaccount_fragments(
    aggregated: pd.DataFrame, run_codes: np.ndarray, runs: list[RunContext]
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the subaccount fragment of the payload (every segment) and of its content (journals/mapping.py
    `content_values`), computed once per distinct (segment plan, cost center, cost unit)."""
    distinct_plans: dict[tuple, SegmentPlan] = {}
    for context in runs:
        plan = segment_plan(context.mapping, context.reference)
        distinct_plans.setdefault(plan.key(), plan)
    plan_index = {key: code for code, key in enumerate(distinct_plans)}
    first_plan = list(distinct_plans.values())
    plan_codes = np.array([plan_index[segment_plan(c.mapping, c.reference).key()] for c in runs], dtype=np.int64)
    cc_codes, cc_values = pd.factorize(aggregated["cost_center"], sort=False)
    cu_codes, cu_values = pd.factorize(aggregated["cost_unit"], sort=False)
    combined = (plan_codes[run_codes].astype(np.int64) * len(cc_values) + cc_codes) * len(cu_values) + cu_codes
    distinct, inverse = np.unique(combined, return_inverse=True)
    fragments, contents = [], []
    for value in distinct.tolist():
        rest, cu = divmod(value, len(cu_values))
        plan, cc = divmod(rest, len(cc_values))
        segment_plan_ = first_plan[plan]
        fragments.append(subaccount_fragment(segment_plan_.segment_values(cc_values[cc], cu_values[cu])))
        contents.append(subaccount_fragment(segment_plan_.content_values(cc_values[cc], cu_values[cu])))
    if not fragments:
        return np.array([], dtype=object), np.array([], dtype=object)
    return np.array(fragments, dtype=object)[inverse], np.array(contents, dtype=object)[inverse]
