"""The flows' parameters as the Prefect UI's run form shows them: titled, described, and a malformed period
refused before any run (the form and the API validate against the same schema)."""

from __future__ import annotations

import re

import pytest
from prefect.exceptions import ParameterTypeError
from prefect.utilities.callables import parameter_schema

from nmbrs_visma.flows.backfill import backfill_correction_periods
from nmbrs_visma.flows.post_payroll_journals import post_payroll_journals
from nmbrs_visma.payroll_period import PERIOD_PATTERN, period_filter

FLOWS = [post_payroll_journals, backfill_correction_periods]


@pytest.mark.parametrize("flow", FLOWS, ids=lambda f: f.name)
def test_every_parameter_has_a_title_and_a_description(flow) -> None:
    for name, prop in parameter_schema(flow).model_dump()["properties"].items():
        assert prop["title"] != name and prop["title"][0].isupper(), (name, prop["title"])
        assert len(prop.get("description") or "") > 20, name


@pytest.mark.parametrize("period", ["2026/3x", "2026-13", "26-03", "March", "2026/54", "previous month"])
def test_a_malformed_period_is_refused_before_any_run(period: str) -> None:
    with pytest.raises(ParameterTypeError, match="period"):
        post_payroll_journals.validate_parameters({"period": period})
    with pytest.raises(ParameterTypeError, match="start"):
        backfill_correction_periods.validate_parameters({"start": period, "end": "2026-06"})


@pytest.mark.parametrize("period", ["2026-03", "2026/13", "2026/03", "2026/53", "previous-month"])
def test_what_the_form_accepts_the_flow_reads(period: str) -> None:
    assert post_payroll_journals.validate_parameters({"period": period})["period"] == period
    assert re.fullmatch(PERIOD_PATTERN, period)
    period_filter(period)  # no error: the pattern and the parser agree
