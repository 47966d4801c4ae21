"""The one OAuth 2.0 design (clients/oauth.py), the same for both systems: vocabulary, renewal, guard hooks, 401s.

Unit tests of the auth alone: the identity server is an `httpx2.MockTransport` that counts token requests. The
same behaviour against the real emulators and saved blocks is in tests/blocks/test_tokens.py.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs

import httpx2
import pytest
from pydantic import SecretStr

from nmbrs_visma.clients.errors import AuthError
from nmbrs_visma.clients.nmbrs import NmbrsAuth
from nmbrs_visma.clients.oauth import OAuth2Auth
from nmbrs_visma.clients.visma_connect import VismaConnectAuth
from tests.support import at_once

SECRET = SecretStr("client-secret-value")


class IdentityServer:
    """Hands out token pairs `access-N` / `refresh-N`; refuses a refresh token used before (they work once)."""

    def __init__(self) -> None:
        self.grants: list[dict[str, list[str]]] = []
        self.spent: set[str] = set()

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        form = parse_qs(request.content.decode())
        self.grants.append(form)
        refresh = form.get("refresh_token", [None])[0]
        if refresh is not None:
            if refresh in self.spent:
                return httpx2.Response(400, json={"error": "invalid_grant", "error_description": "used before"})
            self.spent.add(refresh)
        n = len(self.grants)
        return httpx2.Response(
            200, json={"access_token": f"access-{n}", "refresh_token": f"refresh-{n}", "expires_in": 3600}
        )


class RecordingGuard:
    """A `TokenGuard` that records when its lock is held and serves a token as if another run saved it."""

    def __init__(self, saved: Mapping[str, Any] | None = None) -> None:
        self.saved = saved
        self.held = 0
        self.read_while_held: list[bool] = []
        self._holding = False

    @contextlib.contextmanager
    def _hold(self) -> Iterator[None]:
        self.held += 1
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    def hold(self) -> contextlib.AbstractContextManager[object]:
        return self._hold()

    def saved_token(self) -> Mapping[str, Any] | None:
        self.read_while_held.append(self._holding)
        return self.saved


def _auth(kind: str, server: IdentityServer, **kwargs: Any) -> OAuth2Auth:
    common: dict[str, Any] = {
        "client_id": "client",
        "client_secret": SECRET,
        "redirect_uri": "http://127.0.0.1:8765/callback",
        "token_url": "https://identity.example/connect/token",
        "authorize_url": "https://identity.example/connect/authorize",
        "transport": httpx2.MockTransport(server),
        "sleep": lambda seconds: None,
        **kwargs,
    }
    if kind == "nmbrs":
        return NmbrsAuth(**common)
    return VismaConnectAuth(flow="interactive", **common)


KINDS = ("nmbrs", "visma")
_NOW = 1_000_000.0


def _token(n: int, *, expires_at: float = _NOW + 3600) -> dict[str, Any]:
    return {"access_token": f"held-{n}", "refresh_token": f"held-refresh-{n}", "expires_at": expires_at}


@pytest.mark.parametrize("kind", KINDS)
def test_both_systems_speak_one_vocabulary(kind: str) -> None:
    server = IdentityServer()
    auth = _auth(kind, server, clock=lambda: _NOW)
    assert not auth.has_token
    request = auth.authorization_request()
    query = parse_qs(httpx2.URL(request.url).query.decode())
    assert query["code_challenge_method"] == ["S256"] and query["prompt"] == ["login"]
    assert query["state"] == [request.state] and "code-verifier" not in repr(request)
    auth.complete_authorization(f"{request.redirect_uri}?code=the-code&state={request.state}", request)
    assert server.grants[-1]["grant_type"] == ["authorization_code"]
    assert server.grants[-1]["code_verifier"] == [request.code_verifier.get_secret_value()]
    assert auth.has_token
    token = auth.access_token()
    assert isinstance(token, SecretStr) and token.get_secret_value() == "access-1"
    assert "access-1" not in repr(auth) and SECRET.get_secret_value() not in repr(auth)


@pytest.mark.parametrize("kind", KINDS)
def test_a_callback_of_another_state_is_refused_before_any_token_request(kind: str) -> None:
    server = IdentityServer()
    auth = _auth(kind, server)
    request = auth.authorization_request()
    with pytest.raises(AuthError) as caught:
        auth.complete_authorization(f"{request.redirect_uri}?code=c&state=forged", request)
    assert caught.value.code == "state_mismatch" and not server.grants and not auth.has_token


@pytest.mark.parametrize("kind", KINDS)
def test_a_renewal_holds_the_guard_and_adopts_a_live_token_saved_meanwhile(kind: str) -> None:
    server = IdentityServer()
    guard = RecordingGuard(saved=_token(2))
    saved_pairs: list[dict[str, Any]] = []
    auth = _auth(kind, server, token=_token(1), guard=guard, on_token=saved_pairs.append, clock=lambda: _NOW)
    auth.renew()
    assert guard.held == 1 and guard.read_while_held == [True]  # the block is re-read under the lock
    assert auth.access_token().get_secret_value() == "held-2"
    assert not server.grants and not saved_pairs  # no refresh token spent, nothing to save


@pytest.mark.parametrize("kind", KINDS)
def test_a_newer_saved_pair_that_expires_too_is_refreshed_with_its_own_refresh_token(kind: str) -> None:
    server = IdentityServer()
    server.spent.add("held-refresh-1")  # the other run spent ours when it renewed
    guard = RecordingGuard(saved=_token(2, expires_at=_NOW + 5))
    saved_pairs: list[dict[str, Any]] = []
    auth = _auth(kind, server, token=_token(1), guard=guard, on_token=saved_pairs.append, clock=lambda: _NOW)
    auth.renew()
    assert [grant["refresh_token"] for grant in server.grants] == [["held-refresh-2"]]
    assert [pair["access_token"] for pair in saved_pairs] == ["access-1"]  # handed on at once
    assert auth.access_token().get_secret_value() == "access-1"


@pytest.mark.parametrize("kind", KINDS)
def test_renew_with_a_stale_token_is_a_no_op_once_another_thread_renewed(kind: str) -> None:
    server = IdentityServer()
    auth = _auth(kind, server, token=_token(1), clock=lambda: _NOW)
    auth.renew(stale=SecretStr("held-0"))  # a token this auth no longer holds
    assert not server.grants
    auth.renew(stale=SecretStr("held-1"))
    assert len(server.grants) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_401s_spend_the_refresh_token_once(kind: str) -> None:
    server = IdentityServer()
    auth = _auth(kind, server, token=_token(1), clock=lambda: _NOW)
    barrier = threading.Barrier(4)

    def api(request: httpx2.Request) -> httpx2.Response:
        if request.headers["Authorization"] == "Bearer held-1":
            barrier.wait(timeout=5)  # every thread got its 401 with the old token before one renews
            return httpx2.Response(401, json={"code": 40102, "title": "Invalid_Token"})
        return httpx2.Response(200, json={"ok": request.headers["Authorization"]})

    with httpx2.Client(auth=auth, transport=httpx2.MockTransport(api)) as client:
        answers = at_once([lambda: client.get("https://api.example/x")] * 4)
    assert [answer.status_code for answer in answers] == [200] * 4
    assert len(server.grants) == 1  # one rotation, not four spending the same one-time refresh token
    assert {answer.json()["ok"] for answer in answers} == {"Bearer access-1"}


def test_an_nmbrs_401_about_the_subscription_key_spends_no_refresh_token() -> None:
    server = IdentityServer()
    auth = _auth("nmbrs", server, token=_token(1), clock=lambda: _NOW)

    def api(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(401, json={"code": 40103, "title": "Invalid subscription key"})

    with httpx2.Client(auth=auth, transport=httpx2.MockTransport(api)) as client:
        assert client.get("https://api.example/x").status_code == 401
    assert not server.grants


def test_a_lapsed_nmbrs_refresh_token_is_refused_before_any_token_request() -> None:
    server = IdentityServer()
    token = {**_token(1, expires_at=_NOW - 1), "refresh_expires_at": _NOW - 60}
    auth = _auth("nmbrs", server, token=token, clock=lambda: _NOW)
    with pytest.raises(AuthError) as caught:
        auth.access_token()
    assert caught.value.code == "refresh_token_expired" and not server.grants


def test_a_visma_service_account_renews_by_client_credentials_without_a_refresh_token() -> None:
    server = IdentityServer()
    auth = VismaConnectAuth(
        flow="service",
        tenant_id="1000001",
        client_id="client",
        client_secret=SECRET,
        token_url="https://identity.example/connect/token",
        transport=httpx2.MockTransport(server),
    )
    assert auth.access_token().get_secret_value() == "access-1"
    assert server.grants[0]["grant_type"] == ["client_credentials"] and server.grants[0]["tenant_id"] == ["1000001"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_refresh_names_the_oauth_error_and_no_secret(kind: str) -> None:
    server = IdentityServer()
    server.spent.add("held-refresh-1")
    auth = _auth(kind, server, token=_token(1, expires_at=_NOW - 1), clock=lambda: _NOW)
    with pytest.raises(AuthError) as caught:
        auth.access_token()
    error = caught.value
    assert error.code == "invalid_grant" and error.status == 400 and not error.outcome_unknown
    assert "works once" in error.message
    text = f"{error} {error!r} {json.dumps(error.args)}"
    assert "held-refresh-1" not in text and SECRET.get_secret_value() not in text
