"""The Visma.net client against the emulator over real HTTP: token flows, rate limits, retries, typed errors."""

from __future__ import annotations

import math
import time
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from pydantic import SecretStr

from nmbrs_visma.clients.errors import AuthError, NotFound, ServerError, TransportError, ValidationError
from nmbrs_visma.clients.http import RetryPolicy
from nmbrs_visma.clients.visma_connect import VismaConnectAuth
from nmbrs_visma.sandbox.visma_net import INTERACTIVE_CLIENT_ID
from tests.support import TENANT, Sandbox, dumps, journal, subaccount


def _interactive(sandbox: Sandbox, tokens: list[dict], **kwargs) -> VismaConnectAuth:
    return sandbox.interactive_auth(on_token=tokens.append, **kwargs)


def _login(auth: VismaConnectAuth, tenant_id: str = "1000002") -> None:
    """Play the browser: open the authorize URL, follow the emulator's auto-approval to the callback."""
    auth.tenant_id = tenant_id  # the tenant asked for at login (acr_values)
    request = auth.authorization_request()
    query = parse_qs(urlsplit(request.url).query)
    assert query["code_challenge_method"] == ["S256"] and query["prompt"] == ["login"]
    assert "offline_access" in query["scope"][0].split() and query["state"] == [request.state]
    answer = httpx2.get(request.url, follow_redirects=False)
    assert answer.status_code == 302
    auth.complete_authorization(answer.headers["location"], request)


def test_service_flow_reads_reference_data_and_reuses_the_token(sandbox: Sandbox) -> None:
    tokens: list[dict] = []
    before = len(sandbox.world.token_requests)
    with sandbox.client(sandbox.service_auth(on_token=tokens.append)) as client:
        reference = client.reference()
        assert client.branches() == ["1"] and client.ledgers() == ["L"]
    assert len(sandbox.world.token_requests) - before == 1 and len(tokens) == 1
    assert reference.tenant_id == TENANT
    assert reference.periods["202501"].closed_in_gl and not reference.periods["202612"].active
    assert reference.periods["202603"].active and not reference.periods["202603"].closed_in_gl
    assert len(reference.periods) == 24
    assert not reference.accounts["4999"].active and reference.accounts["4000"].active
    department = next(s for s in reference.segments if s.description == "Department")
    assert department.values["0900"] is False and department.values["0100"] is True and department.length == 4


def test_expired_access_token_is_renewed_and_the_call_resent(sandbox: Sandbox) -> None:
    tokens: list[dict] = []
    with sandbox.client(sandbox.service_auth(on_token=tokens.append)) as client:
        client.ledgers()
        sandbox.world.expire_access_tokens()  # the server now refuses it; the client still thinks it is valid
        assert client.ledgers() == ["L"]
    assert len(tokens) == 2 and tokens[0]["access_token"] != tokens[1]["access_token"]


def test_short_lived_token_is_renewed_before_it_runs_out(sandbox: Sandbox) -> None:
    sandbox.world.access_token_lifetime = 1
    tokens: list[dict] = []
    with sandbox.client(sandbox.service_auth(on_token=tokens.append)) as client:
        client.ledgers()
        client.ledgers()
        assert len(tokens) == 1
        time.sleep(1.05)
        client.ledgers()
    assert len(tokens) == 2


def test_service_flow_for_a_tenant_the_client_may_not_use(sandbox: Sandbox) -> None:
    with pytest.raises(AuthError) as info, sandbox.client(sandbox.service_auth(tenant_id="9999999")) as client:
        client.ledgers()
    assert info.value.code == "invalid_grant"


def test_wrong_client_secret_is_an_auth_error(sandbox: Sandbox) -> None:
    auth = VismaConnectAuth.service(
        client_id="nv-demo-service", client_secret=SecretStr("wrong"), tenant_id=TENANT, token_url=sandbox.token_url
    )
    with pytest.raises(AuthError) as info:
        auth.access_token()
    assert info.value.code == "invalid_client" and info.value.status == 401


def test_interactive_flow_with_pkce_and_refresh_rotation(sandbox: Sandbox) -> None:
    sandbox.world.refresh_grace_period = 0.3
    tokens: list[dict] = []
    auth = _interactive(sandbox, tokens)
    _login(auth, tenant_id="1000002")
    assert len(tokens) == 1 and tokens[0]["refresh_token"]
    with sandbox.client(auth) as client:
        assert client.branches() == ["1", "2"]  # tenant 1000002 was chosen at login
    first_refresh = tokens[0]["refresh_token"]

    auth.renew()
    assert len(tokens) == 2 and tokens[1]["refresh_token"] != first_refresh  # rotated, handed on at once

    # Inside the grace period the old refresh token still works (a lost answer can be retried) ...
    stale = _interactive(sandbox, [], token={"access_token": "x", "refresh_token": first_refresh, "expires_at": 1})
    stale.renew()
    time.sleep(0.35)
    # ... after it, it is refused with a clear error; the new one keeps working.
    stale = _interactive(sandbox, [], token={"access_token": "x", "refresh_token": first_refresh, "expires_at": 1})
    with pytest.raises(AuthError) as info:
        stale.renew()
    assert info.value.code == "invalid_grant" and "refresh" in str(info.value)
    auth.renew()
    assert len(tokens) == 3


def test_interactive_refresh_token_reuse_when_the_client_does_not_rotate(sandbox: Sandbox) -> None:
    sandbox.world.clients[INTERACTIVE_CLIENT_ID].rotate_refresh_tokens = False
    tokens: list[dict] = []
    auth = _interactive(sandbox, tokens)
    _login(auth)
    auth.renew()
    auth.renew()
    assert len({t["refresh_token"] for t in tokens}) == 1 and len({t["access_token"] for t in tokens}) == 3


def test_interactive_callback_with_wrong_state_or_verifier_is_refused(sandbox: Sandbox) -> None:
    auth = _interactive(sandbox, [])
    request = auth.authorization_request()
    callback = httpx2.get(request.url, follow_redirects=False).headers["location"]
    with pytest.raises(AuthError, match="state"):
        auth.complete_authorization(callback.replace(f"state={request.state}", "state=forged"), request)
    forged = type(request)(request.url, request.state, SecretStr("not-the-verifier-" * 3), request.redirect_uri)
    with pytest.raises(AuthError) as info:
        auth.complete_authorization(callback, forged)
    assert "PKCE" in str(info.value)
    with pytest.raises(AuthError, match="authorise"):  # no token at all yet: a clear message, no crash
        auth.access_token()


def test_429_is_honoured_no_request_before_retry_after(sandbox: Sandbox) -> None:
    sandbox.world.rate_limit_per_window = 2
    sandbox.world.rate_window_seconds = 1.0
    sent: list[float] = []
    limited: list[tuple[float, float]] = []

    def on_request(request: httpx2.Request) -> None:
        sent.append(time.monotonic())

    def on_response(response: httpx2.Response) -> None:
        if response.status_code == 429:
            limited.append((time.monotonic(), float(response.headers["Retry-After"])))

    auth = sandbox.service_auth()
    with sandbox.client(auth) as other:  # another worker on the same tenant uses up the budget
        other.ledgers()
        other.ledgers()
    with sandbox.client(auth, event_hooks={"request": [on_request], "response": [on_response]}) as client:
        assert client.ledgers() == ["L"]
    assert limited, "the emulator should have answered 429"
    for at, retry_after in limited:
        later = [t for t in sent if t > at]
        assert later and later[0] - at >= retry_after - 0.01
    assert client.rate_limit is not None and client.rate_limit.limit == 2


def test_5xx_is_retried_for_reads(sandbox: Sandbox) -> None:
    sandbox.world.faults.fail_next = 2
    before = len(sandbox.world.received)
    with sandbox.client() as client:
        assert "4000" in client.accounts()
    calls = [r for r in sandbox.world.received[before:] if r.path == "/v1/account"]
    assert len(calls) == 3


def test_5xx_on_reads_gives_up_after_the_policy_attempts(sandbox: Sandbox) -> None:
    sandbox.world.faults.fail_next = 10
    with pytest.raises(ServerError) as info, sandbox.client(policy=RetryPolicy(attempts=2, backoff=0.01)) as client:
        client.accounts()
    assert info.value.status == 500 and info.value.request_id


def test_create_is_never_blindly_retried(sandbox: Sandbox) -> None:
    world = sandbox.world
    with sandbox.client() as client:
        booked = len(world.transactions(TENANT))

        def posts() -> int:
            return sum(1 for r in world.received if r.method == "POST" and r.path == "/v2/journaltransaction")

        world.faults.fail_next = 1  # refused before commit
        before = posts()
        with pytest.raises(ServerError):
            client.create_journal_transaction(dumps(journal()))
        assert posts() - before == 1 and len(world.transactions(TENANT)) == booked

        world.faults.lose_next_creates = 1  # committed, then a 502
        before = posts()
        with pytest.raises(ServerError):
            client.create_journal_transaction(dumps(journal(description="lost 502 [nv:k502]")))
        assert posts() - before == 1 and len(world.transactions(TENANT)) == booked + 1
        found = [s for s in client.list_journal_transactions("202603") if "[nv:k502]" in s.description]
        assert len(found) == 1  # the caller's look-up finds what the lost answer hid

        world.faults.lose_next_creates, world.faults.lose_mode = 1, "drop"
        before = posts()
        with pytest.raises(TransportError, match="outcome is unknown"):
            client.create_journal_transaction(dumps(journal(description="dropped [nv:kdrop]")))
        assert posts() - before == 1 and len(world.transactions(TENANT)) == booked + 2


def test_create_that_times_out_is_not_resent(sandbox: Sandbox) -> None:
    world = sandbox.world
    world.faults.lose_next_creates, world.faults.lose_mode, world.faults.lose_timeout = 1, "timeout", 1.0
    booked = len(world.transactions(TENANT))
    with sandbox.client(timeout=0.3) as client, pytest.raises(TransportError):
        client.create_journal_transaction(dumps(journal(description="timed out [nv:kto]")))
    time.sleep(0.8)
    assert len(world.transactions(TENANT)) == booked + 1


def test_create_get_release_with_exact_amounts(sandbox: Sandbox) -> None:
    with sandbox.client() as client:
        batch = client.create_journal_transaction(dumps(journal()))
        body = client.journal_transaction(batch)
        assert body["status"] == "Balanced" and body["financialPeriod"] == "202603"
        assert body["debitTotal"] == Decimal("1234567.89") == body["creditTotal"]
        assert body["journalTransactionLines"][0]["subaccount"]["subaccountNumber"] == "0100-001"
        client.release_journal_transaction(batch)
        assert client.journal_transaction(batch)["status"] == "Posted"
        with pytest.raises(ValidationError, match="status Posted"):
            client.release_journal_transaction(batch)
    stored = next(t for t in sandbox.world.transactions(TENANT) if t.batch_number == batch)
    assert stored.lines[0].debit == Decimal("1234567.89") and isinstance(stored.lines[0].debit, Decimal)


def test_listing_pages_count_lines_and_batches_straddle_pages(sandbox: Sandbox) -> None:
    sandbox.world.max_page_size = 2
    with sandbox.client(page_size=50) as client:  # the API caps the page size silently
        numbers = [client.create_journal_transaction(dumps(journal("202604", description=f"b{i}"))) for i in range(3)]
        before = len(sandbox.world.received)
        summaries = client.list_journal_transactions("202604")
    pages = [r for r in sandbox.world.received[before:] if r.path == "/v2/journaltransaction"]
    assert len(pages) == math.ceil(9 / 2)
    assert [s.batch_number for s in summaries] == numbers
    assert all(s.line_count == 3 and s.debit == s.credit == Decimal("1234567.89") for s in summaries)
    assert {s.financial_period for s in summaries} == {"202604"}


def test_hold_accepts_an_unbalanced_batch(sandbox: Sandbox) -> None:
    lines = [("4000", "10.00", "0", subaccount()), ("1700", "0", "9.99", subaccount())]
    with sandbox.client() as client:
        batch = client.create_journal_transaction(dumps(journal(lines=lines, hold=True)))
        assert client.journal_transaction(batch)["status"] == "Hold"
        with pytest.raises(ValidationError, match="on hold"):
            client.release_journal_transaction(batch)


BAD = {
    "unknown account": (
        journal(lines=[("8888", "1", "0", subaccount()), ("1700", "0", "1", subaccount())]),
        "AccountNotFound",
        "8888",
    ),
    "inactive account": (
        journal(lines=[("4999", "1", "0", subaccount()), ("1700", "0", "1", subaccount())]),
        "AccountInactive",
        "4999",
    ),
    "unknown segment value": (
        journal(lines=[("4000", "1", "0", subaccount((1, "0777"))), ("1700", "0", "1", subaccount())]),
        "SegmentValueNotFound",
        "0777",
    ),
    "inactive segment value": (
        journal(lines=[("4000", "1", "0", subaccount((1, "0900"))), ("1700", "0", "1", subaccount())]),
        "SegmentValueInactive",
        "0900",
    ),
    "unknown segment": (
        journal(lines=[("4000", "1", "0", subaccount((7, "1"))), ("1700", "0", "1", subaccount())]),
        "SegmentNotFound",
        "7",
    ),
    "closed period": (journal("202501"), "FinancialPeriodClosed", "202501"),
    "inactive period": (journal("202612"), "FinancialPeriodInactive", "202612"),
    "missing period": (journal("203001"), "FinancialPeriodNotFound", "203001"),
    "unbalanced": (
        journal(lines=[("4000", "10.00", "0", subaccount()), ("1700", "0", "9.99", subaccount())]),
        "BatchOutOfBalance",
        "9.99",
    ),
    "sub-cent amount": (
        journal(lines=[("4000", "1.005", "0", subaccount()), ("1700", "0", "1.005", subaccount())]),
        "InvalidAmount",
        "1.005",
    ),
    "unknown branch": (journal(branch="9"), "BranchNotFound", "9"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_every_validation_error_is_a_clear_typed_error(sandbox: Sandbox, case: str) -> None:
    body, code, detail = BAD[case]
    booked = len(sandbox.world.transactions(TENANT))
    with sandbox.client() as client, pytest.raises(ValidationError) as info:
        client.create_journal_transaction(dumps(body))
    error = info.value
    assert error.status == 400 and error.code == code and detail in error.message
    assert error.request_id and error.request_id in str(error) and "POST /v2/journaltransaction" in str(error)
    assert len(sandbox.world.transactions(TENANT)) == booked


def test_bad_token_wrong_tenant_and_unknown_batch(sandbox: Sandbox) -> None:
    answer = httpx2.get(f"{sandbox.url}/v1/ledger", headers={"Authorization": "Bearer nope"})
    assert answer.status_code == 401 and "denied" in answer.json()["Message"]
    with sandbox.client(send_tenant_header=True) as client:
        assert client.ledgers() == ["L"]  # the header matches the token's tenant
        with pytest.raises(NotFound, match="999999"):
            client.journal_transaction("999999")
    auth = sandbox.service_auth()
    auth.access_token()  # a token for 1000001 ...
    auth.tenant_id = "1000002"  # ... used by a client that believes it talks to 1000002
    with pytest.raises(AuthError) as info, sandbox.client(auth, send_tenant_header=True) as client:
        client.ledgers()
    assert info.value.status == 403 and "1000002" in info.value.message
