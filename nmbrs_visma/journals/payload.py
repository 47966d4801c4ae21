"""The Visma.net journal transaction payload (`POST /v2/journaltransaction`) and its exact JSON rendering.

The models mirror `JournalTransactionUpdateDto` / `JournalTransactionLineUpdateDto` of the published spec
field for field (camelCase names, every value wrapped as `{"value": ...}`, `subaccount` a plain array of
`{"segmentId", "segmentValue"}`). Amounts are written as JSON numbers with exactly two decimals straight
from integer cents or `Decimal`, never through a float.

Two renderers produce the same bytes: `payload_json(model)` for one transaction held as a model, and the
columnar `render_amounts` / `render_lines` / `render_transaction` that `build.py` uses for thousands of
transactions at once (tests hold them byte-identical).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from decimal import Decimal
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from nmbrs_visma.journals.money import format_cents, to_cents


class _Dto(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DtoValueOfString(_Dto):
    value: str


class DtoValueOfBoolean(_Dto):
    value: bool


class DtoValueOfInt32(_Dto):
    value: int


class DtoValueOfDecimal(_Dto):
    value: Decimal


class DtoValueOfDateTime(_Dto):
    value: dt.datetime


class SegmentUpdateDto(_Dto):
    segmentId: int
    segmentValue: str


class JournalTransactionLineUpdateDto(_Dto):
    """One line of a journal transaction (field order = the spec's = the JSON's)."""

    operation: Literal["Insert", "Update", "Delete"] | None = None
    lineNumber: DtoValueOfInt32 | None = None
    accountNumber: DtoValueOfString | None = None
    subaccount: list[SegmentUpdateDto] | None = None
    project: DtoValueOfString | None = None
    projectTask: DtoValueOfString | None = None
    referenceNumber: DtoValueOfString | None = None
    transactionDescription: DtoValueOfString | None = None
    debitAmountInCurrency: DtoValueOfDecimal | None = None
    creditAmountInCurrency: DtoValueOfDecimal | None = None
    vatCodeId: DtoValueOfString | None = None
    vatId: DtoValueOfString | None = None
    branch: DtoValueOfString | None = None
    uom: DtoValueOfString | None = None
    quantity: DtoValueOfDecimal | None = None
    note: DtoValueOfString | None = None


class JournalTransactionUpdateDto(_Dto):
    """A journal transaction to create (field order = the spec's = the JSON's)."""

    batchNumber: DtoValueOfString | None = None
    hold: DtoValueOfBoolean | None = None
    transactionDate: DtoValueOfDateTime | None = None
    postPeriod: DtoValueOfString | None = None
    financialPeriod: DtoValueOfString | None = None
    ledger: DtoValueOfString | None = None
    currencyId: DtoValueOfString | None = None
    exchangeRate: DtoValueOfDecimal | None = None
    autoReversing: DtoValueOfBoolean | None = None
    description: DtoValueOfString | None = None
    controlTotalInCurrency: DtoValueOfDecimal | None = None
    createVatTransaction: DtoValueOfBoolean | None = None
    skipVatAmountValidation: DtoValueOfBoolean | None = None
    transactionCode: DtoValueOfString | None = None
    branch: DtoValueOfString | None = None
    overrideNumberSeries: DtoValueOfBoolean | None = None
    journalTransactionLines: list[JournalTransactionLineUpdateDto] | None = None


def payload_json(transaction: JournalTransactionUpdateDto) -> bytes:
    """Compact UTF-8 JSON of a transaction; amounts as two-decimal numbers, unset fields left out."""
    return _encode(transaction.model_dump(mode="python", exclude_none=True)).encode("utf-8")


def _encode(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{json_string(key)}:{_encode(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return format_cents(to_cents(value))
    if isinstance(value, dt.datetime):
        return json_string(value.isoformat())
    if isinstance(value, str):
        return json_string(value)
    raise TypeError(f"cannot write {type(value).__name__} into a payload")  # a float never gets here


def json_string(text: str) -> str:
    """A JSON string literal, UTF-8 kept as is: exactly `json.dumps(text, ensure_ascii=False)`, by json's own
    encoder without `dumps`' set-up per call (it runs for every text of every line)."""
    return encode_basestring(text)


def transaction_datetime(date: dt.date) -> str:
    """The `transactionDate` value: midnight of the booking date, without an offset, as Visma.net writes it."""
    return dt.datetime.combine(date, dt.time()).isoformat()


_FRACTIONS = np.array([f"{n:02d}" for n in range(100)], dtype=object)


def render_amounts(cents: np.ndarray) -> np.ndarray:
    """Two-decimal texts of int64 cents, vectorised: [12345, -5] -> ['123.45', '-0.05'] (object array)."""
    cents = np.asarray(cents, dtype=np.int64)
    magnitude = np.abs(cents)
    signs = np.where(cents < 0, "-", "").astype(object)
    units = (magnitude // 100).astype(str).astype(object)
    return signs + units + "." + _FRACTIONS[magnitude % 100]


def subaccount_fragment(segments: Sequence[tuple[int, str]]) -> str:
    """`,"subaccount":[...]` for a line's segment values, or `""` when the line has none."""
    if not segments:
        return ""
    items = ",".join(f'{{"segmentId":{int(sid)},"segmentValue":{json_string(value)}}}' for sid, value in segments)
    return f',"subaccount":[{items}]'


def render_lines(
    *,
    accounts: Sequence[str],
    subaccounts: Sequence[str],
    references: Sequence[str],
    descriptions: Sequence[str],
    amounts: Sequence[str],
    debit: Sequence[bool],
) -> list[str]:
    """Line objects from columns: texts already JSON literals (`json_string`), subaccounts from
    `subaccount_fragment`, amounts from `render_amounts`, `debit` False for a credit line."""
    return [
        f'{{"operation":"Insert","accountNumber":{{"value":{account}}}{sub},"referenceNumber":{{"value":{ref}}},'
        f'"transactionDescription":{{"value":{text}}},"{"debit" if is_debit else "credit"}AmountInCurrency":'
        f'{{"value":{amount}}}}}'
        for account, sub, ref, text, amount, is_debit in zip(
            accounts, subaccounts, references, descriptions, amounts, debit, strict=True
        )
    ]


def render_transaction(
    *,
    hold: bool,
    transaction_date: dt.date,
    financial_period: str,
    ledger: str,
    description: str,
    branch: str,
    lines: Iterable[str],
) -> bytes:
    """A whole transaction from its header values and rendered line objects (see `render_lines`)."""
    head = (
        f'{{"hold":{{"value":{"true" if hold else "false"}}},'
        f'"transactionDate":{{"value":"{transaction_datetime(transaction_date)}"}},'
        f'"financialPeriod":{{"value":{json_string(financial_period)}}},'
        f'"ledger":{{"value":{json_string(ledger)}}},'
        f'"description":{{"value":{json_string(description)}}},'
        f'"branch":{{"value":{json_string(branch)}}},'
        '"journalTransactionLines":['
    )
    return (head + ",".join(lines) + "]}").encode("utf-8")
