"""Nmbrs REST client: OAuth 2.0 (authorization code + PKCE, rotating refresh tokens) and the calls the pipeline
needs, from debtors down to a payroll run's journal XML.

Why this shape: Nmbrs hands out journals as asynchronous documents (start a task, poll until it is ready),
refresh tokens that work once and die after 30 days unused, and a subscription key on every call. The auth
object owns the token and hands every new pair to `on_token` at once (the old refresh token is dead by then);
the client owns paging, polling and turning the spec's error bodies into typed `NmbrsError`s. Transport
concerns (429 `Retry-After`, retries of safe calls, 5xx) live in `clients/http.py`.

How to use it::

    auth = NmbrsAuth(client_id=..., client_secret=SecretStr(...), redirect_uri=..., token=saved, on_token=save)
    request = auth.begin_authorization()          # only when not yet authorised: send the user to request.url
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
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx2
import pandas as pd
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client, OAuthError
from pydantic import BaseModel, ConfigDict, SecretStr

from nmbrs_visma.clients.http import (
    NMBRS_ERRORS,
    ApiClient,
    ApiError,
    AuthError,
    Conflict,
    NotFound,
    RateLimited,
    RetryPolicy,
    Scrubber,
    Sender,
    ServerError,
    TransportError,
    ValidationError,
    basic_credentials,
    tls_context,
)
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


# --- errors ---------------------------------------------------------------------------------------------------


class NmbrsError(ApiError):
    """Any failure talking to Nmbrs; the text names the call and never holds a token or key."""


class NmbrsAuthError(NmbrsError, AuthError):
    """Not authorised: no token, refresh token expired or refused, wrong subscription key, missing scope."""


class NmbrsNotFound(NmbrsError, NotFound):
    """404: unknown debtor, company, run or document task."""


class NmbrsValidationError(NmbrsError, ValidationError):
    """400: Nmbrs refused a parameter (`invalid-params` named in the message)."""


class NmbrsConflict(NmbrsError, Conflict):
    """409."""


class NmbrsRateLimited(NmbrsError, RateLimited):
    """429 that could not be waited out."""


class NmbrsServerError(NmbrsError, ServerError):
    """5xx after the retries a safe call gets."""


class NmbrsTransportError(NmbrsError, TransportError):
    """No usable answer from Nmbrs (connection refused or dropped, timeout)."""


class NmbrsResponseError(NmbrsError):
    """Nmbrs answered 2xx with something that is not what the spec promises."""


class NmbrsDocumentTimeout(NmbrsError):
    """A journal document task was still processing when the bounded wait ran out."""


_TRANSLATED: dict[type[ApiError], type[NmbrsError]] = {
    AuthError: NmbrsAuthError,
    NotFound: NmbrsNotFound,
    ValidationError: NmbrsValidationError,
    Conflict: NmbrsConflict,
    RateLimited: NmbrsRateLimited,
    ServerError: NmbrsServerError,
    TransportError: NmbrsTransportError,
}


def _translate(error: ApiError) -> NmbrsError:
    """The shared plumbing's error as its Nmbrs subclass (same status, code, message, request id)."""
    if isinstance(error, NmbrsError):
        return error
    cls = _TRANSLATED.get(type(error), NmbrsError)
    kwargs: dict[str, Any] = {"api": error.api, "method": error.method, "path": error.path}
    if isinstance(error, RateLimited):
        kwargs["retry_after"] = error.retry_after
    return cls(error.status, error.code, error.message, error.request_id, **kwargs)


def _auth_error(message: str) -> NmbrsAuthError:
    return NmbrsAuthError(None, None, message, api="Nmbrs identity")


# --- OAuth ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthorizationRequest:
    """One authorise attempt: send the user to `url`, keep `state` and the PKCE `code_verifier` until the callback."""

    url: str
    state: str
    code_verifier: SecretStr = field(repr=False)


class NmbrsAuth(httpx2.Auth):
    """Bearer tokens for Nmbrs via authlib: authorization code + PKCE (S256), `offline_access`, rotating refresh.

    `token` is a previously saved token dict (or None before the first authorisation). Every new token pair is
    passed to `on_token` at once: Nmbrs refresh tokens work once, so a pair that is not saved is a lost
    account. `refresh_token_expires_at` / `refresh_token_days_left` say how long the account stays usable
    without a refresh (30 days unused by default). One refresh at a time per auth object; across processes
    the caller guards the refresh (a Prefect concurrency limit per account).
    """

    requires_response_body = False  # only a 401's body is read (see sync_auth_flow): documents stream

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: SecretStr,
        redirect_uri: str,
        token: Mapping[str, Any] | None = None,
        on_token: Callable[[dict[str, Any]], None] | None = None,
        authorize_url: str = DEFAULT_AUTHORIZE_URL,
        token_url: str = DEFAULT_TOKEN_URL,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        refresh_token_lifetime: dt.timedelta = REFRESH_TOKEN_LIFETIME,
        leeway: float = 60.0,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.authorize_url = authorize_url
        self.token_url = token_url
        self.refresh_token_lifetime = refresh_token_lifetime
        self._on_token = on_token
        self._leeway = leeway
        self._clock = clock
        self._lock = threading.RLock()
        self._token: dict[str, Any] | None = dict(token) if token else None
        self.scrubber = Scrubber(client_secret, *basic_credentials(client_id, client_secret), self._current_tokens)
        self._oauth = OAuth2Client(
            client_id=client_id,
            client_secret=client_secret.get_secret_value(),
            scope=" ".join(scopes),
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            token_endpoint=token_url,
            timeout=timeout,
            verify=tls_context(),
        )

    def __repr__(self) -> str:
        days = self.refresh_token_days_left
        left = f"{days:.1f}" if days is not None else "None"
        return f"NmbrsAuth(client_id={self.client_id!r}, authorised={self.authorised}, refresh_token_days_left={left})"

    # -- authorisation --

    def begin_authorization(self, *, state: str | None = None, prompt: str | None = "login") -> AuthorizationRequest:
        """The URL to send the user to (PKCE S256; `prompt=login` forces a fresh login, no 'log out first')."""
        verifier = generate_token(64)
        extra = {"prompt": prompt} if prompt else {}
        url, state = self._oauth.create_authorization_url(
            self.authorize_url, state=state, code_verifier=verifier, **extra
        )
        return AuthorizationRequest(url=url, state=state, code_verifier=SecretStr(verifier))

    def complete_authorization(self, callback_url: str, request: AuthorizationRequest) -> None:
        """Exchange the code in the redirect back (`callback_url`) for the first token pair."""
        params = httpx2.URL(callback_url).params
        if "error" in params:
            said = f"{params.get('error')}: {params.get('error_description', '')}"
            said = self.scrubber(said, request.code_verifier.get_secret_value(), params.get("code"))
            raise _auth_error(f"the Nmbrs authorisation was refused: {said}")
        if params.get("state") != request.state:
            raise _auth_error("the authorisation callback's state does not match the request (possible CSRF)")
        if "code" not in params:
            raise _auth_error("the authorisation callback carries no code")
        with self._lock:
            token = self._token_call(
                lambda: self._oauth.fetch_token(
                    self.token_url,
                    authorization_response=callback_url,
                    state=request.state,
                    code_verifier=request.code_verifier.get_secret_value(),
                ),
                "exchanging the authorisation code",
            )
            self._store(token)

    def _current_tokens(self) -> list[str | None]:
        token = self._token or {}
        return [token.get("access_token"), token.get("refresh_token")]

    # -- tokens --

    @property
    def authorised(self) -> bool:
        return bool(self._token and self._token.get("access_token"))

    @property
    def refresh_token_expires_at(self) -> dt.datetime | None:
        token = self._token
        if not token or not token.get("refresh_token") or token.get("refresh_expires_at") is None:
            return None
        return dt.datetime.fromtimestamp(float(token["refresh_expires_at"]), tz=dt.UTC)  # float ok

    @property
    def refresh_token_days_left(self) -> float | None:
        expires_at = self.refresh_token_expires_at
        if expires_at is None:
            return None
        return (expires_at.timestamp() - self._clock()) / 86_400

    def access_token(self) -> str:
        """A live access token, refreshed first when it expires within the leeway."""
        with self._lock:
            token = self._token
            if not token or not token.get("access_token"):
                raise _auth_error("the Nmbrs account is not authorised yet: run the connect step")
            expires_at = token.get("expires_at")
            if expires_at is not None and float(expires_at) - self._leeway <= self._clock():  # float ok
                self.refresh()
                token = self._token
            assert token is not None
            return str(token["access_token"])

    def refresh(self, *, unless_changed_from: str | None = None) -> None:
        """Trade the refresh token for a new pair (rotation). With `unless_changed_from`, skip it when another
        thread already replaced that access token."""
        with self._lock:
            token = self._token or {}
            if unless_changed_from is not None and token.get("access_token") != unless_changed_from:
                return
            refresh_token = token.get("refresh_token")
            if not refresh_token:
                raise _auth_error("the Nmbrs account holds no refresh token: re-authorise it")
            days_left = self.refresh_token_days_left
            if days_left is not None and days_left <= 0:
                raise _auth_error(
                    f"the Nmbrs refresh token expired on {self.refresh_token_expires_at:%Y-%m-%d %H:%M} UTC "
                    "(30 days unused): re-authorise the account"
                )
            new = self._token_call(
                lambda: self._oauth.refresh_token(self.token_url, refresh_token=refresh_token),
                "refreshing the access token",
            )
            self._store(new)

    def _token_call(self, call: Callable[[], Any], doing: str) -> dict[str, Any]:
        """Run one token request; a failure is raised outside the `except`, so that not even the exception's
        context keeps authlib's error (whose text is the identity server's, secrets and all)."""
        failure: NmbrsError
        try:
            return dict(call())
        except OAuthError as exc:
            hint = ""
            if exc.error == "invalid_grant" and doing.startswith("refresh"):
                hint = " (a refresh token works once: another process may have used it; re-authorise)"
            said = self.scrubber(f"{exc.error}: {exc.description or ''}")
            failure = _auth_error(f"Nmbrs refused {doing}: {said}{hint}")
        except httpx2.HTTPStatusError as exc:
            failure = _auth_error(f"Nmbrs identity server failed {doing}: HTTP {exc.response.status_code}")
        except httpx2.TransportError as exc:
            failure = NmbrsTransportError(
                None, type(exc).__name__, f"no answer from the Nmbrs identity server {doing}", api="Nmbrs identity"
            )
        except ValueError as exc:  # authlib: mismatching state, malformed answer
            failure = _auth_error(f"Nmbrs identity answer unusable while {doing}: {type(exc).__name__}")
        raise failure

    def _store(self, token: dict[str, Any]) -> None:
        """Keep the new pair and hand it on at once; every new pair restarts the refresh token's lifetime."""
        now = self._clock()
        if token.get("expires_in") is not None:  # our clock, not authlib's, so tests can move time
            token["expires_at"] = now + float(token["expires_in"])  # float ok: seconds, not money
        if token.get("refresh_token"):
            lifetime = token.get("refresh_token_expires_in")
            default = self.refresh_token_lifetime.total_seconds()
            seconds = float(lifetime) if lifetime is not None else default  # float ok: seconds, not money
            token["refresh_expires_at"] = now + seconds
        self._token = token
        logger.info("Nmbrs token pair renewed; refresh token valid %.1f more days", self.refresh_token_days_left or 0)
        if self._on_token is not None:
            self._on_token(dict(token))

    # -- httpx2.Auth --

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        """Bearer header; on a 401 about the token refresh once (if nobody did already) and send again. A 401
        about the subscription key is not the token's fault: rotating then would only spend a refresh token."""
        access = self.access_token()
        request.headers["Authorization"] = f"Bearer {access}"
        response = yield request
        if response.status_code != 401 or not (self._token and self._token.get("refresh_token")):
            return
        if _token_refused(response):
            self.refresh(unless_changed_from=access)
            request.headers["Authorization"] = f"Bearer {self.access_token()}"
            yield request

    def sync_auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        """httpx2's flow, reading the body of a 401 only (to tell a token 401 from a subscription-key 401):
        reading every answer, as `requires_response_body` does, would load a streamed document whole."""
        flow = self.auth_flow(request)
        request = next(flow)
        while True:
            response = yield request
            if response.status_code == 401:
                response.read()
            try:
                request = flow.send(response)
            except StopIteration:
                break

    def close(self) -> None:
        self._oauth.close()


def _token_refused(response: httpx2.Response) -> bool:
    """Whether a 401 is about the bearer token (the spec's Missing_Token / Invalid_Token), not the subscription
    key: rotating for a key 401 would only spend a refresh token. Unknown shapes: a body naming the key is
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
    """The Nmbrs calls of the pipeline, synchronous; safe to share across the Prefect layer's thread pool."""

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        auth: NmbrsAuth,
        subscription_key: SecretStr,
        timeout: float = 30.0,
        page_size: int = 100,
        poll_interval: float = 1.0,
        max_poll_interval: float = 5.0,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx2.BaseTransport | None = None,
        max_document_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        if not 1 <= page_size <= 100:
            raise ValueError(f"page_size must be 1..100 (the Nmbrs maximum), not {page_size}")
        self.auth = auth
        self._key = subscription_key
        self._page_size = page_size
        self._max_document_bytes = max_document_bytes
        self._poll_interval = poll_interval
        self._max_poll_interval = max_poll_interval
        self._sleep = sleep
        self._clock = clock
        self._http = httpx2.Client(
            base_url=base_url.rstrip("/"),
            auth=auth,
            timeout=timeout,
            transport=transport,
            verify=tls_context(),
            follow_redirects=False,
        )
        self.scrubber = Scrubber(subscription_key, auth.scrubber)
        self._sender = Sender(self._http, NMBRS_ERRORS, policy=policy, sleep=sleep, clock=clock, scrubber=self.scrubber)

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
        try:
            return self._sender.request("GET", path, params=params, headers=headers, stream=stream)
        except ApiError as exc:
            raise _translate(exc) from None

    def _json(self, path: str, params: Mapping[str, Any] | None, what: str) -> Any:
        response = self._get(path, params)
        try:
            return response.json()
        except ValueError:
            raise self._unexpected(path, f"{what}: the answer is not JSON") from None

    @staticmethod
    def _unexpected(path: str, message: str) -> NmbrsResponseError:
        return NmbrsResponseError(None, None, message, api="Nmbrs", method="GET", path=path)

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
        `NmbrsResponseError` naming the company and the value (a guessed type would number every run wrong)."""
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
        `NmbrsResponseError`."""
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
        `NmbrsResponseError` [document_too_large] naming `what` (the run) and the task. At most the cap (plus
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

    def _too_large(self, path: str, what: str, task_id: str, seen: str) -> NmbrsResponseError:
        return NmbrsResponseError(
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
                raise NmbrsDocumentTimeout(
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
