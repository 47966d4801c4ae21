"""One error tree for both APIs (Nmbrs, Visma.net, and their identity servers).

Every failure of a client is an `ApiError`; what failed is in its fields (`api`, `method`, `path`, `status`,
`code`, `message`, `request_id`), which its text names in one line, never with a secret in it (the clients pass
every text through their `Scrubber` first). Callers decide by the class and by `outcome_unknown`, never by
matching a status or a code::

    ApiError                    any failure; `outcome_unknown` False unless a subclass or the raiser says so
    ├── AuthError               401/403, or a token request refused (`code`: the OAuth error, e.g. invalid_grant)
    ├── NotFound                404
    ├── ValidationError         400/422: the API refused the request's content
    ├── Conflict                409
    ├── RateLimited             429 not waited out (`retry_after`: seconds, if the API said)
    ├── ServerError             5xx after the retries a safe call gets      outcome unknown
    ├── TransportError          no answer: refused, dropped, timed out      outcome unknown, unless never sent
    ├── ResponseError           a 2xx that is not what the spec promises    (a create without Location: unknown)
    └── DocumentTimeout         an asynchronous document still processing when the bounded wait ran out

`outcome_unknown` is the property the posting logic needs: True when the request may have taken effect although
no success answer came back. A create that raised such an error must be looked up by its key, never sent again
blindly; any other error means the API did not act on it.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ApiError(Exception):
    """An API answered with an error, or gave no usable answer; carries what support needs, never a secret."""

    outcome_unknown_by_default: ClassVar[bool] = False

    def __init__(
        self,
        status: int | None,
        code: str | None,
        message: str,
        request_id: str | None = None,
        *,
        api: str = "",
        method: str = "",
        path: str = "",
        outcome_unknown: bool | None = None,
    ) -> None:
        self.status, self.code, self.message, self.request_id = status, code, message, request_id
        self.api, self.method, self.path = api, method, path  # where: named first in the text
        self.outcome_unknown = self.outcome_unknown_by_default if outcome_unknown is None else outcome_unknown
        super().__init__(self._text())

    def _text(self) -> str:
        where = " ".join(part for part in (self.api, self.method, self.path) if part)
        status = f"HTTP {self.status}" if self.status is not None else "no response"
        code = f" [{self.code}]" if self.code else ""
        request = f" (request id {self.request_id})" if self.request_id else ""
        return f"{where}: {status}{code}: {self.message}{request}" if where else f"{status}{code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._text()!r})"


class AuthError(ApiError):
    """401/403, or a token request refused: the token is missing, expired, revoked, or not valid here."""


class NotFound(ApiError):
    """404: unknown debtor, company, run, document task or batch."""


class ValidationError(ApiError):
    """400/422: the API refused the request's content (unknown account, closed period, a bad parameter, ...)."""


class Conflict(ApiError):
    """409."""


class RateLimited(ApiError):
    """429 that was not waited out (too many in a row, or `Retry-After` longer than the policy allows)."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(*args, **kwargs)


class ServerError(ApiError):
    """5xx (after the retries a safe call is allowed; a create gets none): the API may have acted on it."""

    outcome_unknown_by_default = True


class TransportError(ApiError):
    """No usable HTTP answer: connection refused or dropped, timeout. Unknown outcome unless it was never sent."""

    outcome_unknown_by_default = True


class ResponseError(ApiError):
    """The API answered 2xx with something that is not what the spec promises."""


class DocumentTimeout(ApiError):
    """An asynchronous document (a journal export) was still processing when the bounded wait ran out."""


def error_class(status: int) -> type[ApiError]:
    """The class for an HTTP error status."""
    if status in (401, 403):
        return AuthError
    if status == 404:
        return NotFound
    if status in (400, 422):
        return ValidationError
    if status == 409:
        return Conflict
    if status == 429:
        return RateLimited
    if status >= 500:
        return ServerError
    return ApiError
