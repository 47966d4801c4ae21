"""Nmbrs REST client: the calls the pipeline needs, from debtors down to a payroll run's journal XML, and its auth.

Why this shape: Nmbrs hands out journals as asynchronous documents (start a task, poll until it is ready),
refresh tokens that work once and lapse after 30 days unused, and a subscription key on every call. The auth
(`NmbrsAuth`, the shared OAuth 2.0 design of clients/oauth.py) owns the token; the client owns paging, polling
and reading the spec's answers strictly. Transport concerns (429 `Retry-After`, retries of safe calls, 5xx)
live in clients/http.py; every failure is one of the shared errors of clients/errors.py.

How to use it::

    auth = NmbrsAuth(client_id=..., client_secret=SecretStr(...), redirect_uri=..., token=saved, on_token=save)
    request = auth.authorization_request()        # only when not yet connected: send the user to request.url
    auth.complete_authorization(callback_url, request)
    with NmbrsClient(auth=auth, subscription_key=SecretStr(...)) as nmbrs:
        for debtor in nmbrs.debtors():
            for company in nmbrs.companies(debtor.debtor_id):
                current = nmbrs.company_period(company.company_id)   # its period type: month, 4-weeks, 1-week
                for run in nmbrs.runs(company, current.year, period_type=current.period_type):
                    lines = nmbrs.journals(run, kind="journalscostcenterunit")
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import httpx2
import pandas as pd
from pydantic import BaseModel, ConfigDict, SecretStr

from nmbrs_visma.clients.errors import DocumentTimeout, ResponseError
from nmbrs_visma.clients.http import NMBRS_ERRORS, ApiClient
from nmbrs_visma.clients.oauth import OAuth2Auth
from nmbrs_visma.clients.secrets import Scrubber
from nmbrs_visma.journal_file import MAX_FILE_BYTES
from nmbrs_visma.journals.calendar import periods_in_year
from nmbrs_visma.journals.models import PayrollRun, PeriodType
from nmbrs_visma.journals.nmbrs_xml import parse_journal_xml

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.nmbrsapp.com"
DEFAULT_AUTHORIZE_URL = "https://identityservice.nmbrs.com/connect/authorize"
DEFAULT_TOKEN_URL = "https://identityservice.nmbrs.com/connect/token"
DEFAULT_SCOPES = (
    "company.info.read",
    "company.payrollsettings.read",
    "company.document.read",
    "document.read",
    "offline_access",
)
REFRESH_TOKEN_LIFETIME = dt.timedelta(days=30)  # Nmbrs: a refresh token dies after 30 days unused

JournalKind = Literal["journals", "journalscostcenter", "journalscostcenterunit"]
JOURNAL_KINDS: tuple[JournalKind, ...] = ("journals", "journalscostcenter", "journalscostcenterunit")
_MAX_PAGES = 10_000


# --- OAuth ----------------------------------------------------------------------------------------------------


class NmbrsAuth(OAuth2Auth):
    """Bearer tokens for Nmbrs (clients/oauth.py): authorization code + PKCE, `offline_access`, rotating refresh
    tokens that lapse after `refresh_token_lifetime` unused (30 days, unless the server says otherwise)."""

    identity = "Nmbrs identity"
    system = "Nmbrs"
    default_token_url = DEFAULT_TOKEN_URL
    default_authorize_url = DEFAULT_AUTHORIZE_URL
    default_scopes = DEFAULT_SCOPES
    default_refresh_token_lifetime = REFRESH_TOKEN_LIFETIME

    def _token_refused(self, response: httpx2.Response) -> bool:
        """Whether a 401 is about the bearer token (the spec's Missing_Token / Invalid_Token), not the subscription
        key: renewing for a key 401 would only spend a refresh token. Unknown shapes: a body naming the key is
        the key's fault."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and (body.get("code") in (40101, 40102) or body.get("title") in _TOKEN_TITLES):
            return True
        return "subscription" not in response.text.lower()


_TOKEN_TITLES = ("Missing_Token", "Invalid_Token")


# --- resources ------------------------------------------------------------------------------------------------


class _Resource(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NmbrsDebtor(_Resource):
    debtor_id: str
    number: str
    name: str = ""


class NmbrsCompany(_Resource):
    company_id: str
    number: int
    name: str = ""
    debtor_id: str = ""


class CompanyPeriod(_Resource):
    """A company's current payroll period (`CompanyPeriod` in the spec), numbered in its own period type."""

    company_id: str
    period_type: PeriodType
    year: int
    period: int
    display_period: str = ""


def journal_kind(*, cost_center: bool, cost_unit: bool) -> JournalKind:
    """The journal export that carries the dimensions a mapping books (cost unit implies cost center)."""
    if cost_unit:
        return "journalscostcenterunit"
    return "journalscostcenter" if cost_center else "journals"


class NmbrsClient(ApiClient):
    """The Nmbrs calls of the pipeline, synchronous; safe to share across the Prefect layer's thread pool.

    `http`: the shared client settings of `ApiClient` (`base_url`, `timeout`, `policy`, `sleep`, `clock`, ...)."""

    default_base_url = DEFAULT_BASE_URL
    style = NMBRS_ERRORS

    def __init__(
        self,
        *,
        auth: NmbrsAuth,
        subscription_key: SecretStr,
        page_size: int = 100,
        poll_interval: float = 1.0,
        max_poll_interval: float = 5.0,
        max_document_bytes: int = MAX_FILE_BYTES,
        **http: Any,
    ) -> None:
        if not 1 <= page_size <= 100:
            raise ValueError(f"page_size must be 1..100 (the Nmbrs maximum), not {page_size}")
        self.auth, self._key, self._page_size = auth, subscription_key, page_size
        self._max_document_bytes = max_document_bytes
        self._poll_interval, self._max_poll_interval = poll_interval, max_poll_interval  # seconds, growing 1.5x
        super().__init__(auth=auth, scrubber=Scrubber(subscription_key, auth.scrubber), **http)

    def __repr__(self) -> str:
        return f"NmbrsClient(base_url={str(self._http.base_url)!r})"

    # -- plumbing --

    def _get(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        accept: str = "application/json",
        stream: bool = False,
    ) -> Any:
        headers = {"X-Subscription-Key": self._key.get_secret_value(), "Accept": accept}
        return self._sender.request("GET", path, params=params, headers=headers, stream=stream)

    def _json(self, path: str, params: Mapping[str, Any] | None, what: str) -> Any:
        response = self._get(path, params)
        try:
            return response.json()
        except ValueError:
            raise self._unexpected(path, f"{what}: the answer is not JSON") from None

    @staticmethod
    def _unexpected(path: str, message: str) -> ResponseError:
        return ResponseError(None, None, message, api="Nmbrs", method="GET", path=path)

    def _pages(self, path: str, what: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a paged listing (`{pagination, data}`), page after page until `totalPages`."""
        seen = 0
        total_records: int | None = None
        for number in range(1, _MAX_PAGES + 1):
            body = self._json(path, {**(params or {}), "pageNumber": number, "pageSize": self._page_size}, what)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise self._unexpected(path, f"{what}: page {number} has no data list")
            for item in data:
                if not isinstance(item, dict):
                    raise self._unexpected(path, f"{what}: page {number} holds a non-object item")
                seen += 1
                yield item
            pagination = body.get("pagination") or {}
            total_records = pagination.get("totalRecords", total_records)
            total_pages = pagination.get("totalPages")
            last = number >= total_pages if isinstance(total_pages, int) else not pagination.get("nextPage")
            if last or not data:
                break
        else:
            raise self._unexpected(path, f"{what}: more than {_MAX_PAGES} pages")
        if isinstance(total_records, int) and seen != total_records:
            raise self._unexpected(
                path, f"{what}: read {seen} items but Nmbrs announced {total_records} (the list changed while paging?)"
            )

    @staticmethod
    def _field(item: Mapping[str, Any], name: str, what: str, path: str) -> Any:
        value = item.get(name)
        if value is None or value == "":
            raise NmbrsClient._unexpected(path, f"{what}: field {name} is missing")
        return value

    # -- calls --

    def debtors(self) -> list[NmbrsDebtor]:
        """The debtors the consent covers."""
        path = "/api/debtors"
        return [
            NmbrsDebtor(
                debtor_id=str(self._field(item, "debtorId", "a debtor", path)),
                number=str(item.get("number") or ""),
                name=str(item.get("name") or ""),
            )
            for item in self._pages(path, "debtors")
        ]

    def companies(self, debtor_id: str) -> list[NmbrsCompany]:
        """The companies of one debtor (the global /api/companies refuses a consent over several debtors)."""
        path = f"/api/debtors/{_uuid(debtor_id, 'debtor id')}/companies"
        companies = []
        for item in self._pages(path, f"companies of debtor {debtor_id}"):
            company_id = str(self._field(item, "companyId", f"a company of debtor {debtor_id}", path))
            raw_number = str(self._field(item, "number", f"company {company_id}", path)).strip()
            if not raw_number.isdigit():
                raise self._unexpected(path, f"company {company_id}: number {raw_number!r} is not a whole number")
            companies.append(
                NmbrsCompany(
                    company_id=company_id,
                    number=int(raw_number),
                    name=str(item.get("name") or ""),
                    debtor_id=str(item.get("debtorId") or debtor_id),
                )
            )
        return companies

    def company_period(self, company_id: str) -> CompanyPeriod:
        """The company's period type and the period it is working on now, in that type's numbering.

        Strict: a `periodType` outside the spec's enum, or a period the type's year does not have, is an
        `ResponseError` naming the company and the value (a guessed type would number every run wrong)."""
        path = f"/api/companies/{_uuid(company_id, 'company id')}/period"
        body = self._json(path, None, f"current period of company {company_id}")
        data = body.get("data") if isinstance(body, dict) else None
        item = data[0] if isinstance(data, list) and data else data
        period = item.get("period") if isinstance(item, dict) else None
        if (
            not isinstance(item, dict)
            or not isinstance(period, dict)
            or not _is_int(period.get("year"))
            or not _is_int(period.get("period"))
        ):
            raise self._unexpected(path, f"company {company_id}: the answer holds no period {{year, period}}")
        period_type = _period_type(item.get("periodType"))
        if period_type is None:
            raise self._unexpected(
                path,
                f"company {company_id}: periodType {item.get('periodType')!r} is not one of "
                f"{', '.join(t.value for t in PeriodType)}",
            )
        year, number = period["year"], period["period"]
        try:
            _check_period(number, year, period_type)
        except ValueError as exc:
            raise self._unexpected(path, f"company {company_id}: current {exc}") from None
        display = item.get("displayPeriod")
        return CompanyPeriod(
            company_id=company_id,
            period_type=period_type,
            year=year,
            period=number,
            display_period=display if isinstance(display, str) else "",
        )

    def current_period(self, company_id: str) -> tuple[int, int]:
        """(year, period) the company is working on now, in its own period type (see `company_period`)."""
        current = self.company_period(company_id)
        return current.year, current.period

    def runs(self, company: NmbrsCompany, year: int, *, period_type: PeriodType = PeriodType.MONTH) -> list[PayrollRun]:
        """Every payroll run of the company in `year` (all pages), by run number.

        `period_type` is the company's (`company_period`): it numbers the runs' periods, is set on every run,
        and bounds them (1..12, 1..13, 1..52/53); a period outside it, or a run ending before it starts, is an
        `ResponseError`."""
        period_type = PeriodType(period_type)
        path = f"/api/companies/{_uuid(company.company_id, 'company id')}/runs"
        what = f"runs of company {company.number} in {year}"
        runs = []
        for item in self._pages(path, what, {"year": year}):
            run_id = str(self._field(item, "payrollRunId", what, path))
            label = f"company {company.number}, run {run_id}"
            try:
                run_year = int(item.get("year") or year)
                start = _period(self._field(item, "periodStart", label, path), run_year, period_type)
                end = _period(self._field(item, "periodEnd", label, path), run_year, period_type)
                if start > end:
                    raise ValueError(f"periodStart {start} lies after periodEnd {end}")
                runs.append(
                    PayrollRun(
                        company_id=company.company_id,
                        company_number=company.number,
                        company_name=company.name,
                        run_id=run_id,
                        run_number=int(self._field(item, "number", label, path)),
                        year=run_year,
                        period_start=start,
                        period_end=end,
                        description=str(item.get("description") or ""),
                        locked=item.get("locked") is True,
                        period_type=period_type,
                    )
                )
            except (ValueError, TypeError) as exc:
                raise self._unexpected(path, f"{label}: {exc}") from None
        return sorted(runs, key=lambda run: run.run_number)

    def start_journal_task(self, run: PayrollRun, *, kind: JournalKind = "journals") -> str:
        """Ask Nmbrs to build the run's journal document; returns the document task id."""
        if kind not in JOURNAL_KINDS:
            raise ValueError(f"journal kind must be one of {', '.join(JOURNAL_KINDS)}, not {kind!r}")
        path = f"/api/companies/{_uuid(run.company_id, 'company id')}/runs/{_uuid(run.run_id, 'run id')}/{kind}"
        body = self._json(path, {"year": run.year}, f"{kind} of {_label(run)}")
        task_id = body.get("taskId") if isinstance(body, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise self._unexpected(path, f"{_label(run)}: the {kind} answer holds no taskId")
        return _uuid(task_id, "taskId")

    def document(self, task_id: str, *, what: str | None = None) -> bytes | None:
        """The document of a task, or None while Nmbrs is still processing it (202).

        Streamed, and refused once it grows past `max_document_bytes` (the cap journal files have): an
        `ResponseError` [document_too_large] naming `what` (the run) and the task. At most the cap (plus
        one network chunk) is ever held, so a runaway document cannot exhaust a worker's memory."""
        path = f"/api/documents/{_uuid(task_id, 'task id')}"
        what = what or f"document task {task_id}"
        accept = "application/octet-stream, application/xml, application/json"
        response = self._get(path, accept=accept, stream=True)
        with contextlib.closing(response):
            if response.status_code == 202:
                return None
            if response.status_code != 200:
                raise self._unexpected(path, f"{what}: HTTP {response.status_code} without a document")
            cap = self._max_document_bytes
            announced = response.headers.get("Content-Length", "")
            if announced.isdigit() and int(announced) > cap:
                raise self._too_large(path, what, task_id, f"announced as {int(announced)} bytes")
            content = bytearray()
            for chunk in response.iter_bytes():
                if len(content) + len(chunk) > cap:
                    raise self._too_large(path, what, task_id, f"still coming after {len(content)} bytes")
                content.extend(chunk)
        if not content:
            raise self._unexpected(path, f"{what}: HTTP 200 without a document")
        return bytes(content)

    def _too_large(self, path: str, what: str, task_id: str, seen: str) -> ResponseError:
        return ResponseError(
            None,
            "document_too_large",
            f"{what}: the journal document (task {task_id}) is larger than the {self._max_document_bytes} bytes "
            f"allowed ({seen}); refused while downloading, nothing of it is used",
            api="Nmbrs",
            method="GET",
            path=path,
        )

    def journal_xml(self, run: PayrollRun, *, kind: JournalKind = "journals", max_wait: float = 60.0) -> bytes:
        """Start the journal task and poll its document (202 while processing) for at most `max_wait` seconds."""
        task_id = self.start_journal_task(run, kind=kind)
        deadline = self._clock() + max_wait
        interval = self._poll_interval
        polls = 0
        while True:
            polls += 1
            content = self.document(task_id, what=f"the {kind} of {_label(run)}")
            if content is not None:
                logger.info("Nmbrs %s of %s ready after %d poll(s)", kind, _label(run), polls)
                return content
            if self._clock() + interval > deadline:
                raise DocumentTimeout(
                    None,
                    "document_timeout",
                    f"the {kind} document of {_label(run)} (task {task_id}) was still processing after "
                    f"{max_wait:g}s and {polls} poll(s); try again later or allow a longer wait",
                    api="Nmbrs",
                    method="GET",
                    path=f"/api/documents/{task_id}",
                )
            self._sleep(interval)
            interval = min(interval * 1.5, self._max_poll_interval)

    def journals(self, run: PayrollRun, *, kind: JournalKind = "journals", max_wait: float = 60.0) -> pd.DataFrame:
        """The run's journal as the core's line frame (one row per journal line, amounts in cents)."""
        data = self.journal_xml(run, kind=kind, max_wait=max_wait)
        return parse_journal_xml(data, source=f"Nmbrs {kind} of {_label(run)}")


def _label(run: PayrollRun) -> str:
    return f"company {run.company_number} run {run.run_number} of {run.year} ({run.run_id})"


def _uuid(value: str, what: str) -> str:
    """Ids go into URL paths: accept only a uuid, so nothing else can be spliced into a path."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueError(f"{what} {value!r} is not a uuid") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _period_type(value: Any) -> PeriodType | None:
    """`periodType` as the spec's enum (`month`, `4-weeks`, `1-week`), or None for anything else."""
    try:
        return PeriodType(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _check_period(number: int, year: int, period_type: PeriodType) -> None:
    """`ValueError` unless payroll period `number` exists in `year` for `period_type`."""
    count = periods_in_year(year, period_type)
    if not 1 <= number <= count:
        raise ValueError(f"period {number} of {year} does not exist for a {period_type.value} company (1..{count})")


def _period(value: Any, year: int, period_type: PeriodType = PeriodType.MONTH) -> int:
    """periodStart/periodEnd in the company's numbering, checked against the year's periods of its type.

    The spec types them integer with a stray date-time format; a date-time is read as its month for a monthly
    company only: a four-weekly or weekly period cannot be told from a month, so there it is refused."""
    if isinstance(value, bool):
        raise ValueError(f"period {value!r} is not a number")
    if isinstance(value, int):
        number = value
    elif (text := str(value).strip()).isdigit():
        number = int(text)
    elif period_type is not PeriodType.MONTH:
        raise ValueError(f"period {value!r} is not a number of a {period_type.value} period")
    else:
        try:
            number = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).month
        except ValueError:
            raise ValueError(f"period {value!r} is neither a number nor a date-time") from None
    _check_period(number, year, period_type)
    return number
