"""Eligibility: every reason a company's run cannot be sent, as pure functions returning `Refusal`s.

A run is sent whole or not at all, and a bureau fixes all problems in one go only if it sees all of them, so
each check collects every reason instead of stopping at the first. The checks read `LineFacts` (what a run's
lines contain: accounts, dimension values and per-period totals, each with its first line), which is
computed once, vectorised, for a whole batch of runs (`facts_by_run`) or for one run (`facts_of`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nmbrs_visma.journals.frame import RUN_COLUMN, aggregate_lines, validate_lines
from nmbrs_visma.journals.mapping import (
    DIMENSIONS,
    dimension_setting,
    find_segment,
    pad_segment_value,
    segment_plan,
    translate_account,
    zero_value,
)
from nmbrs_visma.journals.models import (
    AdministrationMapping,
    AdministrationReference,
    ClosedPeriodPolicy,
    PayrollRun,
    Refusal,
    RefusalCode,
)
from nmbrs_visma.journals.money import format_cents
from nmbrs_visma.journals.split import mapped_period, next_open_period, payroll_bounds, payroll_label

LineRef = tuple[int, int]  # (transaction, line), 1-based, document order

_LABELS = {"cost_center": "cost center", "cost_unit": "cost unit"}


@dataclass(frozen=True)
class PeriodTotals:
    debit_cents: int
    credit_cents: int
    first: LineRef


@dataclass(frozen=True)
class LineFacts:
    """What one run's lines contain; each value with the first line that carries it."""

    accounts: dict[str, LineRef] = field(default_factory=dict)
    cost_center: dict[str, LineRef] = field(default_factory=dict)
    cost_unit: dict[str, LineRef] = field(default_factory=dict)
    periods: dict[str, PeriodTotals] = field(default_factory=dict)
    without: dict[str, LineRef] = field(default_factory=dict)  # dimension -> first line without a value

    def dimension(self, name: str) -> dict[str, LineRef]:
        return self.cost_center if name == "cost_center" else self.cost_unit


def facts_by_run(aggregated: pd.DataFrame) -> dict[str, LineFacts]:
    """`LineFacts` per run from `frame.aggregate_lines` output (vectorised over all runs at once)."""
    order = (aggregated["transaction"].to_numpy(dtype="int64") << 32) | aggregated["line"].to_numpy(dtype="int64")
    work = aggregated.assign(order=order)
    facts: dict[str, LineFacts] = {run_id: LineFacts() for run_id in pd.unique(work[RUN_COLUMN])}
    for column, attribute in (("account", "accounts"), ("cost_center", "cost_center"), ("cost_unit", "cost_unit")):
        for run_id, value, ref in _first_lines(work, column, order, skip_empty=False):
            if value == "" and column != "account":
                facts[run_id].without[column] = ref
            else:
                getattr(facts[run_id], attribute)[value] = ref
    by_period = work.groupby([RUN_COLUMN, "period_id"], sort=True, observed=True)
    totals, firsts = by_period[["debit_cents", "credit_cents"]].sum(), by_period["order"].min()
    runs, periods = (totals.index.get_level_values(level).tolist() for level in (0, 1))
    debits, credits = totals["debit_cents"].tolist(), totals["credit_cents"].tolist()
    for run_id, period_id, debit, credit, ref in zip(
        runs, periods, debits, credits, _refs(firsts.to_numpy()), strict=True
    ):
        facts[run_id].periods[period_id] = PeriodTotals(debit, credit, ref)
    return facts


def _first_lines(
    work: pd.DataFrame, column: str, order: np.ndarray, *, skip_empty: bool
) -> list[tuple[str, str, LineRef]]:
    """(run, value, first line) per distinct (run, value) of `column`, in order of first appearance.

    On the aggregated frame's categorical keys this is integer work in numpy (a pandas groupby per column has
    a fixed cost that outweighs the checks themselves on a run's few hundred rows); other frames take the groupby.
    """
    runs, values = work[RUN_COLUMN], work[column]
    if not (isinstance(runs.dtype, pd.CategoricalDtype) and isinstance(values.dtype, pd.CategoricalDtype)):
        present = work[values != ""] if skip_empty else work
        firsts = present.groupby([RUN_COLUMN, column], sort=False, observed=True)["order"].min()
        run_ids, found = (firsts.index.get_level_values(level).tolist() for level in (0, 1))
        return list(zip(run_ids, found, _refs(firsts.to_numpy()), strict=True))
    run_codes = runs.cat.codes.to_numpy().astype(np.int64)
    value_codes = values.cat.codes.to_numpy().astype(np.int64)
    categories = values.cat.categories
    keep = np.ones(len(work), dtype=bool)
    if skip_empty and "" in categories:
        keep = value_codes != categories.get_loc("")
    width = len(categories) + 1
    keys = run_codes[keep] * width + value_codes[keep]
    unique, first_row, inverse = np.unique(keys, return_index=True, return_inverse=True)
    lowest = np.full(len(unique), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(lowest, inverse.reshape(-1), order[keep])
    appearance = np.argsort(first_row, kind="stable")
    run_names, value_names = runs.cat.categories, categories
    return [
        (run_names[unique[group] // width], value_names[unique[group] % width], ref)
        for group, ref in zip(appearance.tolist(), _refs(lowest[appearance]), strict=True)
    ]


def _refs(orders: np.ndarray) -> list[LineRef]:
    """(transaction, line) pairs from packed `transaction << 32 | line` values."""
    return list(zip((orders >> 32).tolist(), (orders & 0xFFFFFFFF).tolist(), strict=True))


def facts_of(lines: pd.DataFrame) -> LineFacts:
    """`LineFacts` of one run's line frame."""
    validate_lines(lines)
    if lines.empty:
        return LineFacts()
    single = lines.assign(**{RUN_COLUMN: pd.Series("run", index=lines.index, dtype="str")})
    return facts_by_run(aggregate_lines(single))["run"]


def _where(ref: LineRef) -> str:
    return f"transaction {ref[0]} line {ref[1]}"


class _Collector:
    """Builds refusals that all name the company and run."""

    def __init__(self, run: PayrollRun) -> None:
        self.run = run
        self.refusals: list[Refusal] = []

    def add(self, code: RefusalCode, message: str, *, period_id: str | None = None) -> None:
        prefix = f"company {self.run.company_number} run {self.run.run_number}"
        if period_id is not None:
            prefix += f" period {period_id}"
        self.refusals.append(
            Refusal(code=code, message=f"{prefix}: {message}", company=self.run.company_number, period_id=period_id)
        )


def check_company(run: PayrollRun, mapping: AdministrationMapping | None) -> list[Refusal]:
    """Test company, blocked debtor, unmapped company, run not locked."""
    out = _Collector(run)
    if mapping is None:
        out.add("unmapped_company", "the company is not mapped to a Visma.net administration")
    else:
        if mapping.nmbrs_company != run.company_number:
            out.add("unmapped_company", f"the mapping given is for company {mapping.nmbrs_company}")
        if mapping.test_company:
            out.add("test_company", "the company is marked as a test company")
        if mapping.debtor_blocked:
            out.add("debtor_blocked", "the company's debtor is blocked")
    if not run.locked:
        out.add("run_not_locked", "the payroll run is not locked (final) in Nmbrs")
    return out.refusals


def check_dimensions(
    facts: LineFacts, run: PayrollRun, mapping: AdministrationMapping, reference: AdministrationReference
) -> list[Refusal]:
    """Dimensions used but not activated, segment descriptions not found, values unknown or inactive.

    An enabled dimension that no line uses is fine (balance-sheet lines carry no cost center).
    """
    out = _Collector(run)
    segments = {}
    for dimension in DIMENSIONS:
        setting, used, label = dimension_setting(mapping, dimension), facts.dimension(dimension), _LABELS[dimension]
        if not setting.enabled:
            if used:
                value, ref = min(used.items(), key=lambda item: item[1])
                out.add(
                    "dimension_not_activated",
                    f"lines carry {label}s ({len(used)} distinct, first {value!r} on {_where(ref)}) but the "
                    f"{label} dimension is not activated in the mapping",
                )
            continue
        segment = find_segment(reference, setting.description)
        if segment is None:
            known = ", ".join(repr(s.description) for s in reference.segments) or "none"
            out.add(
                "segment_not_found",
                f"{label} segment description {setting.description!r} not found in Visma.net (segments: {known})",
            )
            continue
        segments[dimension] = segment
        for value, ref in sorted(used.items(), key=lambda item: item[1]):
            padded = pad_segment_value(value, segment)
            active = segment.values.get(padded)
            if active is None:
                out.add(
                    "unknown_segment_value",
                    f"{label} {value!r} (segment {segment.description!r} value {padded!r}, length "
                    f"{segment.length}) on {_where(ref)} does not exist in Visma.net",
                )
            elif not active:
                out.add(
                    "inactive_segment_value",
                    f"{label} {value!r} (segment {segment.description!r} value {padded!r}) on {_where(ref)} "
                    "is inactive in Visma.net",
                )
    if len(segments) == 2 and segments["cost_center"].segment_id == segments["cost_unit"].segment_id:
        out.add(
            "segment_not_found",
            f"cost center and cost unit both map to segment {segments['cost_center'].description!r}",
        )
    return out.refusals


def check_subaccounts(
    facts: LineFacts, run: PayrollRun, mapping: AdministrationMapping, reference: AdministrationReference
) -> list[Refusal]:
    """Every line gives a value for every segment of the subaccount dimension: a segment no dimension maps, or
    a dimension's segment on a line without its value, needs a fill (the mapping's `default`, else the all-zero
    value), and that value must exist and be active in Visma.net."""
    out = _Collector(run)
    if not facts.periods:
        return out.refusals
    plan = segment_plan(mapping, reference)
    mapped = {
        segment.segment_id: dimension for dimension in DIMENSIONS if (segment := plan.segment(dimension)) is not None
    }
    fills = {segment_id: fill for segment_id, fill, _ in plan.fills}
    for segment in sorted(reference.segments, key=lambda s: s.segment_id):
        dimension = mapped.get(segment.segment_id)
        if dimension is not None and dimension not in facts.without:
            continue  # every line carries its own value
        where = (
            f"lines without a {_LABELS[dimension]} (first on {_where(facts.without[dimension])})"
            if dimension is not None
            else "every line (no dimension of the mapping maps it)"
        )
        name = f"subaccount segment {segment.description!r} (id {segment.segment_id})"
        fill = fills.get(segment.segment_id)
        setting = dimension_setting(mapping, dimension) if dimension is not None else None
        if fill is None:
            hint = f"give {dimension}.default in the mapping, or " if dimension is not None else ""
            out.add(
                "segment_default_missing",
                f"{name} needs a value for {where}, and Visma.net holds no all-zero value "
                f"{zero_value(segment)!r}: {hint}add that value to the segment in Visma.net",
            )
        elif (active := segment.values.get(fill)) is None or not active:
            given = "the mapping's default" if setting is not None and setting.default.strip() else "the default"
            state = "does not exist" if active is None else "is inactive"
            code: RefusalCode = "unknown_segment_value" if active is None else "inactive_segment_value"
            out.add(code, f"{name}: {given} {fill!r} for {where} {state} in Visma.net")
    return out.refusals


def check_accounts(
    facts: LineFacts, run: PayrollRun, mapping: AdministrationMapping, reference: AdministrationReference
) -> list[Refusal]:
    """Every ledger account (after translation) must exist and be active in Visma.net."""
    out = _Collector(run)
    for account, ref in sorted(facts.accounts.items(), key=lambda item: item[1]):
        target = translate_account(account, mapping)
        shown = repr(account) if target == account else f"{account!r} (translated to {target!r})"
        known = reference.accounts.get(target)
        if known is None:
            out.add("unknown_account", f"ledger account {shown} on {_where(ref)} does not exist in Visma.net")
        elif not known.active:
            out.add("inactive_account", f"ledger account {shown} on {_where(ref)} is inactive in Visma.net")
    return out.refusals


def check_periods(
    facts: LineFacts, run: PayrollRun, mapping: AdministrationMapping, reference: AdministrationReference
) -> list[Refusal]:
    """Each payroll period of the lines must be one of the run's payroll, map to a financial period (its
    `period_mapping`), and that period must exist, be active and be open in the GL (or be movable under
    NEXT_OPEN); every refusal names both periods."""
    out = _Collector(run)
    period_mapping = mapping.period_mapping_for(run.period_type)
    if period_mapping is None:
        out.add(
            "period_not_mapped",
            f"the company pays per {run.period_type} in Nmbrs and its mapping gives no period_mapping "
            "(number: payroll period N is financial period YYYYNN; end_date: the period holding its last day)",
        )
        return out.refusals
    for payroll_period, totals in sorted(facts.periods.items()):
        where = f"(first on {_where(totals.first)})"
        try:
            start, end = payroll_bounds(payroll_period, run.period_type)
        except ValueError as exc:
            out.add("invalid_journal", f"{exc} {where}", period_id=payroll_period)
            continue
        label = f"payroll period {payroll_label(payroll_period, run.period_type)} ({start}..{end})"
        period_id = mapped_period(payroll_period, run, period_mapping, reference.periods)
        if period_id is None:
            out.add(
                "period_missing",
                f"{label}: no financial period of Visma.net holds its last day {end} (period_mapping end_date) {where}",
            )
            continue
        known = reference.periods.get(period_id)
        booked = f"{label} -> financial period {period_id}"
        if known is None:
            out.add(
                "period_missing",
                f"{booked}: the financial period does not exist in Visma.net {where}",
                period_id=period_id,
            )
        elif not known.active:
            out.add(
                "period_inactive",
                f"{booked}: the financial period is inactive in Visma.net {where}",
                period_id=period_id,
            )
        elif known.end_date < start or known.start_date > end:
            out.add(
                "period_not_mapped",
                f"{booked} ({known.start_date}..{known.end_date}): the periods do not overlap; the ledger's year "
                "is not numbered like the payroll's (period_mapping end_date books by date)",
                period_id=period_id,
            )
        elif known.closed_in_gl:
            if mapping.closed_period_policy is ClosedPeriodPolicy.REFUSE:
                out.add(
                    "period_closed",
                    f"{booked}: the financial period is closed in the general ledger {where}; the mapping refuses "
                    "closed periods (policy next_open would book in the first open period after it)",
                    period_id=period_id,
                )
            elif next_open_period(period_id, reference.periods) is None:
                out.add(
                    "period_closed",
                    f"{booked}: the financial period is closed in the general ledger and no open period follows it",
                    period_id=period_id,
                )
    return out.refusals


def check_balanced(facts: LineFacts, run: PayrollRun) -> list[Refusal]:
    """Per period, debits equal credits to the cent (negative amounts count on their own side)."""
    out = _Collector(run)
    if not facts.periods:
        out.add("invalid_journal", "the run's journal holds no lines")
    for period_id, totals in sorted(facts.periods.items()):
        if totals.debit_cents != totals.credit_cents:
            difference = totals.debit_cents - totals.credit_cents
            out.add(
                "not_balanced",
                f"debits {format_cents(totals.debit_cents)} != credits {format_cents(totals.credit_cents)} "
                f"(difference {format_cents(difference)}; lines from {_where(totals.first)})",
                period_id=period_id,
            )
    return out.refusals


def check_facts(
    facts: LineFacts,
    run: PayrollRun,
    mapping: AdministrationMapping | None,
    reference: AdministrationReference | None,
) -> list[Refusal]:
    """Every reason this run cannot be sent (empty: it can). Without a mapping only the run-level checks run."""
    refusals = check_company(run, mapping)
    refusals += check_balanced(facts, run)
    if mapping is not None and reference is not None:
        for check in (check_accounts, check_dimensions, check_subaccounts, check_periods):
            refusals += check(facts, run, mapping, reference)
    return refusals


def check_run(
    lines: pd.DataFrame,
    run: PayrollRun,
    mapping: AdministrationMapping | None,
    reference: AdministrationReference | None,
) -> list[Refusal]:
    """Every reason one run's lines cannot be sent."""
    return check_facts(facts_of(lines), run, mapping, reference)


def codes(refusals: Iterable[Refusal]) -> set[str]:
    """The refusal codes, for quick assertions and summaries."""
    return {refusal.code for refusal in refusals}
