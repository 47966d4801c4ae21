"""Errors in the Nmbrs spec's shape: `{type, httpStatus, code, title, detail, invalid-params?, docUrl}`."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

DOC_URL = "https://developer.nmbrs.com/api/docs/errors"


class NmbrsApiError(Exception):
    """Raised inside the emulator's handlers; rendered as the spec's error body."""

    def __init__(
        self,
        status: int,
        code: int,
        title: str,
        detail: str,
        error_type: str = "invalidRequestError",
        invalid_params: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}")
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.error_type, self.invalid_params, self.headers = error_type, invalid_params, headers

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.error_type,
            "httpStatus": self.status,
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
        }
        if self.invalid_params:
            body["invalid-params"] = self.invalid_params
        body["docUrl"] = DOC_URL
        return body

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


_FAULTS: dict[int, tuple[int, str, str, str]] = {
    429: (
        42908,
        "Too_Many_Calls",
        "The amount of calls is above the threshold for your subscription plan.",
        "throttlingError",
    ),
    500: (50001, "Unkown", "An unexpected error has occurred.", "apiError"),
    502: (50201, "Bad_Gateway", "A gateway error has ocurred.", "apiError"),
    503: (
        50301,
        "Service_Unavailable",
        "The API is not available, it can be because of an update or an unexpected error.",
        "apiError",
    ),
}


def fault(status: int, retry_after: int) -> NmbrsApiError:
    """A forced 429 or 5xx, worded as the spec's examples."""
    code, title, detail, error_type = _FAULTS.get(status, _FAULTS[500])
    headers = {"Retry-After": str(retry_after)} if status == 429 else None
    return NmbrsApiError(status, code, title, detail, error_type, headers=headers)


async def handle_api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NmbrsApiError)
    return exc.response()


async def handle_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 becomes the spec's 400 `Parameter_Invalid`, naming each bad parameter."""
    assert isinstance(exc, RequestValidationError)
    params = [
        {"name": str(error.get("loc", ("", "?"))[-1]), "reason": str(error.get("msg", "invalid"))}
        for error in exc.errors()
    ]
    error = NmbrsApiError(400, 40033, "Parameter_Invalid", "Invalid parameter.", "validationError", params)
    return error.response()
