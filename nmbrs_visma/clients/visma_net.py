"""Visma.net ERP client: the reference data the checks need and journal transactions v2 (sync, httpx2).

Reads are retried on 5xx and transport errors; a create is sent once (a lost answer is resolved by the
caller's look-up of its posting key, never by sending again). Amounts come back as exact Decimals.
Auth is `VismaConnectAuth` (clients/visma_connect.py).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from decimal import Decimal
from functools import partial
from typing import Any

import httpx2
from pydantic import BaseModel, ConfigDict

from nmbrs_visma.clients.errors import ApiError, ResponseError
from nmbrs_visma.clients.http import VISMA_NET_ERRORS, ApiClient
from nmbrs_visma.clients.secrets import Scrubber
from nmbrs_visma.clients.visma_connect import VismaConnectAuth
from nmbrs_visma.fan_out import at_once
from nmbrs_visma.journals.models import AdministrationReference, FinancialPeriod, LedgerAccount, Segment

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.finance.visma.net"
TENANT_HEADER = "ipp-company-id"
_MAX_PAGES = 10_000
_CENT = Decimal("0.01")


class JournalTransactionSummary(BaseModel):
    """One GL batch as the listing shows it, all its pages put together."""

    model_config = ConfigDict(frozen=True)

    batch_number: str
    description: str = ""
    financial_period: str
    status: str
    branch: str = ""
    line_count: int
    debit: Decimal
    credit: Decimal
    reversing_entry: bool = False  # made by Visma.net's Reverse action
    original_batch_number: str = ""  # a reversing batch: the batch it reverses


def _json(response: httpx2.Response) -> Any:
    return json.loads(response.content, parse_float=Decimal) if response.content else None


def _date(value: str | None) -> dt.date:
    if not value:
        raise ValueError("missing date")
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).date()


def _period_id(row: Mapping[str, Any]) -> str:
    """`period` is YYYYPP; tolerate PPYYYY, or derive it from year + start date."""
    period = str(row.get("period") or "")
    year = str(row.get("year") or "")
    if len(period) == 6 and period.isdigit():
        return period if period.startswith(year) or not year else f"{period[2:]}{period[:2]}"
    return f"{year}{_date(row.get('startDate')).month:02d}"


class VismaNetClient(ApiClient):
    """One Visma.net tenant, through one Visma Connect account. Use as a context manager or call `close()`.

    `http`: the shared client settings of `ApiClient` (`base_url`, `timeout`, `policy`, `sleep`, `transport`, ...)."""

    default_base_url = DEFAULT_BASE_URL
    style = VISMA_NET_ERRORS

    def __init__(
        self, *, auth: VismaConnectAuth, page_size: int = 1000, send_tenant_header: bool = False, **http: Any
    ) -> None:
        headers = {"Accept": "application/json"}
        if send_tenant_header and auth.tenant_id:
            headers[TENANT_HEADER] = auth.tenant_id  # the API refuses a token of another tenant
        self.auth = auth
        self.page_size = page_size
        super().__init__(auth=auth, scrubber=Scrubber(auth.scrubber), headers=headers, **http)

    def __repr__(self) -> str:
        return f"VismaNetClient(base_url={str(self._http.base_url)!r}, tenant_id={self.auth.tenant_id!r})"

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        response = self._sender.request("GET", path, params=dict(params or {}))
        logger.debug("Visma.net GET %s -> %s", path, response.status_code)
        return _json(response)

    # -- reference data --

    def financial_periods(self) -> dict[str, FinancialPeriod]:
        """Every financial period, keyed "YYYYPP"."""
        periods: dict[str, FinancialPeriod] = {}
        for row in self._get("/v1/financialPeriod") or []:
            period_id = _period_id(row)
            periods[period_id] = FinancialPeriod(
                period_id=period_id,
                start_date=_date(row.get("startDate")),
                end_date=_date(row.get("endDate")),
                active=bool(row.get("active", True)),
                closed_in_gl=bool(row.get("closedInGeneralLedger", False)),
            )
        return periods

    def subaccount_segments(self, dimension_id: str = "SUBACCOUNT") -> tuple[Segment, ...]:
        body = self._get(f"/v1/dimension/{dimension_id}", {"expandSegmentsValues": "true"}) or {}
        return tuple(
            Segment(
                segment_id=int(segment["segmentId"]),
                description=str(segment.get("description") or ""),
                length=int(segment.get("length") or 0),
                values={str(v["valueId"]): bool(v.get("active", True)) for v in segment.get("segmentValues") or []},
            )
            for segment in body.get("segments") or []
        )

    def accounts(self) -> dict[str, LedgerAccount]:
        return {
            str(row["accountCD"]): LedgerAccount(
                number=str(row["accountCD"]),
                description=str(row.get("description") or ""),
                active=bool(row.get("active", True)),
            )
            for row in self._get("/v1/account") or []
        }

    def branches(self) -> list[str]:
        return [str(row["number"]) for row in self._get("/v1/branch") or []]

    def ledgers(self) -> list[str]:
        return [str(row["number"]) for row in self._get("/v1/ledger") or []]

    def reference(self, dimension_id: str = "SUBACCOUNT") -> AdministrationReference:
        """Periods, accounts and subaccount segments: what checks and mapping need, read once per run.

        The three reads are independent, so they go out at once: one read's latency, not three.
        """
        periods, accounts, segments = at_once(
            [self.financial_periods, self.accounts, partial(self.subaccount_segments, dimension_id)]
        )
        return AdministrationReference(
            tenant_id=self.auth.tenant_id or "", periods=periods, accounts=accounts, segments=segments
        )

    # -- journal transactions v2 --

    def create_journal_transaction(self, payload: bytes) -> str:
        """POST once; the batch number comes from `Location`. Never retried after it may have reached the API: an
        error whose `outcome_unknown` is set means the caller must look the key up."""
        response = self._sender.request(
            "POST", "/v2/journaltransaction", content=payload, headers={"Content-Type": "application/json"}
        )
        location = response.headers.get("Location", "")
        batch_number = location.rstrip("/").rsplit("/", 1)[-1] if location else ""
        if not batch_number:
            raise ResponseError(
                response.status_code,
                "NoLocation",
                "journal transaction created but the answer carries no Location header",
                response.headers.get("Ipp-Request-Id"),
                api="Visma.net",
                method="POST",
                path="/v2/journaltransaction",
                outcome_unknown=True,  # created, but which batch is not said: found by its key
            )
        logger.info("Visma.net created journal transaction %s", batch_number)
        return batch_number

    def journal_transaction(self, batch_number: str) -> dict[str, Any]:
        """One `JournalTransactionDto`, amounts as Decimal."""
        return self._get(f"/v2/journaltransaction/{batch_number}")

    def list_journal_transactions(
        self, period_id: str, *, module: str = "GL", last_modified: dt.datetime | None = None
    ) -> list[JournalTransactionSummary]:
        """Every batch of a period, all pages read.

        The API does not say whether a page counts lines or batches, nor what `metadata.totalCount` counts, so
        neither is trusted: paging stops only at an empty page or one short by both counts (fewer lines and
        fewer batches than the page size, capped by `maxPageSize`). Stopping early would hide a batch from the
        exactly-once look-up, which would then post it again. A batch cut by a page boundary shows on both
        pages: lines are gathered per `batchNumber`, de-duplicated by line number.
        """
        params: dict[str, Any] = {"periodId": period_id, "module": module, "pageSize": self.page_size}
        if last_modified is not None:
            params["lastModifiedDateTime"] = last_modified.strftime("%Y-%m-%dT%H:%M:%S")
        headers: dict[str, Mapping[str, Any]] = {}
        lines: dict[str, dict[Any, Mapping[str, Any]]] = {}
        for page_number in range(1, _MAX_PAGES + 1):
            page = self._get("/v2/journaltransaction", {**params, "pageNumber": page_number}) or []
            page_lines = self._gather_page(page, headers, lines)
            if not page or not self._is_full_page(page, page_lines):
                break
        else:
            raise ApiError(None, "TooManyPages", f"period {period_id}: more than {_MAX_PAGES} pages", api="Visma.net")
        return [self._summary(headers[number], list(lines[number].values())) for number in headers]

    @staticmethod
    def _gather_page(
        page: list[Mapping[str, Any]],
        headers: dict[str, Mapping[str, Any]],
        lines: dict[str, dict[Any, Mapping[str, Any]]],
    ) -> int:
        """Add one listing page to `headers`/`lines` (per batch, keyed by line number); the page's line count."""
        page_lines = 0
        for batch in page:
            number = str(batch["batchNumber"])
            headers.setdefault(number, batch)
            bucket = lines.setdefault(number, {})
            for line in batch.get("journalTransactionLines") or []:
                bucket[line.get("lineNumber", len(bucket) + 1)] = line
                page_lines += 1
        return page_lines

    def _is_full_page(self, page: list[Mapping[str, Any]], page_lines: int) -> bool:
        """Full by either count (lines or batches): the page size asked for, capped silently by `maxPageSize`."""
        max_page = min(
            (int(b["metadata"]["maxPageSize"]) for b in page if (b.get("metadata") or {}).get("maxPageSize")),
            default=None,
        )
        full = min(self.page_size, max_page) if max_page else self.page_size
        return page_lines >= full or len(page) >= full

    @staticmethod
    def _summary(header: Mapping[str, Any], lines: list[Mapping[str, Any]]) -> JournalTransactionSummary:
        def total(key: str, line_key: str) -> Decimal:
            if header.get(key) is not None:
                return Decimal(str(header[key])).quantize(_CENT)
            return sum((Decimal(str(line.get(line_key) or 0)) for line in lines), Decimal("0")).quantize(_CENT)

        return JournalTransactionSummary(
            batch_number=str(header["batchNumber"]),
            description=str(header.get("description") or ""),
            financial_period=str(header.get("financialPeriod") or ""),
            status=str(header.get("status") or ""),
            branch=str(header.get("branch") or ""),
            line_count=len(lines),
            debit=total("debitTotal", "debitAmount"),
            credit=total("creditTotal", "creditAmount"),
            reversing_entry=bool(header.get("reversingEntry")),
            original_batch_number=str(header.get("originalBatchNumber") or ""),
        )

    def release_journal_transaction(self, batch_number: str) -> None:
        self._sender.request("POST", f"/v2/journaltransaction/{batch_number}/action/release")
        logger.info("Visma.net released journal transaction %s", batch_number)
