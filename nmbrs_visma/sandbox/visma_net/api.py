"""The emulated Visma.net ERP API (the paths this project uses) and `create_app`, which also mounts Visma Connect.

Every API call: bearer token check (unknown/expired -> 401, token of another tenant -> 403, missing scope ->
403), the tenant's rate-limit window (`X-RateLimit-*`, 429 + `Retry-After`), the fault switches, then the
handler. Errors come in Visma's two shapes: `{"ExceptionType","ExceptionMessage","ExceptionFaultCode",...}`
from the ERP and `{"Message"}` from the gateway. Every answer carries an `Ipp-Request-Id`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import re
import secrets
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nmbrs_visma.sandbox.echo import EchoSecrets
from nmbrs_visma.sandbox.visma_net.connect import create_connect_router
from nmbrs_visma.sandbox.visma_net.journal import (
    VismaFault,
    etag,
    list_page,
    transaction_dto,
    validate_create,
    validate_update,
)
from nmbrs_visma.sandbox.visma_net.world import Grant, PeriodRecord, Received, Tenant, VismaWorld

TENANT_HEADER = "ipp-company-id"  # optional: when sent, it must name the token's tenant


# marks a Decimal no double holds (a per-process token, so no text a client sent can pass for it); render() turns
# the marked string back into a bare number literal
_EXACT = f"\x00{secrets.token_hex(8)}:"
_EXACT_ESCAPED = json.dumps(_EXACT)[1:-1]
_EXACT_LITERAL = re.compile(f'"{re.escape(_EXACT_ESCAPED)}([^"]+)"')


def _number(value: object) -> object:
    """A Decimal as a double when that round-trips it (the fast path: json's C encoder), else marked for render()."""
    if isinstance(value, Decimal):
        as_float = float(value)
        if Decimal(repr(as_float)) == value:  # numeric equality: 12.0 holds 12.00
            return as_float
        return f"{_EXACT}{value}"
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _not_json(constant: str) -> None:
    """NaN and Infinity: Python's json reads them, JSON has no such number."""
    raise ValueError(f"{constant} is not JSON")


class DecimalJSONResponse(JSONResponse):
    """JSON with Decimal amounts written as exact numbers: through a double when it round-trips (every amount of
    up to 15 digits), else as the Decimal's own literal (a large amount a create accepted)."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, default=_number, ensure_ascii=False, separators=(",", ":"))
        if _EXACT_ESCAPED in text:
            text = _EXACT_LITERAL.sub(r"\1", text)
        return text.encode()


class _DroppedConnection(Exception):
    """Raised after the response head went out: the server closes the connection mid-answer."""


class DropConnectionResponse(Response):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"1000")]})
        raise _DroppedConnection("commit, then lose the response")


def _fault_body(fault: VismaFault) -> dict[str, Any]:
    if fault.status in (401, 403, 429):
        return {"Message": fault.message}
    return {
        "ExceptionType": "IPPException",
        "ExceptionMessage": fault.message,
        "ExceptionFaultCode": fault.code,
        "ExceptionMessageID": f"{fault.code}_{uuid.uuid4()}",
        "ExceptionDetails": "",
    }


class _RequestId:
    """ASGI middleware: an `Ipp-Request-Id` on every answer (plain ASGI: Starlette's `BaseHTTPMiddleware` streams
    a copy of each response, CPU an emulator takes from the code it serves when both share a machine)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"ipp-request-id" for name, _ in headers):
                    headers.append((b"ipp-request-id", str(uuid.uuid4()).encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


@dataclass(frozen=True)
class Caller:
    grant: Grant
    tenant: Tenant


def _required_scope(request: Request) -> str:
    if request.method == "GET":
        return "read"
    return "update" if request.method == "PUT" or request.url.path.endswith("/action/release") else "create"


def create_app(world: VismaWorld | None = None) -> FastAPI:
    """The emulator app: Visma Connect under /connect, the ERP API under /v1 and /v2. A fresh demo world if none."""
    if world is None:
        world = VismaWorld().seed_demo()
    app = FastAPI(title="Visma.net ERP + Visma Connect emulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.world = world
    app.include_router(create_connect_router(world))

    app.add_middleware(_RequestId)
    app.add_middleware(
        EchoSecrets,
        enabled=lambda: world.faults.echo_secrets,
        fields=("ExceptionMessage", "Message", "error_description"),
    )

    @app.exception_handler(VismaFault)
    async def fault(request: Request, exc: VismaFault) -> Response:
        headers = {**getattr(request.state, "rate_headers", {}), **exc.headers}
        return DecimalJSONResponse(_fault_body(exc), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return await fault(request, VismaFault(400, f"The request is invalid: {problems}", "InvalidRequest"))

    @app.exception_handler(StarletteHTTPException)
    async def not_found(request: Request, exc: StarletteHTTPException) -> Response:
        message = "No HTTP resource was found that matches the request URI" if exc.status_code == 404 else exc.detail
        return JSONResponse({"Message": message}, status_code=exc.status_code)

    async def caller(request: Request) -> Caller:
        """Authenticate, check tenant + scope, count against the rate limit, apply faults."""
        body = await request.body()
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        grant = world.grant(token) if token else None
        with world.lock:
            world.received.append(
                Received(
                    world.clock(),
                    request.method,
                    request.url.path,
                    request.url.query,
                    grant.tenant_id if grant else None,
                    body,
                )
            )
        if grant is None or grant.kind != "access":
            raise _unauthorised("Authorization has been denied for this request.")
        if grant.expires_at <= world.clock():
            raise _unauthorised("Authorization has been denied for this request. The access token has expired.")
        asked = request.headers.get(TENANT_HEADER)
        if asked and asked != grant.tenant_id:
            raise VismaFault(403, f"The access token is not valid for company {asked}.")
        tenant = world.tenants.get(grant.tenant_id)
        if tenant is None:
            raise VismaFault(403, "The access token's company does not exist.")
        scope = _required_scope(request)
        if not any(s.endswith(f":{scope}") for s in grant.scopes):
            raise VismaFault(403, f"The access token lacks the '{scope}' scope.")
        allowed, remaining, reset = world.take_budget(tenant.tenant_id)
        request.state.rate_headers = {
            "X-RateLimit-Limit": str(world.rate_limit_per_window),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(max(1, math.ceil(reset))),
        }
        if not allowed:
            wait = str(max(1, math.ceil(reset)))
            raise VismaFault(
                429, f"Rate limit is exceeded. Try again in {wait} seconds.", headers={"Retry-After": wait}
            )
        if world.draw_server_error():
            raise VismaFault(500, "An error has occurred (emulated fault).", "InternalServerError")
        latency = world.faults.read_latency if request.method == "GET" else world.faults.create_latency
        if latency > 0:
            await asyncio.sleep(latency)
        return Caller(grant=grant, tenant=tenant)

    def answer(request: Request, content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        merged = dict(getattr(request.state, "rate_headers", {}))
        merged.update(headers or {})
        return DecimalJSONResponse(content, status_code=status, headers=merged)

    # -- reference data --

    @app.get("/v1/financialPeriod")
    async def financial_periods(request: Request, who: Caller = Depends(caller), greaterThanValue: str | None = None):
        periods = [
            period_dto(period_id, record)
            for period_id, record in sorted(who.tenant.periods.items())
            if _after(period_id, greaterThanValue)
        ]
        return answer(request, periods)

    @app.get("/v1/dimension/{dimensionId}")
    async def dimension(
        request: Request, dimensionId: str, who: Caller = Depends(caller), expandSegmentsValues: bool = False
    ):
        tenant = who.tenant
        if dimensionId != tenant.dimension_id:
            raise VismaFault(404, f"Dimension {dimensionId} not found", "DimensionNotFound")
        segments = []
        for segment_id, (description, length, values) in sorted(tenant.segments.items()):
            segment: dict[str, Any] = {
                "segmentId": segment_id,
                "description": description,
                "length": length,
                "validate": True,
                "isAutoNumber": False,
                "segmentValues": [],
            }
            if expandSegmentsValues:
                segment["segmentValues"] = [
                    {"segmentId": segment_id, "valueId": value, "description": f"{description} {value}", "active": on}
                    for value, on in values.items()
                ]
            segments.append(segment)
        length = sum(segment["length"] for segment in segments)
        return answer(request, {"id": dimensionId, "length": length, "description": "Subaccount", "segments": segments})

    @app.get("/v1/account")
    async def accounts(
        request: Request,
        who: Caller = Depends(caller),
        active: bool | None = None,
        numberToRead: int | None = None,
        skipRecords: int | None = None,
    ):
        rows = [
            {
                "accountID": index,
                "accountCD": number,
                "accountClass": "EXPENSE" if number.startswith("4") else "LIABILITY",
                "type": "Expense" if number.startswith("4") else "Liability",
                "active": is_active,
                "description": description,
                "currency": "EUR",
                "allowManualEntry": True,
            }
            for index, (number, (description, is_active)) in enumerate(sorted(who.tenant.accounts.items()), start=1)
            if active is None or is_active == active
        ]
        start = skipRecords or 0
        rows = rows[start : start + numberToRead] if numberToRead else rows[start:]
        return answer(request, rows)

    @app.get("/v1/branch")
    async def branches(request: Request, who: Caller = Depends(caller)):
        ledger = next(iter(who.tenant.ledgers))
        rows = [
            {
                "branchId": index,
                "number": number,
                "name": name,
                "isMainBranch": index == 1,
                "isActive": True,
                "ledger": {"id": ledger, "description": who.tenant.ledgers[ledger]},
            }
            for index, (number, name) in enumerate(who.tenant.branches.items(), start=1)
        ]
        return answer(request, rows)

    @app.get("/v1/ledger")
    async def ledgers(request: Request, who: Caller = Depends(caller)):
        rows = [
            {
                "internalId": index,
                "number": number,
                "description": description,
                "balanceType": "Actual",
                "currencyId": "EUR",
                "consolidationSource": False,
                "branchAccounting": True,
                "postInterCompany": False,
            }
            for index, (number, description) in enumerate(who.tenant.ledgers.items(), start=1)
        ]
        return answer(request, rows)

    # -- journal transactions v2 --

    @app.post("/v2/journaltransaction")
    async def create(request: Request, who: Caller = Depends(caller)):
        raw = await request.body()
        try:
            body = json.loads(raw, parse_float=Decimal, parse_constant=_not_json)
        except ValueError:
            raise VismaFault(400, "The request body is not valid JSON", "InvalidFormat") from None
        complete = world.complete_subaccounts_required(who.tenant)
        transaction, _ = validate_create(who.tenant, body, complete_subaccounts=complete)
        with world.lock:
            transaction.batch_number = f"{who.tenant.next_batch:06d}"
            transaction.created_at = world.clock()
            who.tenant.next_batch += 1
            who.tenant.batches[transaction.batch_number] = transaction
        lost = world.take_lost_create()
        if lost == "502":
            return JSONResponse({"Message": "Bad gateway (emulated: the batch was committed)."}, status_code=502)
        if lost == "drop":
            return DropConnectionResponse()
        if lost == "timeout":
            await asyncio.sleep(world.faults.lose_timeout)
        location = f"{str(request.base_url).rstrip('/')}/v2/journaltransaction/{transaction.batch_number}"
        # the spec's 201 carries an application/json object; the batch number itself is in the Location header
        return answer(request, {}, status=201, headers={"Location": location})

    def _batch(tenant: Tenant, number: str):
        tx = tenant.batches.get(number)
        if tx is None:
            raise VismaFault(404, f"Journal transaction {number} not found", "NotFound")
        return tx

    @app.get("/v2/journaltransaction/{journalTransactionNumber}")
    async def one(request: Request, journalTransactionNumber: str, who: Caller = Depends(caller)):
        with world.lock:
            tx = _batch(who.tenant, journalTransactionNumber)
            dto, tag = transaction_dto(who.tenant, tx), etag(tx)
        return answer(request, dto, headers={"ETag": tag})

    @app.put("/v2/journaltransaction/{journalTransactionNumber}")
    async def update(request: Request, journalTransactionNumber: str, who: Caller = Depends(caller)):
        """Edit a batch not released yet (the spec's PUT): 204 and the new ETag; 412 when `If-Match` names
        another version; a refusal changes nothing."""
        raw = await request.body()
        try:
            body = json.loads(raw, parse_float=Decimal, parse_constant=_not_json)
        except ValueError:
            raise VismaFault(400, "The request body is not valid JSON", "InvalidFormat") from None
        wanted = request.headers.get("if-match")
        complete = world.complete_subaccounts_required(who.tenant)
        with world.lock:
            tx = _batch(who.tenant, journalTransactionNumber)
            if wanted is not None and wanted.strip() not in {etag(tx), "*"}:
                raise VismaFault(
                    412,
                    f"Journal transaction {tx.batch_number} was changed since: If-Match {wanted}",
                    "PreconditionFailed",
                )
            edited = validate_update(who.tenant, tx, body, complete_subaccounts=complete)
            who.tenant.batches[tx.batch_number] = edited
            tag = etag(edited)
        headers = {**getattr(request.state, "rate_headers", {}), "ETag": tag}
        return Response(status_code=204, headers=headers)

    @app.get("/v2/journaltransaction")
    async def listing(
        request: Request,
        who: Caller = Depends(caller),
        periodId: str | None = None,
        lastModifiedDateTime: str | None = None,
        module: str | None = None,
        status: str | None = None,
        branch: str | None = None,
        pageNumber: int = 1,
        pageSize: int | None = None,
    ):
        if not periodId and not lastModifiedDateTime:
            raise VismaFault(400, "PeriodId or LastModifiedDateTime must be provided", "MandatoryField")
        if module and module != "GL":
            return answer(request, [])
        since = None
        if lastModifiedDateTime:
            try:
                since = dt.datetime.fromisoformat(lastModifiedDateTime.replace(" ", "T")).replace(tzinfo=dt.UTC)
            except ValueError:
                raise VismaFault(400, f"lastModifiedDateTime {lastModifiedDateTime!r} is not valid") from None
        with world.lock:
            batches = [
                tx
                for tx in who.tenant.batches.values()
                if (not periodId or tx.period_id == periodId)
                and (not status or tx.status == status)
                and (not branch or tx.branch == branch)
                and (since is None or tx.last_modified >= since)
                and world.listed(tx)
            ]
        size = min(pageSize or world.max_page_size, world.max_page_size)
        if pageNumber < 1 or size < 1:
            raise VismaFault(400, "pageNumber and pageSize must be positive", "InvalidRequest")
        page = list_page(who.tenant, batches, pageNumber, size, world.max_page_size, world.listing_pages)
        return answer(request, page)

    @app.post("/v2/journaltransaction/{journalTransactionNumber}/action/release")
    async def release(request: Request, journalTransactionNumber: str, who: Caller = Depends(caller)):
        with world.lock:
            tx = _batch(who.tenant, journalTransactionNumber)
            if tx.hold:
                raise VismaFault(400, f"Batch {tx.batch_number} is on hold and cannot be released", "BatchOnHold")
            if tx.status != "Balanced":
                raise VismaFault(400, f"Batch {tx.batch_number} has status {tx.status}", "InvalidStatus")
            tx.status = "Posted" if world.post_on_release else "Unposted"
            tx.last_modified = dt.datetime.now(dt.UTC)
        # ReleaseJournalTransactionActionResultDto (actionId, actionResult, errorInfo: strings); no error, no errorInfo
        return answer(request, {"actionId": str(uuid.uuid4()), "actionResult": "Done"})

    return app


def _after(period_id: str, greater_than: str | None) -> bool:
    """`greaterThanValue`: a year `YYYY` keeps the later years' periods, a `YYYYPP` the later periods."""
    if not greater_than:
        return True
    if len(greater_than) == 4 and greater_than.isdigit():
        return period_id[:4] > greater_than
    return period_id > greater_than


def period_dto(period_id: str, record: PeriodRecord) -> dict[str, Any]:
    """A `FinancialPeriodDto`: exactly the spec's properties, each `closedIn*` flag from its own workspace."""
    closed = record.closed_in
    return {
        "year": int(period_id[:4]),  # the financial year the period belongs to (its YYYY), not its calendar year
        "period": period_id,
        "startDate": f"{record.start.isoformat()}T00:00:00",
        "endDate": f"{record.end.isoformat()}T00:00:00",
        "description": record.description,
        "active": record.active,
        "closedInSupplierLedger": "supplier" in closed,
        "closedInCustomerLedger": "customer" in closed,
        "closedInInventoryManagement": "inventory" in closed,
        "closedInGeneralLedger": "general" in closed,
        "closedInCashManagement": "cash" in closed,
        "closedInFixedAssets": "fixed_assets" in closed,
    }


def _unauthorised(message: str) -> VismaFault:
    return VismaFault(401, message, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
