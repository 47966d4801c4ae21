"""Complete subaccounts: every line of every create gives every segment of the dimension a value.

A line without a cost center (a balance-sheet line) or a segment no dimension maps gets the segment's fill:
the dimension's `default`, else the all-zero value when Visma.net holds it, else the run is refused naming the
segment. Fills are checked against Visma.net like any value, and all-zero fills leave a journal's content
identity (its fingerprint) as it was before subaccounts were complete.
"""

from __future__ import annotations

import json

from nmbrs_visma.journals.build import build_transactions, plan_run
from nmbrs_visma.journals.models import AdministrationReference, DimensionSetting, Segment
from nmbrs_visma.journals.nmbrs_xml import parse_journal_xml
from tests.journals.builders import MARCH_WITH_CORRECTION, demo_reference, make_mapping, make_run

LINES = parse_journal_xml(MARCH_WITH_CORRECTION)  # cost center and unit on the cost lines, none on the others


def with_segments(*segments: Segment) -> AdministrationReference:
    reference = demo_reference()
    return reference.model_copy(update={"segments": (*reference.segments, *segments)})


def without_zero(reference: AdministrationReference, segment_id: int) -> AdministrationReference:
    segments = tuple(
        s.model_copy(update={"values": {v: a for v, a in s.values.items() if set(v) != {"0"}}})
        if s.segment_id == segment_id
        else s
        for s in reference.segments
    )
    return reference.model_copy(update={"segments": segments})


def payload_segments(payload: bytes) -> list[dict[int, str]]:
    lines = json.loads(payload)["journalTransactionLines"]
    return [{s["segmentId"]: s["segmentValue"] for s in line["subaccount"]} for line in lines]


def test_every_line_gives_every_segment_a_value() -> None:
    region = Segment(segment_id=3, description="Region", length=2, values={"00": True, "10": True})
    for transaction in build_transactions(LINES, make_run(), make_mapping(), with_segments(region)):
        assert all(set(segments) == {1, 2, 3} for segments in payload_segments(transaction.payload))
        assert {segments[3] for segments in payload_segments(transaction.payload)} == {"00"}


def test_all_zero_fills_keep_the_fingerprint_of_a_journal_sent_before() -> None:
    """The fingerprints the build gave this run before subaccounts were complete (no fills at all)."""
    before = {"202601": "4c0f9438d717ecfe", "202603": "11cf04de162f29e8"}
    region = Segment(segment_id=3, description="Region", length=2, values={"00": True})
    for reference in (demo_reference(), with_segments(region)):
        transactions = build_transactions(LINES, make_run(), make_mapping(), reference)
        assert {t.payroll_period: t.fingerprint for t in transactions} == before


def test_a_dimension_default_is_used_and_is_content() -> None:
    mapping = make_mapping(cost_center=DimensionSetting(enabled=True, description="Department", default="300"))
    march = build_transactions(LINES, make_run(), mapping, demo_reference())[-1]
    net = [s for s in payload_segments(march.payload) if s[2] == "000"]
    assert net and {s[1] for s in net} == {"0300"}
    assert march.fingerprint != "11cf04de162f29e8"


def test_a_segment_without_zero_value_or_default_refuses_the_run_naming_it() -> None:
    plan = plan_run(LINES, make_run(), make_mapping(), without_zero(demo_reference(), 2))
    (refusal,) = plan.refusals
    assert refusal.code == "segment_default_missing"
    assert "segment 'Project' (id 2)" in refusal.message and "lines without a cost unit" in refusal.message
    assert "cost_unit.default" in refusal.message and "'000'" in refusal.message
    # an unmapped segment without a zero value: every line needs one, none can be given
    region = Segment(segment_id=3, description="Region", length=2, values={"10": True})
    (unmapped,) = plan_run(LINES, make_run(), make_mapping(), with_segments(region)).refusals
    assert unmapped.code == "segment_default_missing" and "no dimension of the mapping maps it" in unmapped.message


def test_a_default_is_checked_against_visma_net_like_any_value() -> None:
    unknown = make_mapping(cost_unit=DimensionSetting(enabled=True, description="Project", default="9"))
    (refusal,) = plan_run(LINES, make_run(), unknown, demo_reference()).refusals
    assert refusal.code == "unknown_segment_value" and "the mapping's default '009'" in refusal.message
    reference = demo_reference()
    inactive = make_mapping(cost_center=DimensionSetting(enabled=True, description="Department", default="900"))
    (refusal,) = plan_run(LINES, make_run(), inactive, reference).refusals
    assert refusal.code == "inactive_segment_value" and "'0900'" in refusal.message


def test_no_fill_is_needed_when_every_line_carries_the_value() -> None:
    run = make_run()
    lines = LINES[LINES["cost_unit"] != ""]  # cost lines only (unbalanced: refused for that, not for segments)
    reference = without_zero(demo_reference(), 2)
    refusals = plan_run(lines, run, make_mapping(), reference).refusals
    assert "segment_default_missing" not in {r.code for r in refusals}
