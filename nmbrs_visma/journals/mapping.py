"""Nmbrs accounts and dimensions -> Visma.net accounts and subaccount segment values.

Accounts pass through an optional translation table. A cost center (dim2) and a cost unit (dim3) each become
the value of one SUBACCOUNT segment, the segment found by the *description* the mapping configures (segment
ids differ per Visma.net company, descriptions are what a bureau knows), the value padded to the segment's
length as Visma.net stores it ("100" -> "0100" on a four-long segment).
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


@dataclass(frozen=True)
class SegmentPlan:
    """Which segment each enabled dimension writes to (None: the dimension is not sent)."""

    cost_center: Segment | None = None
    cost_unit: Segment | None = None

    def segment(self, dimension: str) -> Segment | None:
        return self.cost_center if dimension == "cost_center" else self.cost_unit

    def key(self) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """Hashable summary (segment id, length) per dimension: runs with equal keys map values alike."""
        return tuple(None if s is None else (s.segment_id, s.length) for s in (self.cost_center, self.cost_unit))

    def segment_values(self, cost_center: str, cost_unit: str) -> list[tuple[int, str]]:
        """The line's `(segmentId, segmentValue)` pairs, ordered by segment id; empty dimensions left out."""
        pairs = [
            (segment.segment_id, pad_segment_value(value, segment))
            for segment, value in ((self.cost_center, cost_center), (self.cost_unit, cost_unit))
            if segment is not None and value.strip()
        ]
        return sorted(pairs)


def dimension_setting(mapping: AdministrationMapping, dimension: str) -> DimensionSetting:
    return mapping.cost_center if dimension == "cost_center" else mapping.cost_unit


def segment_plan(mapping: AdministrationMapping, reference: AdministrationReference) -> SegmentPlan:
    """Resolve the enabled dimensions' segments by description (a missing one stays None; checks say why)."""
    found = {
        dimension: find_segment(reference, setting.description) if setting.enabled else None
        for dimension in DIMENSIONS
        for setting in (dimension_setting(mapping, dimension),)
    }
    return SegmentPlan(**found)


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
