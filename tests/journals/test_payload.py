"""The payload models follow the spec and amounts are written exactly, never through a float."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from nmbrs_visma.journals.money import AmountError, format_cents
from nmbrs_visma.journals.payload import (
    DtoValueOfDateTime,
    DtoValueOfDecimal,
    DtoValueOfString,
    JournalTransactionLineUpdateDto,
    JournalTransactionUpdateDto,
    SegmentUpdateDto,
    json_string,
    payload_json,
    render_amounts,
    render_lines,
    render_transaction,
    subaccount_fragment,
)

from .contract import contract_errors


def transaction(*lines: JournalTransactionLineUpdateDto) -> JournalTransactionUpdateDto:
    return JournalTransactionUpdateDto(
        transactionDate=DtoValueOfDateTime(value=dt.datetime(2026, 3, 31)),
        financialPeriod=DtoValueOfString(value="202603"),
        description=DtoValueOfString(value='Payroll "March" é [nv:0123456789abcdef0123]'),
        journalTransactionLines=list(lines),
    )


def line(amount: str, *, debit: bool = True) -> JournalTransactionLineUpdateDto:
    side = "debitAmountInCurrency" if debit else "creditAmountInCurrency"
    return JournalTransactionLineUpdateDto(
        operation="Insert",
        accountNumber=DtoValueOfString(value="4000"),
        subaccount=[SegmentUpdateDto(segmentId=1, segmentValue="0100")],
        **{side: DtoValueOfDecimal(value=Decimal(amount))},
    )


def test_payload_json_writes_two_decimal_numbers() -> None:
    data = payload_json(transaction(line("0.1"), line("-1234567890123.45", debit=False), line("7")))
    text = data.decode()
    assert '"debitAmountInCurrency":{"value":0.10}' in text
    assert '"creditAmountInCurrency":{"value":-1234567890123.45}' in text
    assert '"debitAmountInCurrency":{"value":7.00}' in text
    assert '"transactionDate":{"value":"2026-03-31T00:00:00"}' in text
    assert '"subaccount":[{"segmentId":1,"segmentValue":"0100"}]' in text
    assert "é" in text and '\\"March\\"' in text
    parsed = json.loads(data, parse_float=Decimal)
    assert parsed["journalTransactionLines"][1]["creditAmountInCurrency"]["value"] == Decimal("-1234567890123.45")
    assert "batchNumber" not in parsed  # unset fields are left out, not written as null


def test_sub_cent_amounts_are_refused_not_rounded() -> None:
    with pytest.raises(AmountError):
        payload_json(transaction(line("0.005")))


def test_models_refuse_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        JournalTransactionLineUpdateDto(debitAmount=DtoValueOfDecimal(value=Decimal(1)))  # the read DTO's name


def test_model_fields_are_exactly_the_spec_properties(reference_dir: Path) -> None:
    import yaml

    spec = yaml.safe_load((reference_dir / "visma-net-erp/visma-journaltransactionv2-api-openapi.yml").read_text())
    schemas = spec["components"]["schemas"]
    for model in (JournalTransactionUpdateDto, JournalTransactionLineUpdateDto, SegmentUpdateDto):
        assert list(model.model_fields) == list(schemas[model.__name__]["properties"]), model.__name__


def test_columnar_rendering_equals_the_model_rendering() -> None:
    amounts = render_amounts(np.array([12345, -5, 0, -100, 10**14 + 1]))
    assert amounts.tolist() == ["123.45", "-0.05", "0.00", "-1.00", "1000000000000.01"]
    fragments = render_lines(
        accounts=[json_string("4000"), json_string("1700")],
        subaccounts=[subaccount_fragment([(1, "0100")]), subaccount_fragment([])],
        references=[json_string("NM2603R1")] * 2,
        descriptions=[json_string('Bruto "loon"'), json_string("")],
        amounts=["123.45", "-0.05"],
        debit=[True, False],
    )
    fast = render_transaction(
        hold=True,
        transaction_date=dt.date(2026, 3, 31),
        financial_period="202603",
        ledger="L",
        description="Payroll",
        branch="1",
        lines=fragments,
    )
    model = JournalTransactionUpdateDto.model_validate_json(fast)
    assert payload_json(model) == fast
    assert model.journalTransactionLines[1].creditAmountInCurrency.value == Decimal("-0.05")
    assert model.journalTransactionLines[1].subaccount is None
    assert model.hold.value is True


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1), min_size=1, max_size=20))
def test_render_amounts_matches_exact_formatting(cents: list[int]) -> None:
    assert render_amounts(np.array(cents, dtype=np.int64)).tolist() == [format_cents(c) for c in cents]


@pytest.mark.contract
def test_model_payload_conforms_to_the_published_spec(reference_dir: Path) -> None:
    assert contract_errors(reference_dir, payload_json(transaction(line("12.30"), line("12.3", debit=False)))) == []


@pytest.mark.contract
def test_contract_check_catches_unknown_properties_and_wrong_shapes(reference_dir: Path) -> None:
    good = json.loads(payload_json(transaction(line("1"))))
    unknown = dict(good, journalNumber={"value": "1"})
    unwrapped = dict(good, financialPeriod="202603")
    bad_line = dict(good, journalTransactionLines=[dict(good["journalTransactionLines"][0], debitAmount={"value": 1})])
    nested = dict(good, journalTransactionLines=[dict(good["journalTransactionLines"][0], subaccount={"a": 1})])
    for document in (unknown, unwrapped, bad_line, nested):
        assert contract_errors(reference_dir, json.dumps(document).encode())
