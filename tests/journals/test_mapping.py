"""Accounts translate; dimensions find their segment by description and pad values to its length."""

from __future__ import annotations

from nmbrs_visma.journals.mapping import find_segment, map_lines, pad_segment_value, segment_plan, translate_account
from nmbrs_visma.journals.models import AdministrationReference, DimensionSetting, Segment
from nmbrs_visma.journals.nmbrs_xml import parse_journal_xml

from .builders import MARCH_WITH_CORRECTION, make_mapping


def test_translate_account() -> None:
    mapping = make_mapping(account_translation={"4000": "4300"})
    assert translate_account("4000", mapping) == "4300"
    assert translate_account("1700", mapping) == "1700"


def test_find_segment_by_description(reference: AdministrationReference) -> None:
    assert find_segment(reference, "Department").segment_id == 1
    assert find_segment(reference, "  project ").segment_id == 2
    assert find_segment(reference, "Kostenplaats") is None
    assert find_segment(reference, "") is None


def test_pad_segment_value() -> None:
    department = Segment(segment_id=1, description="Department", length=4)
    assert pad_segment_value("100", department) == "0100"
    assert pad_segment_value("0100", department) == "0100"
    assert pad_segment_value("AB", department) == "AB"  # alphanumeric values are not guessed at
    assert pad_segment_value("12345", department) == "12345"  # too long: left for the checks to refuse


def test_segment_plan_orders_pairs_by_segment_id(reference: AdministrationReference) -> None:
    mapping = make_mapping(
        cost_center=DimensionSetting(enabled=True, description="Project"),
        cost_unit=DimensionSetting(enabled=True, description="Department"),
    )
    plan = segment_plan(mapping, reference)
    assert plan.segment_values("1", "100") == [(1, "0100"), (2, "001")]
    # every segment gets a value: a line without a project books the segment's all-zero value
    assert plan.segment_values("", "100") == [(1, "0100"), (2, "000")]
    assert segment_plan(make_mapping(dimensions=False), reference).segment_values("1", "2") == [(1, "0000"), (2, "000")]
    # what the line books, for its fingerprint: the zeros Visma.net would book for a left-out segment are left out
    assert plan.content_values("", "100") == [(1, "0100")]


def test_a_dimension_default_fills_lines_without_a_value(reference: AdministrationReference) -> None:
    mapping = make_mapping(cost_unit=DimensionSetting(enabled=True, description="Project", default="3"))
    plan = segment_plan(mapping, reference)
    assert plan.segment_values("100", "") == [(1, "0100"), (2, "003")]
    assert plan.content_values("100", "") == [(1, "0100"), (2, "003")]  # a chosen default is content


def test_map_lines(reference: AdministrationReference) -> None:
    lines = parse_journal_xml(MARCH_WITH_CORRECTION)
    mapped = map_lines(lines, make_mapping(account_translation={"4100": "4200"}), reference)
    assert mapped["visma_account"].tolist()[:3] == ["4000", "4000", "4200"]
    assert mapped["cost_center_value"].tolist()[:4] == ["0100", "0200", "0100", ""]
    assert mapped["cost_unit_value"].tolist()[:4] == ["001", "002", "001", ""]
    assert list(lines.columns) == list(mapped.columns)[: len(lines.columns)]  # the input is left unchanged
    assert "visma_account" not in lines.columns
