"""Every reason a run cannot be sent is reported, each naming company, run and what is wrong where."""

from __future__ import annotations

from nmbrs_visma.journals.checks import check_run, codes, facts_of
from nmbrs_visma.journals.frame import empty_lines
from nmbrs_visma.journals.models import (
    AdministrationMapping,
    AdministrationReference,
    ClosedPeriodPolicy,
    DimensionSetting,
    PayrollRun,
)
from nmbrs_visma.journals.nmbrs_xml import parse_journal_xml

from .builders import MARCH_WITH_CORRECTION, by_code, journal_xml, line_xml, make_mapping, make_run


def lines_of(*transactions):
    return parse_journal_xml(journal_xml(transactions))


def balanced(period: str, *debit_lines: str, date: str = "20260325"):
    """A transaction whose debit lines are balanced by one credit on 1700 (amounts of 10,00 each)."""
    total = f"{10 * len(debit_lines)},00"
    return (date, period, [*debit_lines, line_xml("1700", total, "credit")])


def test_the_demo_run_passes(run: PayrollRun, mapping: AdministrationMapping, reference: AdministrationReference):
    assert check_run(parse_journal_xml(MARCH_WITH_CORRECTION), run, mapping, reference) == []


def test_company_level_refusals(reference: AdministrationReference) -> None:
    lines = parse_journal_xml(MARCH_WITH_CORRECTION)
    run = make_run(locked=False)
    mapping = make_mapping(test_company=True, debtor_blocked=True)
    found = by_code(check_run(lines, run, mapping, reference))
    assert set(found) == {"test_company", "debtor_blocked", "run_not_locked"}
    for messages in found.values():
        assert messages[0].startswith("company 1002 run 1: ")
    assert codes(check_run(lines, make_run(), None, None)) == {"unmapped_company"}
    wrong = check_run(lines, make_run(), make_mapping(company=1003), reference)
    assert codes(wrong) == {"unmapped_company"} and "mapping given is for company 1003" in wrong[0].message


def test_dimension_used_but_not_activated(run: PayrollRun, reference: AdministrationReference) -> None:
    lines = parse_journal_xml(MARCH_WITH_CORRECTION)
    found = by_code(check_run(lines, run, make_mapping(dimensions=False), reference))
    assert list(found) == ["dimension_not_activated"]
    center, unit = found["dimension_not_activated"]
    assert "cost centers (2 distinct, first '100' on transaction 1 line 1)" in center
    assert "cost unit dimension is not activated" in unit


def test_enabled_dimension_without_values_is_fine(run: PayrollRun, reference: AdministrationReference) -> None:
    lines = lines_of(balanced("3/2026", line_xml("4000", "10,00")))
    assert check_run(lines, run, make_mapping(), reference) == []


def test_segment_description_not_found(run: PayrollRun, reference: AdministrationReference) -> None:
    mapping = make_mapping(cost_center=DimensionSetting(enabled=True, description="Kostenplaats"))
    refusals = check_run(parse_journal_xml(MARCH_WITH_CORRECTION), run, mapping, reference)
    assert codes(refusals) == {"segment_not_found"}
    assert "'Kostenplaats' not found in Visma.net (segments: 'Department', 'Project')" in refusals[0].message
    same = make_mapping(cost_unit=DimensionSetting(enabled=True, description="department"))
    refusals = check_run(parse_journal_xml(MARCH_WITH_CORRECTION), run, same, reference)
    assert "both map to segment 'Department'" in by_code(refusals)["segment_not_found"][0]


def test_unknown_and_inactive_segment_values(run: PayrollRun, mapping, reference) -> None:
    lines = lines_of(
        balanced(
            "3/2026",
            line_xml("4000", "10,00", cost_center="400", cost_unit="1"),
            line_xml("4000", "10,00", cost_center="900", cost_unit="7"),
            line_xml("4000", "10,00", cost_center="12345"),
        )
    )
    found = by_code(check_run(lines, run, mapping, reference))
    assert set(found) == {"unknown_segment_value", "inactive_segment_value"}
    assert (
        "cost center '400' (segment 'Department' value '0400', length 4) on transaction 1 line 1"
        in (found["unknown_segment_value"][0])
    )
    assert any("cost unit '7' (segment 'Project' value '007'" in m for m in found["unknown_segment_value"])
    assert any("'12345'" in m for m in found["unknown_segment_value"])
    assert (
        "cost center '900' (segment 'Department' value '0900') on transaction 1 line 2 is inactive"
        in (found["inactive_segment_value"][0])
    )


def test_unknown_and_inactive_accounts(run: PayrollRun, reference: AdministrationReference) -> None:
    lines = lines_of(
        balanced("3/2026", line_xml("4999", "10,00"), line_xml("8000", "10,00"), line_xml("4100", "10,00"))
    )
    mapping = make_mapping(account_translation={"4100": "9100"})
    found = by_code(check_run(lines, run, mapping, reference))
    assert set(found) == {"unknown_account", "inactive_account"}
    assert found["inactive_account"] == [
        "company 1002 run 1: ledger account '4999' on transaction 1 line 1 is inactive in Visma.net"
    ]
    assert "ledger account '8000' on transaction 1 line 2 does not exist" in found["unknown_account"][0]
    assert "'4100' (translated to '9100') on transaction 1 line 3" in found["unknown_account"][1]


def test_period_missing_inactive_closed(reference: AdministrationReference) -> None:
    run = make_run(year=2027, period=1)
    lines = lines_of(
        balanced("1/2027", line_xml("4000", "10,00"), date="20270125"),
        balanced("12/2026", line_xml("4000", "10,00"), date="20270125"),
        balanced("3/2025", line_xml("4000", "10,00"), date="20270125"),
    )
    found = by_code(check_run(lines, run, make_mapping(), reference))
    assert set(found) == {"period_missing", "period_inactive", "period_closed"}
    assert found["period_missing"][0].startswith("company 1002 run 1 period 202701: ")
    assert "(first on transaction 1 line 1)" in found["period_missing"][0]
    assert found["period_inactive"][0].startswith("company 1002 run 1 period 202612: ")
    assert "closed in the general ledger" in found["period_closed"][0]
    refusal = next(r for r in check_run(lines, run, make_mapping(), reference) if r.code == "period_closed")
    assert (refusal.company, refusal.period_id) == (1002, "202503")


def test_next_open_policy_accepts_a_closed_period_when_one_follows(reference: AdministrationReference) -> None:
    run = make_run(year=2025, period=8)
    lines = lines_of(balanced("3/2025", line_xml("4000", "10,00"), date="20250825"))
    mapping = make_mapping(closed_period_policy=ClosedPeriodPolicy.NEXT_OPEN)
    assert check_run(lines, run, mapping, reference) == []
    closed_to_the_end = reference.model_copy(
        update={"periods": {k: v.model_copy(update={"closed_in_gl": True}) for k, v in reference.periods.items()}}
    )
    refusals = check_run(lines, run, mapping, closed_to_the_end)
    assert codes(refusals) == {"period_closed"} and "no open period follows" in refusals[0].message


def test_not_balanced_per_period(run: PayrollRun, mapping, reference) -> None:
    lines = lines_of(
        ("20260325", "3/2026", [line_xml("4000", "100,00"), line_xml("1700", "99,99", "credit")]),
        ("20260325", "1/2026", [line_xml("4000", "-5,00"), line_xml("1700", "5,00", "credit")]),
        ("20260325", "2/2026", [line_xml("4000", "7,00"), line_xml("1700", "7,00", "credit")]),
    )
    found = by_code(check_run(lines, run, mapping, reference))
    assert list(found) == ["not_balanced"]
    january, march = found["not_balanced"]
    assert january == (
        "company 1002 run 1 period 202601: debits -5.00 != credits 5.00 (difference -10.00; lines from "
        "transaction 2 line 1)"
    )
    assert "period 202603: debits 100.00 != credits 99.99 (difference 0.01" in march


def test_empty_run_is_refused(run: PayrollRun, mapping, reference) -> None:
    assert codes(check_run(empty_lines(), run, mapping, reference)) == {"invalid_journal"}


def test_every_reason_is_reported_not_only_the_first(reference: AdministrationReference) -> None:
    run = make_run(locked=False)
    mapping = make_mapping(
        test_company=True,
        debtor_blocked=True,
        cost_unit=DimensionSetting(enabled=False),
        cost_center=DimensionSetting(enabled=True, description="Afdeling"),
    )
    lines = lines_of(
        ("20260325", "3/2026", [line_xml("4999", "1,00", cost_unit="1"), line_xml("7777", "2,00", "credit")]),
        ("20260325", "12/2026", [line_xml("4000", "1,00"), line_xml("1700", "1,00", "credit")]),
        ("20260325", "4/2025", [line_xml("4000", "1,00"), line_xml("1700", "1,00", "credit")]),
    )
    assert codes(check_run(lines, run, mapping, reference)) == {
        "test_company",
        "debtor_blocked",
        "run_not_locked",
        "not_balanced",
        "inactive_account",
        "unknown_account",
        "dimension_not_activated",
        "segment_not_found",
        "period_inactive",
        "period_closed",
    }


def test_facts_name_the_first_line_of_each_value() -> None:
    facts = facts_of(parse_journal_xml(MARCH_WITH_CORRECTION))
    assert facts.accounts["4000"] == (1, 1) and facts.accounts["1700"] == (1, 6)
    assert facts.cost_center == {"100": (1, 1), "200": (1, 2)}
    assert facts.periods["202601"].debit_cents == -10050
    assert facts.periods["202601"].first == (2, 1)
