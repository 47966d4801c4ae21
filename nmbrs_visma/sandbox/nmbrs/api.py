"""The emulated Nmbrs REST endpoints the pipeline uses, answering in the shapes of nmbrs-openapi.yaml."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from nmbrs_visma.sandbox.nmbrs.errors import NmbrsApiError
from nmbrs_visma.sandbox.nmbrs.ledger import JOURNAL_KINDS, JournalKind
from nmbrs_visma.sandbox.nmbrs.world import DocumentTask, NmbrsWorld, RunRecord, display_period

PageNumber = Annotated[int, Query(alias="pageNumber", ge=1)]
PageSize = Annotated[int, Query(alias="pageSize", ge=1, le=100)]


def _page(request: Request, world: NmbrsWorld, items: list[dict[str, Any]], number: int, size: int) -> dict:
    """The spec's `{pagination, data}` envelope; the server caps pageSize at `world.max_page_size`."""
    size = min(size, world.max_page_size)
    total_pages = math.ceil(len(items) / size)

    def link(page: int) -> str:
        return str(request.url.include_query_params(pageNumber=page, pageSize=size))

    return {
        "pagination": {
            "pageNumber": number,
            "pageSize": size,
            "firstPage": link(1),
            "lastPage": link(max(total_pages, 1)),
            "totalPages": total_pages,
            "totalRecords": len(items),
            "nextPage": link(number + 1) if number < total_pages else None,
            "previousPage": link(number - 1) if 1 < number <= total_pages + 1 else None,
        },
        "data": items[(number - 1) * size : number * size],
    }


def _run_json(run: RunRecord) -> dict[str, Any]:
    return {
        "payrollRunId": run.run_id,
        "number": run.number,
        "description": run.description,
        "year": run.year,
        "periodStart": run.period_start,
        "periodEnd": run.period_end,
        "createdAt": run.created_at,
        "type": run.run_type,
        "locked": run.locked,
    }


def api_router(world: NmbrsWorld) -> APIRouter:
    def require(scope: str) -> Any:
        """Subscription key, then a live bearer token holding `scope` (either of the spec's alternatives)."""

        def check(request: Request) -> None:
            key = request.headers.get("x-subscription-key")
            if key != world.subscription_key:
                raise NmbrsApiError(
                    401,
                    40103,
                    "Invalid_Subscription_Key",
                    "Access denied: X-Subscription-Key is missing or invalid.",
                    "authenticationError",
                )
            header = request.headers.get("authorization", "")
            if not header.lower().startswith("bearer "):
                raise NmbrsApiError(
                    401, 40101, "Missing_Token", "Token is missing on the authentication", "authenticationError"
                )
            with world.lock:
                grant = world.access_tokens.get(header[7:].strip())
            if grant is None or grant.expires_at <= world.clock():
                raise NmbrsApiError(401, 40102, "Invalid_Token", "Token is invalid.", "authenticationError")
            accepted = {scope, scope.removesuffix(".read")}
            if not accepted & set(grant.scope.split()):
                raise NmbrsApiError(
                    403, 40302, "Insufficient_Scope", f"The token lacks the scope {scope}.", "authenticationError"
                )

        return Depends(check)

    router = APIRouter(prefix="/api")

    def company_or_404(company_id: uuid.UUID) -> str:
        key = str(company_id)
        if key not in world.companies:
            raise NmbrsApiError(404, 40404, "Invalid_Company", "Company not found. Check if the company Id is correct.")
        return key

    @router.get("/debtors", dependencies=[require("company.info.read")])
    def debtors(request: Request, page_number: PageNumber = 1, page_size: PageSize = 20) -> dict:
        items = [{"debtorId": d.debtor_id, "number": d.number, "name": d.name} for d in world.debtors.values()]
        return _page(request, world, items, page_number, page_size)

    @router.get("/companies", dependencies=[require("company.info.read")])
    def all_companies(request: Request, page_number: PageNumber = 1, page_size: PageSize = 20) -> dict:
        if len(world.debtors) > 1:
            raise NmbrsApiError(
                403,
                40303,
                "Unauthorized_AccessData",
                "The consent covers more than one debtor: list companies per debtor "
                "with /api/debtors/{debtorId}/companies.",
            )
        return debtor_companies(request, uuid.UUID(next(iter(world.debtors))), page_number, page_size)

    @router.get("/debtors/{debtorId}/companies", dependencies=[require("company.info.read")])
    def debtor_companies(
        request: Request,
        debtor_id: Annotated[uuid.UUID, Path(alias="debtorId")],
        page_number: PageNumber = 1,
        page_size: PageSize = 20,
    ) -> dict:
        key = str(debtor_id)
        if key not in world.debtors:
            raise NmbrsApiError(404, 40401, "Not_Found", "The requested resource could not be found.")
        items = [
            {"companyId": c.company_id, "number": str(c.number), "name": c.name, "debtorId": key}
            for c in world.companies.values()
            if world.debtor_of(c.company_id) == key
        ]
        return _page(request, world, items, page_number, page_size)

    @router.get("/companies/{companyId}/period", dependencies=[require("company.info.read")])
    def current_period(company_id: Annotated[uuid.UUID, Path(alias="companyId")]) -> dict:
        """`CompanyPeriodResponse`: the company's own period type, its current period in that numbering."""
        key = company_or_404(company_id)
        year, period = world.current_period_of(key)
        period_type = world.period_type_of(key)
        item = {
            "period": {"year": year, "period": period},
            "periodType": period_type.value,
            "displayPeriod": display_period(year, period, period_type),
        }
        return {"data": [item]}

    @router.get("/companies/{companyId}/runs", dependencies=[require("company.payrollsettings.read")])
    def runs(
        request: Request,
        company_id: Annotated[uuid.UUID, Path(alias="companyId")],
        year: Annotated[int | None, Query(ge=1900, le=2999)] = None,
        page_number: PageNumber = 1,
        page_size: PageSize = 20,
    ) -> dict:
        key = company_or_404(company_id)
        wanted = year or world.current_period_of(key)[0]
        items = [_run_json(run) for run in world.runs.get(key, []) if run.year == wanted]
        return _page(request, world, items, page_number, page_size)

    def start_journal(kind: JournalKind, company_id: uuid.UUID, run_id: uuid.UUID, year: int) -> dict:
        key = company_or_404(company_id)
        run = world.run(key, str(run_id))
        if run is None or run.year != year:
            raise NmbrsApiError(404, 40401, "Not_Found", f"Payroll run not found in {year} for this company.")
        task = DocumentTask(str(uuid.uuid4()), world.journal_document(run, kind), world.document_polls)
        with world.lock:
            world.tasks[task.task_id] = task
        return {"taskId": task.task_id}

    def journal_endpoint(kind: JournalKind) -> Any:
        def endpoint(
            company_id: Annotated[uuid.UUID, Path(alias="companyId")],
            run_id: Annotated[uuid.UUID, Path(alias="payrollRunId")],
            year: Annotated[int, Query(ge=1900, le=2999)],
        ) -> dict:
            return start_journal(kind, company_id, run_id, year)

        endpoint.__name__ = f"start_{kind}"
        return endpoint

    for kind in JOURNAL_KINDS:
        router.add_api_route(
            f"/companies/{{companyId}}/runs/{{payrollRunId}}/{kind}",
            journal_endpoint(kind),
            methods=["GET"],
            dependencies=[require("company.document.read")],
        )

    @router.get("/documents/{taskId}", dependencies=[require("document.read")])
    def document(task_id: Annotated[uuid.UUID, Path(alias="taskId")]) -> Response:
        with world.lock:
            task = world.tasks.get(str(task_id))
            if task is None:
                raise NmbrsApiError(404, 40401, "Not_Found", "The requested resource could not be found.")
            if world.never_finish or task.polls_left > 0:
                task.polls_left -= 1
                return JSONResponse("Document is being processed", status_code=202)
        content, size = task.content, world.document_chunk
        if len(content) <= size:
            world.count_document_chunks(1)
            return Response(content, media_type="application/octet-stream")

        def chunks() -> Iterator[bytes]:  # a large document streams, so a test sees where the reader stopped
            for start in range(0, len(content), size):
                world.count_document_chunks(1)
                yield content[start : start + size]

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    return router
