"""Token faults: the access token expiring mid-run, the refresh token rotated by a concurrent run (its grace
period passed), a refresh token revoked. Visma Connect over real HTTP, tokens in the Prefect blocks."""

from __future__ import annotations

import datetime as dt
import threading

import httpx2
import pytest
from pydantic import SecretStr

from nmbrs_visma.results import Status

from .support import Countdown, api_calls, assert_ledger, assert_rows_match_ledger, is_create, on_request, post

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ACCOUNT = "demo-1000001"  # the Visma.net account of companies 1001 and 1003


def connect_interactively(sandboxes, account: str = ACCOUNT) -> None:
    """Turn the demo's service account into an interactive one and authorise it (the emulator approves the
    demo user at once), as `nmbrs-visma connect visma` would with a browser."""
    from nmbrs_visma.blocks.visma_net import VismaNetAccount
    from nmbrs_visma.sandbox.visma_net import DEMO_REDIRECT_URI, INTERACTIVE_CLIENT_ID, INTERACTIVE_CLIENT_SECRET

    block = VismaNetAccount.load(account, _sync=True)
    block.grant_type = "authorization_code"
    block.client_id = INTERACTIVE_CLIENT_ID
    block.client_secret = SecretStr(INTERACTIVE_CLIENT_SECRET)
    block.redirect_uri = DEMO_REDIRECT_URI
    block.forget_tokens()
    block.save(account, overwrite=True, _sync=True)
    block = VismaNetAccount.load(account, _sync=True)
    auth = block.get_auth()
    request = auth.authorization_request()
    callback = httpx2.get(request.url, follow_redirects=False).headers["location"]
    auth.complete_authorization(callback, request)  # saves the token pair to the block


def expire_stored_access_token(account: str = ACCOUNT) -> None:
    from nmbrs_visma.blocks.visma_net import VismaNetAccount

    block = VismaNetAccount.load(account, _sync=True)
    block.access_token_expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    block.save(account, overwrite=True, _sync=True)


def refresh_grants(world) -> int:
    return sum(1 for _, grant_type in world.token_requests if grant_type == "refresh_token")


def test_an_access_token_expiring_mid_run_is_renewed_and_nothing_is_doubled(sandboxes) -> None:
    """Every access token dies the moment the first create arrives: that create is answered 401 (not acted
    on), the client renews its token and sends it again; the rest of the run uses the new tokens."""
    world = sandboxes.visma_world
    on_request(world, Countdown(is_create, 1, world.expire_access_tokens))
    tokens_before = len(world.token_requests)
    rows = post(companies=[1001, 1002, 1003])

    assert {row.status for row in rows} == {Status.SENT}, [(r.company, r.status, r.reason) for r in rows]
    assert_rows_match_ledger(rows, assert_ledger(sandboxes, [1001, 1002, 1003]))
    assert len(world.token_requests) > tokens_before + 2  # two tenants' first tokens, then renewals mid-run
    assert len([r for r in api_calls(world) if is_create(r)]) > len(rows)  # the 401'd create was sent again


def test_a_refresh_token_rotated_by_a_concurrent_run_is_reloaded_not_reused(sandboxes, monkeypatch) -> None:
    """Run A loads the account (its access token expired) and queues for the account's token lock; run B,
    holding it, rotates the refresh token and saves the new pair; the old refresh token's grace period passes.
    A must re-load the block under the lock and use B's tokens: re-using its stale refresh token would now
    be refused by Visma Connect."""
    from nmbrs_visma.blocks.locks import token_lock
    from nmbrs_visma.blocks.visma_net import VismaNetAccount
    from nmbrs_visma.tasks.tokens import renew_token

    world = sandboxes.visma_world
    world.refresh_grace_period = 0.3
    connect_interactively(sandboxes)
    expire_stored_access_token()
    stale = VismaNetAccount.load(ACCOUNT, _sync=True).refresh_token
    assert stale is not None

    loaded_by_run = threading.Event()
    load = VismaNetAccount.load

    def spy(cls: type, name: str, *args: object, **kwargs: object) -> object:
        if name == ACCOUNT and threading.current_thread() is not threading.main_thread():
            loaded_by_run.set()
        return load(name, *args, **kwargs)

    monkeypatch.setattr(VismaNetAccount, "load", classmethod(spy))
    results: list[list] = []
    with token_lock(VismaNetAccount, ACCOUNT):  # run B
        run_a = threading.Thread(target=lambda: results.append(post(companies=[1001])))
        run_a.start()
        assert loaded_by_run.wait(60), "run A never loaded the account"
        b_block = load(ACCOUNT, _sync=True)
        renew_token(b_block, ACCOUNT)  # rotates the refresh token and saves the new pair
        threading.Event().wait(world.refresh_grace_period + 0.3)
    run_a.join(120)

    ((row,),) = results
    assert row.status is Status.SENT, row
    assert_rows_match_ledger([row], assert_ledger(sandboxes, [1001]))
    assert refresh_grants(world) == 1  # B's rotation only: A re-loaded B's tokens
    refused = httpx2.post(  # the counterfactual: the stale refresh token is dead by now
        f"{sandboxes.visma_url}/connect/token",
        data={"grant_type": "refresh_token", "refresh_token": stale.get_secret_value()},
        auth=(b_block.client_id, b_block.client_secret.get_secret_value()),
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_a_revoked_refresh_token_says_connect_again_and_posts_nothing_for_that_account(sandboxes) -> None:
    from nmbrs_visma.blocks.visma_net import VismaNetAccount

    world = sandboxes.visma_world
    connect_interactively(sandboxes)
    expire_stored_access_token()
    revoked = VismaNetAccount.load(ACCOUNT, _sync=True).refresh_token
    assert revoked is not None
    with world.lock:  # the user revoked the app's access in Visma Connect
        del world.grants[revoked.get_secret_value()]

    rows = post(companies=[1001, 1002, 1003])
    for number in (1001, 1003):
        (row,) = [r for r in rows if r.company == number]
        assert row.status is Status.REFUSED and "not_authorised" in row.codes, row
        assert "connect it again" in row.reason and f"nmbrs-visma connect visma --account {ACCOUNT}" in row.reason
        assert revoked.get_secret_value() not in row.reason
    assert [r.status for r in rows if r.company == 1002] == [Status.SENT]  # the other account is unaffected
    assert_rows_match_ledger(rows, assert_ledger(sandboxes, [1002]))
    assert not [r for r in api_calls(world) if r.tenant_id == "1000001"]  # nothing sent, nothing read
    assert VismaNetAccount.load(ACCOUNT, _sync=True).refresh_token is None  # the dead grant was dropped
