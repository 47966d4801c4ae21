"""Exact money: Nmbrs amount text -> `Decimal` -> integer cents, and back.

Payroll amounts are booked to the cent; a float anywhere would lose one sooner or later, so amounts are
parsed from text straight into `Decimal` and carried as int64 cents inside frames.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

CENT = Decimal("0.01")
# int64 cents hold far more; this bound keeps sums of a million lines well inside int64 as well.
MAX_CENTS = 10**15
# Every sum of a run's cents (per account, per period, a debit against a credit) stays below this, half of
# int64's range, or the run is refused (`frame.runs_past_sum_limit`): pandas and numpy wrap int64 in silence.
MAX_SUM_CENTS = 2**62

_PLAIN = re.compile(r"[+-]?\d+(?:[.,]\d+)?", re.ASCII)
# `1,234` / `1.234`: a thousands separator or three decimals? Refused rather than guessed.
_AMBIGUOUS = re.compile(r"[+-]?[1-9]\d{0,2}[.,]\d{3}", re.ASCII)
# Grouped integer part: 1.234.567 or 1,234,567 (groups of exactly three digits after the first).
_GROUPED = re.compile(
    r"(?P<sign>[+-]?)(?P<int>\d{1,3}(?:(?P<sep>[.,])\d{3})+)(?:(?P<dec>[.,])(?P<frac>\d+))?",
    re.ASCII,
)


class AmountError(ValueError):
    """An amount that cannot be read exactly (the message says why and quotes the text)."""


def parse_amount(text: str) -> Decimal:
    """Read an Nmbrs amount: `1234.56`, `1234,56`, `-12,5`, or grouped `1.234,56` / `1,234.56`.

    A lone separator is the decimal separator. Thousands separators are accepted only when unambiguous:
    both separators present (the last one is the decimal one) or the same separator repeated, always in
    groups of three. `1,234` alone could be 1.234 or 1234 and is refused: a guess is never made silently.
    """
    raw = text.strip()
    if _AMBIGUOUS.fullmatch(raw):
        raise AmountError(f"ambiguous amount {text!r}: thousands separator or three decimals?")
    if _PLAIN.fullmatch(raw):
        normalised = raw.replace(",", ".")
    else:
        match = _GROUPED.fullmatch(raw)
        if match is None or match["sep"] == match["dec"]:
            raise AmountError(f"not an amount: {text!r}")
        normalised = match["sign"] + match["int"].replace(match["sep"], "")
        if match["dec"]:
            normalised += "." + match["frac"]
    try:
        value = Decimal(normalised)
    except InvalidOperation as exc:  # pragma: no cover - the patterns admit only valid decimals
        raise AmountError(f"not an amount: {text!r}") from exc
    if abs(value) >= Decimal(MAX_CENTS) / 100:
        raise AmountError(f"amount out of range: {text!r}")
    return value


def to_cents(amount: Decimal) -> int:
    """Exact integer cents; refuses sub-cent precision (`1.005`) instead of rounding it away."""
    if not amount.is_finite():
        raise AmountError(f"not a finite amount: {amount}")
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise AmountError(f"amount has more than two decimals: {amount}")
    result = int(cents)
    if abs(result) >= MAX_CENTS:
        raise AmountError(f"amount out of range: {amount}")
    return result


def from_cents(cents: int) -> Decimal:
    """`Decimal` with exactly two places: 12345 -> Decimal('123.45'), -5 -> Decimal('-0.05')."""
    return (Decimal(int(cents)) / 100).quantize(CENT)


def format_cents(cents: int) -> str:
    """Plain two-decimal text of an amount in cents, e.g. -5 -> '-0.05' (for messages and JSON)."""
    sign = "-" if cents < 0 else ""
    units, frac = divmod(abs(int(cents)), 100)
    return f"{sign}{units}.{frac:02d}"
