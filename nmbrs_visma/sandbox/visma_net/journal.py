"""Journal transactions in the emulator: validate a `JournalTransactionUpdateDto` the way Visma.net does,
book it with exact Decimal amounts, and render `JournalTransactionDto`s, including the pages of
`GET /v2/journaltransaction`: counting lines (a batch may straddle two pages) or whole batches.
"""

from __future__ import annotations

import base64
import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from nmbrs_visma.sandbox.visma_net.world import ListingPages, StoredLine, StoredTransaction, Tenant

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


def _value(body: dict[str, Any], name: str) -> Any:
    field = body.get(name)
    if field is None:
        return None
    if not isinstance(field, dict) or len(field) > ("value" in field):  # any key but "value"
        raise VismaFault(400, f'{name}: expected an object {{"value": ...}}', "InvalidFormat")
    return field.get("value")


def _amount(value: Any, where: str) -> Decimal:
    if value is None:
        return Decimal("0")
    if isinstance(value, bool) or not isinstance(value, int | Decimal):  # the schema's number: "12.00" is refused
        raise VismaFault(400, f"{where}: not a number", "InvalidFormat")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise VismaFault(400, f"{where}: not a number", "InvalidFormat") from None
    if amount != amount.quantize(CENT):
        raise VismaFault(400, f"{where}: {amount} has more than 2 decimals", "InvalidAmount")
    return amount.quantize(CENT)


def _date(value: Any) -> dt.date:
    if not isinstance(value, str):
        raise VismaFault(400, "transactionDate is required", "MandatoryField")
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        raise VismaFault(400, f"transactionDate {value!r} is not a date", "InvalidFormat") from None


def _period(tenant: Tenant, body: dict[str, Any]) -> str:
    period_id = _value(body, "financialPeriod")
    post_period = _value(body, "postPeriod")
    if not period_id and post_period:  # MMYYYY
        period_id = f"{str(post_period)[2:]}{str(post_period)[:2]}"
    if not period_id:
        raise VismaFault(400, "financialPeriod is required", "MandatoryField")
    period = tenant.periods.get(str(period_id))
    if period is None:
        raise VismaFault(400, f"Financial period {period_id} does not exist", "FinancialPeriodNotFound")
    _, _, active, closed = period
    if not active:
        raise VismaFault(400, f"Financial period {period_id} is inactive", "FinancialPeriodInactive")
    if closed:
        raise VismaFault(400, f"Financial period {period_id} is closed in General Ledger", "FinancialPeriodClosed")
    return str(period_id)


def _subaccount(tenant: Tenant, raw: Any, where: str) -> dict[int, str]:
    values: dict[int, str] = {}
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise VismaFault(400, f"{where}: subaccount must be a list of segments", "InvalidFormat")
    for item in raw:
        if not isinstance(item, dict):
            raise VismaFault(400, f"{where}: subaccount segment must be an object", "InvalidFormat")
        _defined_only(item, SEGMENT_PROPERTIES, "SegmentUpdateDto", where)
        segment_id, value = item.get("segmentId"), item.get("segmentValue")
        segment = tenant.segments.get(segment_id) if isinstance(segment_id, int) else None
        if segment is None:
            raise VismaFault(400, f"{where}: segment {segment_id} does not exist", "SegmentNotFound")
        description, _, known = segment
        if not isinstance(value, str) or value not in known:
            raise VismaFault(400, f"{where}: {description} value {value!r} does not exist", "SegmentValueNotFound")
        if not known[value]:
            raise VismaFault(400, f"{where}: {description} value {value!r} is inactive", "SegmentValueInactive")
        values[segment_id] = value
    return values


# The properties the published schema defines (JournalTransactionUpdateDto, its lines, SegmentUpdateDto; a
# contract test holds these to the spec). Anything else is refused: a field the client invents would be lost.
HEADER_PROPERTIES = frozenset(
    {
        "autoReversing", "batchNumber", "branch", "controlTotalInCurrency", "createVatTransaction", "currencyId",
        "description", "exchangeRate", "financialPeriod", "hold", "journalTransactionLines", "ledger",
        "overrideNumberSeries", "postPeriod", "skipVatAmountValidation", "transactionCode", "transactionDate",
    }
)  # fmt: skip
LINE_PROPERTIES = frozenset(
    {
        "accountNumber", "branch", "creditAmountInCurrency", "debitAmountInCurrency", "lineNumber", "note",
        "operation", "project", "projectTask", "quantity", "referenceNumber", "subaccount",
        "transactionDescription", "uom", "vatCodeId", "vatId",
    }
)  # fmt: skip
SEGMENT_PROPERTIES = frozenset({"segmentId", "segmentValue"})


def _defined_only(body: dict[str, Any], defined: frozenset[str], schema: str, where: str = "") -> None:
    unknown = sorted(set(body) - defined)
    if unknown:
        prefix = f"{where}: " if where else ""
        names = ", ".join(unknown)
        raise VismaFault(400, f"{prefix}{names}: not a property of {schema}", "InvalidFormat")


def validate_create(tenant: Tenant, body: Any) -> tuple[StoredTransaction, bool]:
    """Check a create payload against the tenant; return the batch to book (number not yet set) and `hold`."""
    if not isinstance(body, dict):
        raise VismaFault(400, "The request body must be a JournalTransaction object", "InvalidFormat")
    _defined_only(body, HEADER_PROPERTIES, "JournalTransactionUpdateDto")
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
    if not isinstance(raw_lines, list) or not raw_lines:
        raise VismaFault(400, "A journal transaction needs at least one line", "MandatoryField")
    lines: list[StoredLine] = []
    for number, raw in enumerate(raw_lines, start=1):
        where = f"Line {number}"
        if not isinstance(raw, dict):
            raise VismaFault(400, f"{where}: must be an object", "InvalidFormat")
        _defined_only(raw, LINE_PROPERTIES, "JournalTransactionLineUpdateDto", where)
        account = _value(raw, "accountNumber")
        if not account:
            raise VismaFault(400, f"{where}: accountNumber is required", "MandatoryField")
        known = tenant.accounts.get(str(account))
        if known is None:
            raise VismaFault(400, f"{where}: Account {account} does not exist", "AccountNotFound")
        if not known[1]:
            raise VismaFault(400, f"{where}: Account {account} is inactive", "AccountInactive")
        reference = _value(raw, "referenceNumber") or ""
        if len(str(reference)) > MAX_REFERENCE:
            raise VismaFault(400, f"{where}: referenceNumber longer than {MAX_REFERENCE} characters", "FieldTooLong")
        line_branch = _value(raw, "branch") or branch
        if line_branch not in tenant.branches:
            raise VismaFault(400, f"{where}: Branch {line_branch} does not exist", "BranchNotFound")
        lines.append(
            StoredLine(
                line_number=number,
                account=str(account),
                subaccount=_subaccount(tenant, raw.get("subaccount"), where),
                reference=str(reference),
                description=str(_value(raw, "transactionDescription") or ""),
                debit=_amount(_value(raw, "debitAmountInCurrency"), f"{where}: debitAmountInCurrency"),
                credit=_amount(_value(raw, "creditAmountInCurrency"), f"{where}: creditAmountInCurrency"),
                branch=str(line_branch),
            )
        )
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
        ledger=str(ledger),
        branch=str(branch),
        description=str(_value(body, "description") or ""),
        hold=hold,
        status="Hold" if hold else "Balanced",
        lines=lines,
        last_modified=dt.datetime.now(dt.UTC),
        currency=str(_value(body, "currencyId") or "EUR"),
    )
    return transaction, hold


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
        "reversingEntry": False,
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
        "timeStamp": base64.b64encode(tx.last_modified.isoformat().encode()).decode(),
        "journalTransactionLines": [line_dto(tenant, line) for line in (tx.lines if lines is None else lines)],
        "attachments": [],
    }
    if metadata is not None:
        dto["metadata"] = metadata
    return dto


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
