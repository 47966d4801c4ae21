"""Amounts are read exactly, in every notation Nmbrs uses, and refused when a guess would be needed."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmbrs_visma.journals.money import AmountError, format_cents, from_cents, parse_amount, to_cents


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1234.56", "1234.56"),
        ("1234,56", "1234.56"),
        ("-12,5", "-12.5"),
        ("+7", "7"),
        (" 0,01 ", "0.01"),
        ("-0.05", "-0.05"),
        ("1.234,56", "1234.56"),
        ("1,234.56", "1234.56"),
        ("-1.234.567,89", "-1234567.89"),
        ("1,234,567", "1234567"),
        ("1.234.567", "1234567"),
        ("0,125", "0.125"),  # not a thousands group (leading zero): a decimal, refused later by to_cents
        ("12345,678", "12345.678"),
    ],
)
def test_parse_amount_accepts(text: str, expected: str) -> None:
    assert parse_amount(text) == Decimal(expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "1,234",  # thousands separator or three decimals?
        "1.234",
        "-12.345",
        "1 234,56",
        "1.23.4",
        "1.234,567.89",
        "1,234,56",
        "12,34,567",
        "1e3",
        "NaN",
        "Infinity",
        "--1",
        "1-",
        "€ 12",
        "١٢٣",  # non-ASCII digits
        "1.2.3,4",
        "99999999999999999",  # out of range
    ],
)
def test_parse_amount_refuses(text: str) -> None:
    with pytest.raises(AmountError) as error:
        parse_amount(text)
    assert repr(text) in str(error.value) or "range" in str(error.value)


def test_to_cents_is_exact_and_refuses_sub_cents() -> None:
    assert to_cents(Decimal("1234.56")) == 123456
    assert to_cents(Decimal("-0.05")) == -5
    assert to_cents(Decimal("12.300")) == 1230
    with pytest.raises(AmountError, match="more than two decimals"):
        to_cents(Decimal("1.005"))
    with pytest.raises(AmountError, match="finite"):
        to_cents(Decimal("NaN"))


def test_from_cents_and_format_cents() -> None:
    assert from_cents(123456) == Decimal("1234.56")
    assert str(from_cents(-5)) == "-0.05"
    assert str(from_cents(0)) == "0.00"
    assert format_cents(-5) == "-0.05"
    assert format_cents(-100) == "-1.00"
    assert format_cents(7) == "0.07"


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=-(10**14), max_value=10**14), st.booleans())
def test_round_trip_through_text(cents: int, comma: bool) -> None:
    text = format_cents(cents).replace(".", ",") if comma else format_cents(cents)
    assert to_cents(parse_amount(text)) == cents
    assert from_cents(cents) == Decimal(cents) / 100
