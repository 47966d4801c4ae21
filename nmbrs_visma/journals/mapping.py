"""Nmbrs accounts and dimensions -> Visma.net accounts and subaccount segment values.

Accounts pass through an optional translation table. A cost center (dim2) and a cost unit (dim3) each become
the value of one SUBACCOUNT segment, the segment found by the *description* the mapping configures (segment
ids differ per Visma.net company, descriptions are what a bureau knows), the value padded to the segment's
length as Visma.net stores it ("100" -> "0100" on a four-long segment). Every line gives a value for every
segment of the dimension (the published schema makes the subaccount mandatory): a line without a cost center,
or a segment no dimension maps, gets the segment's fill (`segment_fill`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from nmbrs_visma.journals.models import AdministrationMapping, AdministrationReference, DimensionSetting, Segment

DIMENSIONS = ("cost_center", "cost_unit")  # line-frame columns, same names as the mapping's settings


def translate_account(account: str, mapping: AdministrationMapping) -> str:
    """The Visma.net account of an Nmbrs ledger account (the translation table, else the same number)."""
    return mapping.account_translation.get(account, account)


def find_segment(reference: AdministrationReference, description: str) -> Segment | None:
    """The segment whose description matches (case and surrounding blanks ignored), or None."""
    wanted = description.strip().casefold()
    if not wanted:
        return None
    for segment in reference.segments:
        if segment.description.strip().casefold() == wanted:
            return segment
    return None


def pad_segment_value(value: str, segment: Segment) -> str:
    """Numeric values are left-padded with zeros to the segment length; other values are kept as given.

    A value longer than the segment is returned unchanged, so the checks report it as unknown.
    """
    value = value.strip()
    if value.isdecimal() and value.isascii() and len(value) < segment.length:
        return value.zfill(segment.length)
    return value


def zero_value(segment: Segment) -> str:
    """The all-zero value of a segment ("0000" on a four-long one): the usual "none" a ledger holds."""
    return "0" * segment.length


def segment_fill(segment: Segment, setting: DimensionSetting | None) -> str | None:
    """The value a line without one gets in `segment`: the dimension's `default` (padded), else the all-zero
    value when Visma.net holds it, else None (the checks refuse the run naming the segment)."""
    if setting is not None and setting.default.strip():
        return pad_segment_value(setting.default, segment)
    zero = zero_value(segment)
    return zero if zero in segment.values else None


@dataclass(frozen=True)
class SegmentPlan:
    """Which segment each enabled dimension writes to (None: the dimension is not sent), and the value every
    segment of the dimension gets on a line without its own (`fills`, by segment id; None: there is none)."""

    cost_center: Segment | None = None
    cost_unit: Segment | None = None
    fills: tuple[tuple[int, str | None, int], ...] = ()  # (segment id, fill, length), by segment id

    def segment(self, dimension: str) -> Segment | None:
        return self.cost_center if dimension == "cost_center" else self.cost_unit

    def key(self) -> tuple[object, ...]:
        """Hashable summary: runs with equal keys map values alike."""
        mapped = tuple(None if s is None else (s.segment_id, s.length) for s in (self.cost_center, self.cost_unit))
        return (*mapped, self.fills)

    def segment_values(self, cost_center: str, cost_unit: str) -> list[tuple[int, str]]:
        """The line's `(segmentId, segmentValue)` pairs, one per segment of the dimension, ordered by segment id:
        the mapped value, else the segment's fill (a segment without a fill is left out: the checks refuse)."""
        values = {
            segment.segment_id: pad_segment_value(value, segment)
            for segment, value in ((self.cost_center, cost_center), (self.cost_unit, cost_unit))
            if segment is not None and value.strip()
        }
        for segment_id, fill, _ in self.fills:
            if segment_id not in values and fill is not None:
                values[segment_id] = fill
        return sorted(values.items())

    def content_values(self, cost_center: str, cost_unit: str) -> list[tuple[int, str]]:
        """The pairs that say what a line books, for its fingerprint: all but all-zero values, which Visma.net
        books for a segment left out too, so a journal sent before subaccounts were complete keeps its
        identity of content."""
        zeros = {segment_id: "0" * length for segment_id, _, length in self.fills}
        return [(sid, value) for sid, value in self.segment_values(cost_center, cost_unit) if zeros.get(sid) != value]


def dimension_setting(mapping: AdministrationMapping, dimension: str) -> DimensionSetting:
    return mapping.cost_center if dimension == "cost_center" else mapping.cost_unit


def segment_plan(mapping: AdministrationMapping, reference: AdministrationReference) -> SegmentPlan:
    """Resolve the enabled dimensions' segments by description (a missing one stays None; checks say why) and
    every segment's fill."""
    found = {
        dimension: find_segment(reference, setting.description) if setting.enabled else None
        for dimension in DIMENSIONS
        for setting in (dimension_setting(mapping, dimension),)
    }
    settings = {
        segment.segment_id: dimension_setting(mapping, dimension)
        for dimension, segment in found.items()
        if segment is not None
    }
    fills = tuple(
        (segment.segment_id, segment_fill(segment, settings.get(segment.segment_id)), segment.length)
        for segment in sorted(reference.segments, key=lambda s: s.segment_id)
    )
    return SegmentPlan(**found, fills=fills)


def map_lines(lines: pd.DataFrame, mapping: AdministrationMapping, reference: AdministrationReference) -> pd.DataFrame:
    """A copy of one run's lines with `visma_account` and the padded segment values `cost_center_value` /
    `cost_unit_value` (`""` when the dimension is not sent): what a preview shows per line."""
    plan = segment_plan(mapping, reference)
    mapped = lines.copy()
    accounts = {account: translate_account(account, mapping) for account in lines["account"].unique()}
    mapped["visma_account"] = lines["account"].map(accounts).astype("str")
    for dimension in DIMENSIONS:
        segment = plan.segment(dimension)
        values = {
            value: pad_segment_value(value, segment) if segment is not None and value.strip() else ""
            for value in lines[dimension].unique()
        }
        mapped[f"{dimension}_value"] = lines[dimension].map(values).astype("str")
    return mapped
