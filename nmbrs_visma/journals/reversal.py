"""The reversal of a journal transaction Visma.net holds: the same lines, debit and credit swapped, in its period.

Why a reversal and not an edit: a booked journal is corrected by a reversal plus a new posting, so the ledger's
history shows what was booked, what undid it and what replaced it. Built from Visma.net's own record of the
transaction (`GET /v2/journaltransaction/{batch}`), so it undoes exactly what was booked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from nmbrs_visma.journals.payload import (
    DtoValueOfBoolean,
    DtoValueOfDateTime,
    DtoValueOfDecimal,
    DtoValueOfString,
    JournalTransactionLineUpdateDto,
    JournalTransactionUpdateDto,
    SegmentUpdateDto,
    payload_json,
)

_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Reversal:
    """A reversal ready to post: its payload and what it books."""

    period_id: str
    lines: int
    debit: Decimal
    credit: Decimal
    payload: bytes


def _amount(line: Mapping[str, Any], name: str) -> Decimal:
    value = line.get(f"{name}AmountInCurrency", line.get(f"{name}Amount"))
    return Decimal(str(value or 0)).quantize(_CENT)


def _segments(line: Mapping[str, Any]) -> list[SegmentUpdateDto] | None:
    """The line's subaccount segments as booked, every one of them (all-zero values too: a create gives every
    segment of the dimension a value)."""
    subaccount = line.get("subaccount") or {}
    segments = [
        SegmentUpdateDto(segmentId=int(segment["segmentId"]), segmentValue=str(segment["segmentValue"]))
        for segment in subaccount.get("segments") or []
        if str(segment.get("segmentValue") or "").strip()
    ]
    return segments or None


def reversal_of(original: Mapping[str, Any], *, description: str, hold: bool) -> Reversal:
    """The reversal of `original` (a `JournalTransactionDto`): every line with its sides swapped, booked in the
    original's financial period on the original's date. Raises ValueError when the original holds no lines."""
    lines = []
    debit = credit = Decimal("0.00")
    for line in original.get("journalTransactionLines") or []:
        was_debit, was_credit = _amount(line, "debit"), _amount(line, "credit")
        debit, credit = debit + was_credit, credit + was_debit
        reference = str(line.get("referenceNumber") or "")
        text = str(line.get("transactionDescription") or line.get("description") or "")
        lines.append(
            JournalTransactionLineUpdateDto(
                operation="Insert",
                accountNumber=DtoValueOfString(value=str(line["accountNumber"])),
                subaccount=_segments(line),
                referenceNumber=DtoValueOfString(value=reference) if reference else None,
                transactionDescription=DtoValueOfString(value=text) if text else None,
                debitAmountInCurrency=DtoValueOfDecimal(value=was_credit) if was_credit else None,
                creditAmountInCurrency=DtoValueOfDecimal(value=was_debit) if was_debit else None,
            )
        )
    if not lines:
        raise ValueError(f"batch {original.get('batchNumber')} holds no lines to reverse")
    period_id = str(original["financialPeriod"])
    date = dt.datetime.fromisoformat(str(original["transactionDate"]).replace("Z", "+00:00")).replace(tzinfo=None)
    transaction = JournalTransactionUpdateDto(
        hold=DtoValueOfBoolean(value=hold),
        transactionDate=DtoValueOfDateTime(value=dt.datetime.combine(date.date(), dt.time())),
        financialPeriod=DtoValueOfString(value=period_id),
        ledger=DtoValueOfString(value=str(original["ledger"])) if original.get("ledger") else None,
        description=DtoValueOfString(value=description),
        branch=DtoValueOfString(value=str(original["branch"])) if original.get("branch") else None,
        journalTransactionLines=lines,
    )
    return Reversal(period_id, len(lines), debit, credit, payload_json(transaction))
