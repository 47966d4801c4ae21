"""The one error tree (clients/errors.py): the same classes from both clients, and `outcome_unknown` set exactly
where a create may have been committed without a success answer."""

from __future__ import annotations

import httpx2
import pytest
from pydantic import SecretStr

from nmbrs_visma.clients.errors import (
    ApiError,
    AuthError,
    Conflict,
    NotFound,
    RateLimited,
    ResponseError,
    ServerError,
    TransportError,
    ValidationError,
)
from nmbrs_visma.clients.http import NMBRS_ERRORS, VISMA_NET_ERRORS, RetryPolicy
from tests.support import mock_sender

NO_RETRY = RetryPolicy(attempts=1, rate_limit_waits=0)


@pytest.mark.parametrize(
    ("status", "cls", "unknown"),
    [
        (400, ValidationError, False),
        (401, AuthError, False),
        (403, AuthError, False),
        (404, NotFound, False),
        (409, Conflict, False),
        (422, ValidationError, False),
        (429, RateLimited, False),
        (418, ApiError, False),
        (500, ServerError, True),
        (502, ServerError, True),
        (503, ServerError, True),
    ],
)
@pytest.mark.parametrize("style", [VISMA_NET_ERRORS, NMBRS_ERRORS], ids=["visma-net", "nmbrs"])
def test_each_status_is_one_class_of_the_shared_tree_for_both_apis(status, cls, unknown, style) -> None:
    sender = mock_sender(lambda request: httpx2.Response(status, json={"title": "no"}), style, policy=NO_RETRY)
    with pytest.raises(ApiError) as caught:
        sender.request("POST", "/v2/journaltransaction", content=b"{}")
    assert type(caught.value) is cls and caught.value.api == style.api
    assert caught.value.outcome_unknown is unknown


def test_a_connection_dropped_after_sending_a_create_leaves_its_outcome_unknown() -> None:
    def dropped(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("no answer", request=request)

    with pytest.raises(TransportError) as caught:
        mock_sender(dropped, policy=NO_RETRY).request("POST", "/v2/journaltransaction", content=b"{}")
    assert caught.value.outcome_unknown and "outcome is unknown" in caught.value.message


def test_a_create_that_never_connected_has_a_known_outcome() -> None:
    def refused(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    with pytest.raises(TransportError) as caught:
        mock_sender(refused, policy=NO_RETRY).request("POST", "/v2/journaltransaction", content=b"{}")
    assert not caught.value.outcome_unknown


def test_a_created_batch_without_location_is_a_response_error_of_unknown_outcome() -> None:
    from nmbrs_visma.clients.visma_connect import VismaConnectAuth
    from nmbrs_visma.clients.visma_net import VismaNetClient

    def api(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/token"):
            return httpx2.Response(200, json={"access_token": "a-token-value", "expires_in": 3600})
        return httpx2.Response(201)

    transport = httpx2.MockTransport(api)
    auth = VismaConnectAuth(
        flow="service",
        tenant_id="1",
        client_id="c",
        client_secret=SecretStr("s"),
        token_url="https://id.example/token",
        transport=transport,
    )
    with (
        VismaNetClient(base_url="https://api.example", auth=auth, transport=transport) as client,
        pytest.raises(ResponseError) as caught,
    ):
        client.create_journal_transaction(b"{}")
    assert caught.value.code == "NoLocation" and caught.value.outcome_unknown
