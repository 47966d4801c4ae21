"""No secret leaks, even from an API that echoes them: both emulators answer every error with the credentials the
request carried (`echo_secrets`: headers, a Basic header decoded, the OAuth form fields), and neither the
clients nor the flow may let one through to an exception, a log line (caplog and Prefect's run logs), a status
row or an artifact. The secrets: the client secrets, the Nmbrs subscription key, every access and refresh token
either emulator issued during the test (spent and current), a client secret configured wrongly."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr

from nmbrs_visma.clients.errors import ApiError
from nmbrs_visma.results import Status, StatusRow
from nmbrs_visma.sandbox.demo_data import COMPANIES
from nmbrs_visma.sandbox.nmbrs import DEMO_CLIENT_SECRET, DEMO_SUBSCRIPTION_KEY
from nmbrs_visma.sandbox.visma_net import INTERACTIVE_CLIENT_SECRET, SERVICE_CLIENT_SECRET

from .support import PERIOD
from .test_tokens import connect_interactively

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

WRONG_SECRET = "a-wrongly-configured-client-secret-5e3b"  # configured, so a secret too, though refused
VISMA_ACCOUNT = "demo-1000001"  # companies 1001 and 1003
WRONG_ACCOUNT = "demo-1000002"  # company 1002: its block gets WRONG_SECRET


class Leaks:
    """Every text the test saw, checked at the end against every secret known by then."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []  # (where, text)

    def add(self, where: str, text: object) -> None:
        self.texts.append((where, str(text)))

    def error(self, where: str, exc: BaseException) -> None:
        """An exception's text, repr and the chain behind it (which `from None` must have cut)."""
        for name, value in (("str", exc), ("repr", repr(exc)), ("cause", exc.__cause__), ("ctx", exc.__context__)):
            if value is not None:
                self.add(f"{where} {name}", value)
        for arg in exc.args:
            self.add(f"{where} arg", arg)

    def check(self, secrets: set[str]) -> None:
        short = [s for s in secrets if len(s) < 8]
        assert not short, "every secret of the test is long enough to be told apart"
        found = [(where, secret[:6]) for where, text in self.texts for secret in secrets if secret in text]
        assert not found, f"secrets (first characters shown) leaked in: {found[:10]}"


def issued_secrets(sandboxes: Any) -> set[str]:
    """The configured secrets and every token or code either emulator handed out so far."""
    nmbrs, visma = sandboxes.nmbrs_world, sandboxes.visma_world
    with nmbrs.lock:
        tokens = set(nmbrs.access_tokens) | set(nmbrs.refresh_tokens)
    with visma.lock:
        tokens |= set(visma.grants)
    configured = {DEMO_CLIENT_SECRET, DEMO_SUBSCRIPTION_KEY, SERVICE_CLIENT_SECRET, INTERACTIVE_CLIENT_SECRET}
    return configured | {WRONG_SECRET} | tokens


@pytest.fixture
def echoing(sandboxes: Any) -> Iterator[Any]:
    sandboxes.nmbrs_world.echo_secrets = True
    sandboxes.visma_world.faults.echo_secrets = True
    yield sandboxes


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx2", "httpx", "httpcore", "httpcore2", "authlib", "nmbrs_visma", "prefect"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    return caplog


def test_the_emulators_echo_the_secrets_they_received(echoing: Any) -> None:
    """The premise: with the switch on, an error body holds the very credentials the request carried."""
    answer = httpx2.get(
        f"{echoing.nmbrs_url}/api/debtors",
        headers={"X-Subscription-Key": DEMO_SUBSCRIPTION_KEY, "Authorization": "Bearer not-a-live-token-1234"},
    )
    assert answer.status_code == 401
    assert DEMO_SUBSCRIPTION_KEY in answer.json()["detail"] and "not-a-live-token-1234" in answer.json()["detail"]
    refused = httpx2.post(
        f"{echoing.visma_url}/connect/token",
        data={"grant_type": "client_credentials", "tenant_id": "1000001"},
        auth=("nv-demo-service", WRONG_SECRET),
    )
    assert refused.status_code == 401 and WRONG_SECRET in refused.json()["error_description"]
    echoing.nmbrs_world.echo_secrets = False
    quiet = httpx2.get(f"{echoing.nmbrs_url}/api/debtors", headers={"X-Subscription-Key": DEMO_SUBSCRIPTION_KEY})
    assert "received" not in quiet.text  # off: the spec's own body


def test_no_secret_from_an_echoing_api_reaches_a_client_error_or_log(echoing: Any, debug_logs) -> None:
    from nmbrs_visma.blocks.nmbrs import NmbrsAccount
    from nmbrs_visma.blocks.visma_net import VismaNetAccount
    from nmbrs_visma.clients.nmbrs import NmbrsCompany

    leaks = Leaks()
    nmbrs_world, visma_world = echoing.nmbrs_world, echoing.visma_world
    block = NmbrsAccount.load("default", _sync=True)
    demo = COMPANIES[0]
    company = NmbrsCompany(company_id=demo.company_id, number=demo.number, name=demo.name)

    def expect(where: str, call: Any) -> ApiError:
        with pytest.raises(ApiError) as info:
            call()
        leaks.error(where, info.value)
        return info.value

    with block.get_client() as nmbrs:
        nmbrs.debtors()  # a live token first
        nmbrs_world.fail_next(10, 503)
        expect("nmbrs 503", nmbrs.debtors)
        expect("nmbrs 400", lambda: nmbrs.runs(company, 1800))
        expect("nmbrs 404", lambda: nmbrs.company_period("00000000-0000-4000-8000-000000000000"))
        nmbrs_world.subscription_key = "a-key-rotated-by-the-admin-77"
        key_refused = expect("nmbrs key 401", nmbrs.debtors)
        nmbrs_world.subscription_key = DEMO_SUBSCRIPTION_KEY
    assert "received:" in key_refused.message and "***" in key_refused.message  # echoed, and redacted

    # the identity server: a spent refresh token, and a wrong client secret, both echoed back
    stale = dict(block.token_dict() or {})
    rotated: list[dict[str, Any]] = []
    block.get_auth(guarded=False, on_token=rotated.append).renew()  # the refresh token in `stale` is spent now
    spent = block.model_copy()
    spent.apply_token(stale)
    refusal = expect("nmbrs spent refresh", spent.get_auth(guarded=False, on_token=lambda token: None).renew)
    assert refusal.code == "invalid_grant" and "***" in refusal.message
    wrong = block.model_copy(update={"client_secret": SecretStr(WRONG_SECRET)})
    wrong.apply_token(rotated[-1])
    expect("nmbrs wrong secret", wrong.get_auth(guarded=False, on_token=lambda token: None).renew)

    # Visma.net: an interactive account (rotating refresh tokens), a create refused, reads failing
    logging.disable(logging.CRITICAL)  # its GET plays the user's browser (a code in a Location): not the product
    try:
        connect_interactively(echoing, VISMA_ACCOUNT)
    finally:
        logging.disable(logging.NOTSET)
    visma_block = VismaNetAccount.load(VISMA_ACCOUNT, _sync=True)
    with visma_block.get_client() as visma:
        visma.branches()
        expect("visma 400", lambda: visma.create_journal_transaction(b'{"journalTransactionLines": []}'))
        visma_world.faults.fail_next = 10
        expect("visma 503", visma.accounts)
        visma_world.faults.fail_next = 0
    used = dict(visma_block.token_dict() or {})
    visma_world.refresh_grace_period = 0.0  # a spent refresh token is refused at once
    visma_block.get_auth(guarded=False, on_token=lambda token: None).renew()
    again = VismaNetAccount.load(VISMA_ACCOUNT, _sync=True)
    again.apply_token(used)
    expect("visma spent refresh", again.get_auth(guarded=False, on_token=lambda token: None).renew)
    service = VismaNetAccount.load(WRONG_ACCOUNT, _sync=True).model_copy(
        update={"client_secret": SecretStr(WRONG_SECRET)}
    )
    expect("visma wrong secret", service.get_auth(guarded=False).access_token)

    leaks.add("caplog", debug_logs.text)
    for record in debug_logs.records:
        leaks.add(f"log {record.name}", record.getMessage() + repr(record.args))
    assert debug_logs.records, "the test must capture log output"
    leaks.check(issued_secrets(echoing))


def flow_run_texts(flow_run_id: Any) -> list[tuple[str, str]]:
    """Every log line Prefect stored for the run and every artifact it made (data and description)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # the run logs are sent in batches: all of them stored before reading
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    texts = [(f"prefect log {log.name}", log.message) for log in logs]
    texts += [(f"artifact {a.key}", f"{a.data} {a.description}") for a in artifacts]
    assert logs and artifacts, "the run must have logged and reported"
    return texts


def run_pass(leaks: Leaks, **kwargs: Any) -> list[StatusRow]:
    from nmbrs_visma.flows.post_payroll_journals import pass_rows, post_payroll_journals

    state = post_payroll_journals(period=PERIOD, return_state=True, **kwargs)
    rows = pass_rows(state)
    for row in rows:
        leaks.add(f"row {row.company}", row.model_dump_json())
    leaks.texts += flow_run_texts(state.state_details.flow_run_id)
    return rows


def test_no_secret_from_echoing_apis_reaches_a_status_row_log_or_artifact(echoing: Any, debug_logs) -> None:
    """Two runs of the flow through echoed errors: Nmbrs refusing the subscription key on every call, then
    Visma.net failing every read while one account's client secret is refused by the token endpoint."""
    from nmbrs_visma.blocks.visma_net import VismaNetAccount

    leaks = Leaks()
    companies = [1001, 1002, 1003]

    echoing.nmbrs_world.subscription_key = "a-key-rotated-by-the-admin-77"
    rows = run_pass(leaks, companies=companies)
    failed = [row for row in rows if row.status is Status.FAILED]
    assert {row.company for row in failed} == set(companies), rows
    assert any("received:" in (row.reason or "") and "***" in (row.reason or "") for row in failed), failed
    echoing.nmbrs_world.subscription_key = DEMO_SUBSCRIPTION_KEY

    wrong = VismaNetAccount.load(WRONG_ACCOUNT, _sync=True)
    wrong.client_secret = SecretStr(WRONG_SECRET)
    wrong.forget_tokens()
    wrong.save(WRONG_ACCOUNT, overwrite=True, _sync=True)
    echoing.visma_world.faults.server_error_share = 1.0
    rows = run_pass(leaks, companies=companies)
    assert rows and all(row.status is not Status.SENT for row in rows), rows
    assert any("received:" in (row.reason or "") for row in rows), rows  # the echo reached a reason, redacted

    leaks.add("caplog", debug_logs.text)
    for record in debug_logs.records:
        leaks.add(f"log {record.name}", record.getMessage() + repr(record.args))
    leaks.check(issued_secrets(echoing))
