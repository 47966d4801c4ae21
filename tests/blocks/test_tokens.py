"""Token refresh against the emulators over real HTTP: one refresh per account at a time, rotation saved at
once, a dead grant is a clear "connect again" error, and a client renewing mid-run adopts a newer saved pair."""

from __future__ import annotations

import datetime as dt

import pytest
from prefect.client.orchestration import get_client

from nmbrs_visma.blocks import NmbrsAccount, VismaNetAccount
from nmbrs_visma.blocks.locks import token_lock_name
from nmbrs_visma.config import apply_config
from nmbrs_visma.sandbox.nmbrs.browser import approve_authorization
from nmbrs_visma.tasks.tokens import (
    AccountNotAuthorised,
    ReconnectRequired,
    ensure_fresh_token,
    refresh_token,
)
from tests.blocks.conftest import ENV, sandbox_config
from tests.support import at_once


@pytest.fixture
def configured(clean_blocks: None, sandboxes) -> None:
    apply_config(sandbox_config(sandboxes.visma_url, sandboxes.nmbrs_url), ENV)


@pytest.fixture
def nmbrs_connected(configured: None) -> NmbrsAccount:
    """The Nmbrs account authorised once against the emulator (its authorize endpoint approves at once)."""
    block = NmbrsAccount.load("default")
    auth = block.get_auth()
    request = auth.authorization_request()
    auth.complete_authorization(approve_authorization(request.url), request)
    return NmbrsAccount.load("default")


def _expire_access_token(name: str = "default") -> None:
    block = NmbrsAccount.load(name)
    block.access_token_expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    block.save(name, overwrite=True)


def _used_refresh_tokens(sandboxes) -> int:
    return sum(1 for grant in sandboxes.nmbrs_world.refresh_tokens.values() if grant.used)


def test_a_valid_token_is_not_refreshed(nmbrs_connected: NmbrsAccount, sandboxes) -> None:
    used = _used_refresh_tokens(sandboxes)
    block, refreshed = ensure_fresh_token(NmbrsAccount, "default")
    assert not refreshed
    assert _used_refresh_tokens(sandboxes) == used
    assert block.access_token == nmbrs_connected.access_token


def test_an_expiring_token_is_refreshed_and_the_rotated_pair_saved(nmbrs_connected: NmbrsAccount, sandboxes) -> None:
    _expire_access_token()
    status = refresh_token("nmbrs", "default")
    assert status.refreshed and status.account == "default"
    assert status.access_token_expires_at is not None and status.access_token_expires_at > dt.datetime.now(dt.UTC)
    saved = NmbrsAccount.load("default")
    assert saved.refresh_token != nmbrs_connected.refresh_token
    assert saved.access_token != nmbrs_connected.access_token
    # the saved refresh token is the live one: it refreshes again
    _expire_access_token()
    assert ensure_fresh_token(NmbrsAccount, "default")[1]


def test_concurrent_refreshes_of_one_account_refresh_once(nmbrs_connected: NmbrsAccount, sandboxes) -> None:
    _expire_access_token()
    used = _used_refresh_tokens(sandboxes)
    results = at_once([lambda: ensure_fresh_token(NmbrsAccount, "default")[1]] * 4, timeout=60)
    assert sorted(results) == [False, False, False, True]
    assert _used_refresh_tokens(sandboxes) == used + 1
    _expire_access_token()
    assert ensure_fresh_token(NmbrsAccount, "default")[1]  # the saved pair is the live one


def test_a_revoked_refresh_token_asks_to_connect_again(nmbrs_connected: NmbrsAccount, sandboxes) -> None:
    with sandboxes.nmbrs_world.lock:
        sandboxes.nmbrs_world.refresh_tokens.clear()  # revoked at the identity server
    _expire_access_token()
    with pytest.raises(ReconnectRequired) as raised:
        ensure_fresh_token(NmbrsAccount, "default")
    message = str(raised.value)
    assert "Nmbrs account 'default'" in message
    assert "nmbrs-visma connect nmbrs --account default" in message
    assert nmbrs_connected.refresh_token is not None
    for secret in (nmbrs_connected.refresh_token, nmbrs_connected.access_token, nmbrs_connected.client_secret):
        assert secret is not None and secret.get_secret_value() not in message
    assert raised.value.refusal(1001).code == "not_authorised"
    assert NmbrsAccount.load("default").refresh_token is None  # the block says so too


def test_a_lapsed_refresh_token_is_refused_without_a_call(nmbrs_connected: NmbrsAccount, sandboxes) -> None:
    block = NmbrsAccount.load("default")
    block.refresh_token_issued_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=31)
    block.access_token_expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    block.save("default", overwrite=True)
    used = _used_refresh_tokens(sandboxes)
    with pytest.raises(ReconnectRequired, match="lapsed"):
        ensure_fresh_token(NmbrsAccount, "default")
    assert _used_refresh_tokens(sandboxes) == used


def test_never_connected_and_missing_accounts(configured: None) -> None:
    with pytest.raises(ReconnectRequired, match="no refresh token"):
        ensure_fresh_token(NmbrsAccount, "default")
    with pytest.raises(AccountNotAuthorised, match="no Nmbrs Account block named 'elsewhere'"):
        ensure_fresh_token(NmbrsAccount, "elsewhere")


def test_a_mid_run_renewal_adopts_the_pair_another_run_saved(nmbrs_connected: NmbrsAccount, sandboxes) -> None:
    running = NmbrsAccount.load("default").get_client()  # a long run's client, holding the current pair
    try:
        _expire_access_token()
        assert ensure_fresh_token(NmbrsAccount, "default")[1]  # another run rotates: the held refresh token is spent
        used = _used_refresh_tokens(sandboxes)
        running.auth.renew()  # without the lock + re-read this would spend a dead refresh token
        saved = NmbrsAccount.load("default").access_token
        assert saved is not None and running.auth.access_token().get_secret_value() == saved.get_secret_value()
        assert _used_refresh_tokens(sandboxes) == used
        assert running.debtors()  # and the adopted token works
    finally:
        running.close()


def test_service_account_token_and_a_refused_secret(configured: None, sandboxes) -> None:
    block, refreshed = ensure_fresh_token(VismaNetAccount, "service")
    assert refreshed and block.access_token is not None and block.refresh_token is None
    assert VismaNetAccount.load("service").access_token is None  # kept in memory: nothing rotates, nothing saved
    with block.get_client() as client:
        assert "1" in client.branches()

    wrong = VismaNetAccount.load("service")
    wrong.client_secret = "not-the-secret"  # type: ignore[assignment]
    wrong.access_token = None
    wrong.save("service", overwrite=True)
    with pytest.raises(AccountNotAuthorised, match="refused the client id or secret"):
        ensure_fresh_token(VismaNetAccount, "service")


def test_the_lock_is_created_when_missing(nmbrs_connected: NmbrsAccount) -> None:
    name = token_lock_name(NmbrsAccount, "default")
    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name(name)
    _expire_access_token()
    assert ensure_fresh_token(NmbrsAccount, "default")[1]
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(name)
    assert limit.limit == 1 and limit.active
