"""Journal transactions in the emulator: validate a `JournalTransactionUpdateDto` the way Visma.net does,
book it with exact Decimal amounts (a create, or the edit of a batch not released yet: `validate_update`), and
render `JournalTransactionDto`s, including the pages of `GET /v2/journaltransaction`: counting lines (a batch
may straddle two pages) or whole batches.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import replace
from decimal import Context, Decimal
from typing import Any, Literal

from nmbrs_visma.sandbox.visma_net.world import UNRELEASED, ListingPages, StoredLine, StoredTransaction, Tenant

MAX_REFERENCE = 15
CENT = Decimal("0.01")


class VismaFault(Exception):
    """A refusal rendered in Visma's error shape: status, fault code, message."""

    def __init__(
        self, status: int, message: str, code: str = "GeneralException", headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})


# The create DTO as the published schema defines it (JournalTransactionUpdateDto, JournalTransactionLineUpdateDto,
# SegmentUpdateDto; a contract test holds these tables to the spec). A `*_VALUES` property is a DtoValue wrapper,
# `{"value": <kind>}`; the others are written plain. Anything else is refused: a field the client invents would
# be lost, and a value of the wrong JSON type is one Visma.net cannot bind.
Kind = Literal["string", "boolean", "date-time", "number", "int32"]

HEADER_VALUES: dict[str, Kind] = {
    "batchNumber": "string", "hold": "boolean", "transactionDate": "date-time", "postPeriod": "string",
    "financialPeriod": "string", "ledger": "string", "currencyId": "string", "exchangeRate": "number",
    "autoReversing": "boolean", "description": "string", "controlTotalInCurrency": "number",
    "createVatTransaction": "boolean", "skipVatAmountValidation": "boolean", "transactionCode": "string",
    "branch": "string", "overrideNumberSeries": "boolean",
}  # fmt: skip
LINE_VALUES: dict[str, Kind] = {
    "lineNumber": "int32", "accountNumber": "string", "project": "string", "projectTask": "string",
    "referenceNumber": "string", "transactionDescription": "string", "debitAmountInCurrency": "number",
    "creditAmountInCurrency": "number", "vatCodeId": "string", "vatId": "string", "branch": "string",
    "uom": "string", "quantity": "number", "note": "string",
}  # fmt: skip
SEGMENT_FIELDS: dict[str, Kind] = {"segmentId": "int32", "segmentValue": "string"}
OPERATIONS = ("Insert", "Update", "Delete")  # JournalTransactionLineUpdateDto.operation's enum

HEADER_PROPERTIES = frozenset({*HEADER_VALUES, "journalTransactionLines"})
LINE_PROPERTIES = frozenset({*LINE_VALUES, "operation", "subaccount"})
SEGMENT_PROPERTIES = frozenset(SEGMENT_FIELDS)

INT32 = range(-(2**31), 2**31)
# DtoValueOfDecimal binds to a .NET decimal (the schema says "double"): beyond its range the value cannot bind
MAX_DECIMAL = Decimal("79228162514264337593543950335")
_WIDE = Context(prec=100)  # quantizing a large amount to cents needs more than the default 28 digits
_ARTICLE = {"string": "a string", "boolean": "a boolean", "date-time": "a date-time string"}
_ARTICLE |= {"number": "a number", "int32": "an integer"}


def _is_number(value: Any) -> bool:
    """A JSON number (the body is parsed with Decimal floats; a bool is not a number)."""
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def _check_kind(value: Any, kind: Kind, where: str) -> None:
    """Refuse a value that is not of the schema's JSON type (null included: no property is nullable)."""
    if kind in ("string", "date-time"):
        ok = isinstance(value, str)
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "int32":
        ok = _is_number(value)
        if ok and not INT32.start <= value < INT32.stop:  # compared before int(): 1e999999999 is a JSON number
            raise VismaFault(400, f"{where}: {value} is outside the int32 range", "InvalidFormat")
        ok = ok and value == int(value)  # JSON Schema: 2.0 is an integer too
    else:
        ok = _is_number(value)
        if ok and abs(value) > MAX_DECIMAL:
            raise VismaFault(400, f"{where}: {value} is outside the range of a decimal", "InvalidFormat")
    if not ok:
        raise VismaFault(400, f"{where}: not {_ARTICLE[kind]}", "InvalidFormat")


def _check_wrapped(body: dict[str, Any], name: str, kind: Kind, prefix: str) -> None:
    """A DtoValue property: `{"value": <kind>}`; `{}` means not given, any key but "value" is refused."""
    if name not in body:
        return
    field = body[name]
    if not isinstance(field, dict) or set(field) - {"value"}:
        raise VismaFault(400, f'{prefix}{name}: expected an object {{"value": ...}}', "InvalidFormat")
    if "value" in field:
        _check_kind(field["value"], kind, f"{prefix}{name}")


def _check_object(body: Any, values: dict[str, Kind], defined: frozenset[str], schema: str, where: str) -> None:
    """An object of `schema`: only its properties, each DtoValue wrapped and of its kind."""
    if not isinstance(body, dict):
        raise VismaFault(400, f"{where}must be a {schema} object", "InvalidFormat")
    _defined_only(body, defined, schema, where.removesuffix(": "))
    for name, kind in values.items():
        _check_wrapped(body, name, kind, where)


def _check_list(body: dict[str, Any], name: str, where: str) -> list[Any]:
    """An array property's items ([] when not given; null is not an array)."""
    items = body.get(name, [])
    if not isinstance(items, list):
        raise VismaFault(400, f"{where}{name}: not an array", "InvalidFormat")
    return items


def _check_line(line: Any, where: str) -> None:
    _check_object(line, LINE_VALUES, LINE_PROPERTIES, "JournalTransactionLineUpdateDto", where)
    if "operation" in line:
        operation = line["operation"]
        if not isinstance(operation, str) or operation not in OPERATIONS:
            allowed = ", ".join(OPERATIONS)
            shown = json.dumps(operation, default=str)
            raise VismaFault(400, f"{where}operation: {shown} is not one of {allowed}", "InvalidFormat")
    for segment in _check_list(line, "subaccount", where):
        if not isinstance(segment, dict):
            raise VismaFault(400, f"{where}subaccount: a segment must be a SegmentUpdateDto object", "InvalidFormat")
        _defined_only(segment, SEGMENT_PROPERTIES, "SegmentUpdateDto", where.removesuffix(": "))
        for name, kind in SEGMENT_FIELDS.items():
            if name in segment:
                _check_kind(segment[name], kind, f"{where}{name}")


def check_shape(body: Any) -> None:
    """Refuse a create the published schema refuses: a property it does not define, a value of another JSON type,
    a DtoValue not wrapped as `{"value": ...}`, an `operation` outside its enum. Lines are named "Line N"."""
    if not isinstance(body, dict):
        raise VismaFault(400, "The request body must be a JournalTransaction object", "InvalidFormat")
    _check_object(body, HEADER_VALUES, HEADER_PROPERTIES, "JournalTransactionUpdateDto", "")
    for number, line in enumerate(_check_list(body, "journalTransactionLines", ""), start=1):
        _check_line(line, f"Line {number}: ")


def _value(body: dict[str, Any], name: str) -> Any:
    """The value of a DtoValue property already through `check_shape` (None when not given)."""
    return (body.get(name) or {}).get("value")


def _amount(value: Any, where: str) -> Decimal:
    if value is None:
        return Decimal("0")
    amount = Decimal(value)
    if amount != amount.quantize(CENT, context=_WIDE):
        raise VismaFault(400, f"{where}: {amount} has more than 2 decimals", "InvalidAmount")
    return amount.quantize(CENT, context=_WIDE)


def _date(value: Any) -> dt.date:
    if value is None:
        raise VismaFault(400, "transactionDate is required", "MandatoryField")
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        raise VismaFault(400, f"transactionDate {value!r} is not a date", "InvalidFormat") from None


def _period(tenant: Tenant, body: dict[str, Any]) -> str:
    """The financial period booked in: it must exist, be active and be open in the general ledger.

    The transaction date is not held to the period's dates: neither the spec nor Visma.net's documentation says
    that a create is refused when `transactionDate` falls outside `financialPeriod` (a payroll correction is
    booked in the period it corrects, dated by the run), so the emulator refuses no such create.
    """
    period_id = _value(body, "financialPeriod")
    post_period = _value(body, "postPeriod")
    if not period_id and post_period:  # MMYYYY
        period_id = f"{post_period[2:]}{post_period[:2]}"
    if not period_id:
        raise VismaFault(400, "financialPeriod is required", "MandatoryField")
    period = tenant.periods.get(period_id)
    if period is None:
        raise VismaFault(400, f"Financial period {period_id} does not exist", "FinancialPeriodNotFound")
    if not period.active:
        raise VismaFault(400, f"Financial period {period_id} is inactive", "FinancialPeriodInactive")
    if period.closed_in_gl:
        raise VismaFault(400, f"Financial period {period_id} is closed in General Ledger", "FinancialPeriodClosed")
    return period_id


def _subaccount(tenant: Tenant, raw: list[dict[str, Any]], where: str, complete: bool) -> dict[int, str]:
    """The line's segment values, each known and active; with `complete`, every segment of the dimension."""
    values: dict[int, str] = {}
    for item in raw:
        segment_id, value = item.get("segmentId"), item.get("segmentValue")
        segment = tenant.segments.get(int(segment_id)) if segment_id is not None else None
        if segment is None:
            raise VismaFault(400, f"{where}: segment {segment_id} does not exist", "SegmentNotFound")
        description, _, known = segment
        if value not in known:
            raise VismaFault(400, f"{where}: {description} value {value!r} does not exist", "SegmentValueNotFound")
        if not known[value]:
            raise VismaFault(400, f"{where}: {description} value {value!r} is inactive", "SegmentValueInactive")
        values[int(segment_id)] = value
    missing = sorted(set(tenant.segments) - set(values))
    if complete and missing:
        names = ", ".join(str(segment_id) for segment_id in missing)
        raise VismaFault(
            400,
            f"{where}: subaccount has no value for segment {names} of dimension {tenant.dimension_id}",
            "SubaccountIncomplete",
        )
    return values


def _defined_only(body: dict[str, Any], defined: frozenset[str], schema: str, where: str = "") -> None:
    unknown = sorted(set(body) - defined)
    if unknown:
        prefix = f"{where}: " if where else ""
        names = ", ".join(unknown)
        raise VismaFault(400, f"{prefix}{names}: not a property of {schema}", "InvalidFormat")


def validate_create(tenant: Tenant, body: Any, *, complete_subaccounts: bool = False) -> tuple[StoredTransaction, bool]:
    """Check a create payload against the schema and the tenant; return the batch to book (number not yet set)
    and `hold`. `complete_subaccounts`: refuse a line whose subaccount leaves out a segment."""
    check_shape(body)
    hold = bool(_value(body, "hold"))
    period_id = _period(tenant, body)
    transaction_date = _date(_value(body, "transactionDate"))
    ledger = _value(body, "ledger") or next(iter(tenant.ledgers))
    if ledger not in tenant.ledgers:
        raise VismaFault(400, f"Ledger {ledger} does not exist", "LedgerNotFound")
    branch = _value(body, "branch") or next(iter(tenant.branches))
    if branch not in tenant.branches:
        raise VismaFault(400, f"Branch {branch} does not exist", "BranchNotFound")
    raw_lines = body.get("journalTransactionLines") or []
    if not raw_lines:
        raise VismaFault(400, "A journal transaction needs at least one line", "MandatoryField")
    lines = [_line(tenant, raw, number, branch, complete_subaccounts) for number, raw in enumerate(raw_lines, start=1)]
    debit = sum((line.debit for line in lines), Decimal("0"))
    credit = sum((line.credit for line in lines), Decimal("0"))
    if not hold and debit != credit:
        raise VismaFault(
            400, f"Batch is out of balance: debit total {debit} <> credit total {credit}", "BatchOutOfBalance"
        )
    transaction = StoredTransaction(
        batch_number="",
        period_id=period_id,
        transaction_date=transaction_date,
        ledger=ledger,
        branch=branch,
        description=_value(body, "description") or "",
        hold=hold,
        status="Hold" if hold else "Balanced",
        lines=lines,
        last_modified=dt.datetime.now(dt.UTC),
        currency=_value(body, "currencyId") or "EUR",
    )
    return transaction, hold


def validate_update(
    tenant: Tenant, tx: StoredTransaction, body: Any, *, complete_subaccounts: bool = False
) -> StoredTransaction:
    """`PUT /v2/journaltransaction/{number}`: the batch as the `JournalTransactionUpdateDto` changes it, checked as
    a create is, or a `VismaFault` (nothing changed). Only a batch not released yet (on hold or balanced) can be
    edited. Header values given replace the batch's; each line's `operation` says what it does: `Insert` (the
    default) adds a line, `Update` changes the given values of the line `lineNumber` names, `Delete` removes it.
    A batch that is not on hold must still balance."""
    check_shape(body)
    if tx.status not in UNRELEASED:
        raise VismaFault(
            400, f"Batch {tx.batch_number} has status {tx.status} and cannot be edited (reverse it)", "InvalidStatus"
        )
    hold = bool(_value(body, "hold")) if _value(body, "hold") is not None else tx.hold
    given_period = _value(body, "financialPeriod") or _value(body, "postPeriod")
    period_id = _period(tenant, body) if given_period else tx.period_id
    date = _value(body, "transactionDate")
    transaction_date = _date(date) if date is not None else tx.transaction_date
    ledger = _value(body, "ledger") or tx.ledger
    if ledger not in tenant.ledgers:
        raise VismaFault(400, f"Ledger {ledger} does not exist", "LedgerNotFound")
    branch = _value(body, "branch") or tx.branch
    if branch not in tenant.branches:
        raise VismaFault(400, f"Branch {branch} does not exist", "BranchNotFound")
    lines = {line.line_number: line for line in tx.lines}
    next_number = max(lines, default=0) + 1
    for place, raw in enumerate(body.get("journalTransactionLines") or [], start=1):
        operation = raw.get("operation") or "Insert"
        if operation == "Insert":
            lines[next_number] = _line(tenant, raw, next_number, branch, complete_subaccounts)
            next_number += 1
            continue
        number = _value(raw, "lineNumber")
        if number is None or int(number) not in lines:
            shown = "no lineNumber" if number is None else f"lineNumber {number} is not a line of the batch"
            raise VismaFault(400, f"Line {place}: {operation} needs an existing line: {shown}", "LineNotFound")
        number = int(number)
        if operation == "Delete":
            del lines[number]
        else:
            lines[number] = _line(tenant, {**_line_body(lines[number]), **raw}, number, branch, complete_subaccounts)
    if not lines:
        raise VismaFault(400, "A journal transaction needs at least one line", "MandatoryField")
    kept = [lines[number] for number in sorted(lines)]
    debit = sum((line.debit for line in kept), Decimal("0"))
    credit = sum((line.credit for line in kept), Decimal("0"))
    if not hold and debit != credit:
        raise VismaFault(
            400, f"Batch is out of balance: debit total {debit} <> credit total {credit}", "BatchOutOfBalance"
        )
    description = _value(body, "description")
    return replace(
        tx,
        period_id=period_id,
        transaction_date=transaction_date,
        ledger=ledger,
        branch=branch,
        description=tx.description if description is None else description,
        hold=hold,
        status="Hold" if hold else "Balanced",
        lines=kept,
        last_modified=dt.datetime.now(dt.UTC),
        currency=_value(body, "currencyId") or tx.currency,
    )


def _line_body(line: StoredLine) -> dict[str, Any]:
    """A stored line as the `JournalTransactionLineUpdateDto` that books it: what an `Update` starts from."""
    body: dict[str, Any] = {
        "accountNumber": {"value": line.account},
        "subaccount": [{"segmentId": sid, "segmentValue": value} for sid, value in sorted(line.subaccount.items())],
        "referenceNumber": {"value": line.reference},
        "transactionDescription": {"value": line.description},
        "debitAmountInCurrency": {"value": line.debit},
        "creditAmountInCurrency": {"value": line.credit},
        "branch": {"value": line.branch},
    }
    return body


def _line(tenant: Tenant, raw: dict[str, Any], number: int, branch: str, complete: bool) -> StoredLine:
    """One line through the tenant's accounts, branches and segments (its shape already checked)."""
    where = f"Line {number}"
    account = _value(raw, "accountNumber")
    if not account:
        raise VismaFault(400, f"{where}: accountNumber is required", "MandatoryField")
    known = tenant.accounts.get(account)
    if known is None:
        raise VismaFault(400, f"{where}: Account {account} does not exist", "AccountNotFound")
    if not known[1]:
        raise VismaFault(400, f"{where}: Account {account} is inactive", "AccountInactive")
    reference = _value(raw, "referenceNumber") or ""
    if len(reference) > MAX_REFERENCE:
        raise VismaFault(400, f"{where}: referenceNumber longer than {MAX_REFERENCE} characters", "FieldTooLong")
    line_branch = _value(raw, "branch") or branch
    if line_branch not in tenant.branches:
        raise VismaFault(400, f"{where}: Branch {line_branch} does not exist", "BranchNotFound")
    return StoredLine(
        line_number=number,
        account=account,
        subaccount=_subaccount(tenant, raw.get("subaccount") or [], where, complete),
        reference=reference,
        description=_value(raw, "transactionDescription") or "",
        debit=_amount(_value(raw, "debitAmountInCurrency"), f"{where}: debitAmountInCurrency"),
        credit=_amount(_value(raw, "creditAmountInCurrency"), f"{where}: creditAmountInCurrency"),
        branch=line_branch,
    )


# --- rendering -----------------------------------------------------------------------------------------------


def _datetime(value: dt.date | dt.datetime) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")
    return f"{value.isoformat()}T00:00:00"


def _subaccount_dto(tenant: Tenant, line: StoredLine) -> dict[str, Any]:
    segments = []
    parts = []
    for segment_id, (description, length, _) in sorted(tenant.segments.items()):
        value = line.subaccount.get(segment_id, "0" * length)
        parts.append(value)
        segments.append(
            {
                "segmentId": segment_id,
                "segmentDescription": description,
                "segmentValue": value,
                "segmentValueDescription": f"{description} {value}",
            }
        )
    return {"subaccountNumber": "-".join(parts), "active": True, "segments": segments}


def line_dto(tenant: Tenant, line: StoredLine) -> dict[str, Any]:
    return {
        "lineNumber": line.line_number,
        "accountNumber": line.account,
        "description": line.description,
        "subaccount": _subaccount_dto(tenant, line),
        "referenceNumber": line.reference,
        "debitAmount": line.debit,
        "debitAmountInCurrency": line.debit,
        "creditAmount": line.credit,
        "creditAmountInCurrency": line.credit,
        "transactionDescription": line.description,
        "branch": line.branch,
        "module": "ModuleGL",
        "uom": "",
        "quantity": Decimal("0"),
    }


def transaction_dto(
    tenant: Tenant, tx: StoredTransaction, lines: list[StoredLine] | None = None, metadata: dict | None = None
) -> dict[str, Any]:
    """A `JournalTransactionDto`; `lines` narrows it to the lines of one page."""
    dto: dict[str, Any] = {
        "module": "ModuleGL",
        "batchNumber": tx.batch_number,
        "status": tx.status,
        "hold": tx.hold,
        "transactionDate": _datetime(tx.transaction_date),
        "postPeriod": f"{tx.period_id[4:]}{tx.period_id[:4]}",
        "financialPeriod": tx.period_id,
        "ledger": tx.ledger,
        "ledgerDescription": tenant.ledgers.get(tx.ledger, ""),
        "currencyId": tx.currency,
        "exchangeRate": Decimal("1"),
        "autoReversing": False,
        "reversingEntry": tx.reversing_entry,
        "description": tx.description,
        "debitTotal": tx.debit_total,
        "debitTotalInCurrency": tx.debit_total,
        "creditTotal": tx.credit_total,
        "creditTotalInCurrency": tx.credit_total,
        "controlTotal": Decimal("0"),
        "controlTotalInCurrency": Decimal("0"),
        "createVatTransaction": False,
        "skipVatAmountValidation": False,
        "lastModifiedDateTime": _datetime(tx.last_modified),
        "branch": tx.branch,
        "timeStamp": time_stamp(tx),
        "journalTransactionLines": [line_dto(tenant, line) for line in (tx.lines if lines is None else lines)],
        "attachments": [],
    }
    if tx.original_batch_number:
        dto["originalBatchNumber"] = tx.original_batch_number
    if metadata is not None:
        dto["metadata"] = metadata
    return dto


def time_stamp(tx: StoredTransaction) -> str:
    """The batch's version (`timeStamp`, base64): changes with every edit; its ETag is this value quoted."""
    return base64.b64encode(tx.last_modified.isoformat().encode()).decode()


def etag(tx: StoredTransaction) -> str:
    return f'"{time_stamp(tx)}"'


def list_page(
    tenant: Tenant,
    batches: list[StoredTransaction],
    page_number: int,
    page_size: int,
    max_page_size: int,
    count: ListingPages = "lines",
) -> list[dict[str, Any]]:
    """One page of the listing. `count="lines"`: pages count lines and a batch cut by a page boundary appears
    on both pages; `count="batches"`: pages count whole batches. `metadata.totalCount` counts the same unit."""
    start = (page_number - 1) * page_size
    if count == "batches":
        metadata = {"totalCount": len(batches), "maxPageSize": max_page_size}
        return [transaction_dto(tenant, tx, None, metadata) for tx in batches[start : start + page_size]]
    rows = [(tx, line) for tx in batches for line in tx.lines]
    chosen = rows[start : start + page_size]
    metadata = {"totalCount": len(rows), "maxPageSize": max_page_size}
    page: list[dict[str, Any]] = []
    grouped: list[tuple[StoredTransaction, list[StoredLine]]] = []
    for tx, line in chosen:
        if grouped and grouped[-1][0] is tx:
            grouped[-1][1].append(line)
        else:
            grouped.append((tx, [line]))
    for tx, lines in grouped:
        page.append(transaction_dto(tenant, tx, lines, metadata))
    return page
