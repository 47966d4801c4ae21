"""The `keep-accounts-alive` flow on the session's Prefect API against both emulators' identity servers, which
issue one-time (rotating) refresh tokens: a token near its lapse is renewed (a new issue time in the block, the
old token refused after), one far from it is left alone, a revoked one is reported as needing `connect` and
fails the run, with the `accounts` artifact showing every account."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId
from prefect.states import State

from nmbrs_visma.accounts import AccountState, AccountStatus
from nmbrs_visma.blocks import NmbrsAccount, VismaNetAccount
from nmbrs_visma.config import apply_config
from nmbrs_visma.flows.keep_alive import keep_accounts_alive
from nmbrs_visma.sandbox.nmbrs.browser import approve_authorization
from nmbrs_visma.sandbox.nmbrs.world import DEMO_CLIENT_ID
from tests.blocks.conftest import ENV, sandbox_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def connected(clean_blocks: None, sandboxes) -> None:
    """The emulators' accounts configured; the Nmbrs and the interactive Visma.net account authorised (each
    emulator approves the demo user at once), as `nmbrs-visma connect` would with a browser."""
    apply_config(sandbox_config(sandboxes.visma_url, sandboxes.nmbrs_url), ENV)
    nmbrs = NmbrsAccount.load("default").get_auth()
    request = nmbrs.authorization_request()
    nmbrs.complete_authorization(approve_authorization(request.url), request)
    visma = VismaNetAccount.load("interactive").get_auth()
    visma_request = visma.authorization_request()
    visma.complete_authorization(approve_authorization(visma_request.url), visma_request)


def _age(block_type: type[NmbrsAccount] | type[VismaNetAccount], name: str, days: float) -> NmbrsAccount:
    """Pretend the account's refresh token was issued `days` ago (the identity server's own clock is real)."""
    block = block_type.load(name)
    block.refresh_token_issued_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    block.save(name, overwrite=True)
    return block_type.load(name)


def _run(renew_within_days: int = 14) -> tuple[State, list[AccountStatus]]:
    state = keep_accounts_alive(renew_within_days=renew_within_days, return_state=True)
    rows = state.result(raise_on_failure=False)
    assert isinstance(rows, list), rows
    return state, rows


def _by_name(rows: list[AccountStatus]) -> dict[str, AccountStatus]:
    return {status.account: status for status in rows}


def _artifact_rows(state: State) -> list[dict[str, str]]:
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["accounts"])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])),
        )
    assert artifact.type == "table"
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


def _refresh_refused(token_url: str, refresh_token: str, client_id: str, client_secret: str) -> bool:
    """Whether the identity server refuses `refresh_token` as a dead grant."""
    response = httpx2.post(
        token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id,
            "client_secret": client_secret,
        },
        timeout=10,
    )
    return response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_a_token_near_its_lapse_is_renewed_and_the_old_one_refused(connected: None, sandboxes, monkeypatch) -> None:
    from nmbrs_visma.sandbox.visma_net.world import INTERACTIVE_CLIENT_ID

    monkeypatch.setattr(sandboxes.visma_world, "refresh_grace_period", 0.0)  # Visma Connect: no reuse window
    before = _age(NmbrsAccount, "default", days=20)  # 10 days left < 14
    visma_before = _age(VismaNetAccount, "interactive", days=25)  # 5 days left
    assert before.refresh_token_days_left == 9 and visma_before.refresh_token_days_left == 4

    state, rows = _run()

    assert state.is_completed(), state.message
    after = NmbrsAccount.load("default")
    assert after.refresh_token is not None and before.refresh_token is not None
    assert after.refresh_token.get_secret_value() != before.refresh_token.get_secret_value()
    assert after.refresh_token_issued_at is not None
    assert dt.datetime.now(dt.UTC) - after.refresh_token_issued_at < dt.timedelta(minutes=2)
    assert after.refresh_token_days_left == 29
    assert _refresh_refused(
        f"{sandboxes.nmbrs_url}/connect/token",
        before.refresh_token.get_secret_value(),
        DEMO_CLIENT_ID,
        ENV["TEST_NMBRS_SECRET"],
    )
    visma_after = VismaNetAccount.load("interactive")
    assert visma_after.refresh_token_issued_at is not None and visma_before.refresh_token_issued_at is not None
    assert visma_after.refresh_token_issued_at > visma_before.refresh_token_issued_at
    assert visma_before.refresh_token is not None
    assert _refresh_refused(
        f"{sandboxes.visma_url}/connect/token",
        visma_before.refresh_token.get_secret_value(),
        INTERACTIVE_CLIENT_ID,
        ENV["TEST_VISMA_INTERACTIVE_SECRET"],
    )

    shown = _by_name(rows)
    assert shown["default"].note.startswith("renewed") and shown["default"].refresh_days_left == 29
    assert shown["interactive"].note.startswith("renewed")
    assert shown["service"].state is AccountState.CLIENT_CREDENTIALS
    assert "2 refresh token(s) renewed" in (state.message or "")
    table = {row["account"]: row for row in _artifact_rows(state)}
    assert set(table) == {"service", "interactive", "default"}
    assert table["default"]["refresh token"] == "29 days left" and table["default"]["note"].startswith("renewed")
    assert table["service"]["refresh token"] == "-"


def test_a_token_far_from_its_lapse_is_left_alone(connected: None, sandboxes) -> None:
    before = _age(NmbrsAccount, "default", days=3)  # 27 days left
    used = sum(1 for grant in sandboxes.nmbrs_world.refresh_tokens.values() if grant.used)

    state, rows = _run(renew_within_days=14)

    assert state.is_completed(), state.message
    after = NmbrsAccount.load("default")
    assert after.refresh_token == before.refresh_token
    assert after.refresh_token_issued_at == before.refresh_token_issued_at
    assert sum(1 for grant in sandboxes.nmbrs_world.refresh_tokens.values() if grant.used) == used
    assert _by_name(rows)["default"].note.startswith("not due")
    assert _by_name(rows)["default"].refresh_days_left == 26
    assert "0 refresh token(s) renewed" in (state.message or "")


def test_a_revoked_token_needs_connect_and_fails_the_run(connected: None, sandboxes) -> None:
    before = _age(NmbrsAccount, "default", days=20)
    with sandboxes.nmbrs_world.lock:
        sandboxes.nmbrs_world.refresh_tokens.clear()  # revoked at the identity server

    state, rows = _run()

    assert state.is_failed()
    message = state.message or ""
    assert "Nmbrs account 'default'" in message
    assert "`nmbrs-visma connect nmbrs --account default`" in message
    assert message.startswith("1 account(s) to connect again: Nmbrs account 'default' needs")
    assert "interactive" not in message  # the account that is fine is not named
    status = _by_name(rows)["default"]
    assert status.needs_connect and "refused" in status.note
    assert NmbrsAccount.load("default").refresh_token is None  # the block says so too
    table = {row["account"]: row for row in _artifact_rows(state)}
    assert table["default"]["state"] == "needs connect"
    artifact_text = json.dumps(table)
    for secret in (before.refresh_token, before.access_token, before.client_secret, before.subscription_key):
        assert secret is not None
        assert secret.get_secret_value() not in message and secret.get_secret_value() not in artifact_text


def test_a_refused_client_is_not_retried_and_fails_the_run(connected: None) -> None:
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    block = _age(NmbrsAccount, "default", days=20)
    block.client_secret = "not-the-secret"  # type: ignore[assignment]
    block.save("default", overwrite=True)

    state, rows = _run()

    assert state.is_failed()
    message = state.message or ""
    assert "1 account(s) could not be renewed: Nmbrs account 'default': the token endpoint refused" in message
    assert "refused the client id or secret" in message and "not-the-secret" not in message
    assert _by_name(rows)["default"].note.startswith("renewal failed")
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:  # the server records task runs from their events, a moment after the flow ends
            found = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])),
                task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=["keep-alive-nmbrs-default"])),
            )
            if (found and found[0].state_type is not None and found[0].state_type.value == "FAILED") or (
                time.monotonic() > deadline
            ):
                break
            time.sleep(0.5)
    (task_run,) = found
    assert task_run.run_count == 1  # a refused client is not a passing fault: no retries
    assert NmbrsAccount.load("default").refresh_token == block.refresh_token  # the grant is kept


def test_a_never_connected_account_fails_the_run_without_a_call(clean_blocks: None, sandboxes) -> None:
    apply_config(sandbox_config(sandboxes.visma_url, sandboxes.nmbrs_url), ENV)  # nothing connected
    calls = len(sandboxes.visma_world.token_requests)

    state, rows = _run()

    assert state.is_failed()
    assert {status.account for status in rows if status.needs_connect} == {"interactive", "default"}
    assert "`nmbrs-visma connect visma --account interactive`" in (state.message or "")
    assert len(sandboxes.visma_world.token_requests) == calls


def test_the_weekly_deployment() -> None:
    """deployments/prefect.yaml: `keep-alive` runs the flow weekly, Monday 05:00 Amsterdam time."""
    config: dict[str, Any] = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    (deployment,) = [d for d in config["deployments"] if d["name"] == "keep-alive"]
    assert deployment["entrypoint"] == "nmbrs_visma.flows.keep_alive.keep_accounts_alive"
    (schedule,) = deployment["schedules"]
    assert (schedule["cron"], schedule["timezone"], schedule["active"]) == ("0 5 * * 1", "Europe/Amsterdam", True)
    assert deployment["parameters"] == {"renew_within_days": 14}
    assert "nmbrs-visma" in deployment["tags"]
    assert deployment["work_pool"]["name"] == "nmbrs-visma"


def test_the_run_form() -> None:
    """The flow's one parameter as the UI's run form shows it: titled, described, 1..365 days."""
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import validate

    schema = parameter_schema(keep_accounts_alive.fn).model_dump()
    field = schema["properties"]["renew_within_days"]
    assert field["title"] == "Renew when fewer days are left than" and "renewed now" in field["description"]
    assert (field["default"], field["minimum"], field["maximum"]) == (14, 1, 365)
    assert validate({"renew_within_days": 14}, schema) == []
    assert validate({"renew_within_days": 0}, schema)
