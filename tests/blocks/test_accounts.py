"""`nmbrs-visma accounts`: each account's state and its refresh token's days left, never a secret; a table that
fits 100 columns, `--format json|csv`, exit 1 when an account needs `connect`. Unit tests on account blocks
built in memory, then the command against the session's Prefect API with the emulators' accounts."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys

import pytest
from rich.console import Console

from nmbrs_visma.accounts import AccountState, account_status, print_statuses
from nmbrs_visma.blocks import NmbrsAccount, VismaNetAccount
from nmbrs_visma.cli import app
from nmbrs_visma.config import apply_config
from nmbrs_visma.sandbox.nmbrs.browser import approve_authorization
from tests.blocks.conftest import ENV, sandbox_config

NOW = dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC)


def _nmbrs(**changes: object) -> NmbrsAccount:
    values: dict[str, object] = {
        "client_id": "nmbrs-client",
        "client_secret": "secret-value-1",
        "subscription_key": "secret-value-2",
        "refresh_token": "secret-value-3",
        "refresh_token_issued_at": NOW - dt.timedelta(days=20, hours=1),
    }
    values.update(changes)
    return NmbrsAccount(**values)


def test_the_states() -> None:
    service = account_status(VismaNetAccount(client_id="c", client_secret="s", tenant_id="1000001"), "service", now=NOW)
    assert service.state is AccountState.CLIENT_CREDENTIALS and service.refresh_text == "-"
    assert not service.needs_connect and service.refresh_days_left is None

    never = account_status(VismaNetAccount(client_id="c", client_secret="s", grant_type="authorization_code"), "i")
    assert never.state is AccountState.NEEDS_CONNECT and never.refresh_text == "none"
    assert never.connect_hint == "nmbrs-visma connect visma --account i"

    connected = account_status(_nmbrs(), "default", now=NOW)  # no access token stored: the next run gets one
    assert connected.state is AccountState.CONNECTED
    assert connected.refresh_days_left == 9 and connected.refresh_text == "9 days left"
    assert connected.refresh_token_expires_at == NOW - dt.timedelta(days=20, hours=1) + dt.timedelta(days=30)

    valid = account_status(
        _nmbrs(access_token="secret-value-4", access_token_expires_at=NOW + dt.timedelta(minutes=50)), "d", now=NOW
    )
    assert valid.state is AccountState.TOKEN_VALID
    assert valid.state_text == "access token valid until 2026-03-10 09:50 UTC"
    expired = _nmbrs(access_token="secret-value-4", access_token_expires_at=NOW - dt.timedelta(minutes=1))
    assert account_status(expired, "d", now=NOW).state is AccountState.CONNECTED

    lapsed = account_status(_nmbrs(refresh_token_issued_at=NOW - dt.timedelta(days=31)), "old", now=NOW)
    assert lapsed.needs_connect and lapsed.refresh_text == "lapsed 2026-03-09"
    assert "lapsed on 2026-03-09" in lapsed.note

    short = account_status(_nmbrs(refresh_token_lifetime_days=7, refresh_token_issued_at=NOW), "s", now=NOW)
    assert short.refresh_days_left == 7

    unknown = account_status(_nmbrs(refresh_token_issued_at=None), "u", now=NOW)
    assert unknown.state is AccountState.CONNECTED and unknown.refresh_text == "issue time unknown"

    interactive = VismaNetAccount(
        client_id="c",
        client_secret="s",
        grant_type="authorization_code",
        refresh_token="secret-value-3",
        refresh_token_issued_at=NOW - dt.timedelta(days=1),
    )
    assert account_status(interactive, "i", now=NOW).refresh_days_left == 29


def test_the_table_fits_100_columns_and_splits_no_count() -> None:
    statuses = [
        account_status(VismaNetAccount(client_id="c", client_secret="s", tenant_id="1"), "service", now=NOW),
        account_status(
            _nmbrs(access_token="secret-value-4", access_token_expires_at=NOW + dt.timedelta(minutes=50)),
            "bureau-van-der-berg-payroll-prod-nl",
            now=NOW,
        ),
        account_status(_nmbrs(refresh_token_issued_at=NOW - dt.timedelta(days=40)), "lapsed", now=NOW).with_note(
            "its refresh token was refused (revoked, already used or expired)"
        ),
    ]
    console = Console(width=100, record=True, highlight=False)
    print_statuses(statuses, console=console)
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert any("9 days left" in line for line in lines)  # a count and its unit on one line
    assert any("2026-02-28" in line for line in lines)
    assert "credentials" in text and "Visma.net" in text and "Nmbrs" in text  # words wrap whole
    assert "bureau-van-der-berg-payroll-prod-nl" in text  # a name is never split
    assert "2026-03-10" in text and "09:50" in text
    assert "secret-value" not in text


def test_json_and_csv(capsys) -> None:
    statuses = [account_status(_nmbrs(), "default", now=NOW)]
    print_statuses(statuses, "json")
    captured = capsys.readouterr()
    (row,) = json.loads(captured.out)  # nothing else on stdout
    assert row["system"] == "Nmbrs" and row["state"] == "connected" and row["refresh_token_days_left"] == 9
    assert row["refresh_token_expires_at"] == "2026-03-20T08:00:00+00:00"
    assert row["needs_connect"] is False and row["connect_command"] is None
    assert "1 account(s): 1 connected" in captured.err  # the footer goes to stderr
    print_statuses(statuses, "csv")
    csv_out = capsys.readouterr().out
    (parsed,) = list(csv.DictReader(io.StringIO(csv_out)))
    assert parsed["account"] == "default" and parsed["refresh_token_days_left"] == "9"
    assert "secret-value" not in captured.out + csv_out


# -- the command, against the Prefect API -------------------------------------------------------------------------


@pytest.fixture
def configured(clean_blocks: None, sandboxes) -> None:
    """The emulators' accounts: a Visma.net service account, an interactive one not connected, Nmbrs connected."""
    apply_config(sandbox_config(sandboxes.visma_url, sandboxes.nmbrs_url), ENV)
    auth = NmbrsAccount.load("default").get_auth()
    request = auth.authorization_request()
    auth.complete_authorization(approve_authorization(request.url), request)


def _cli(*args: str) -> int:
    try:
        app(["accounts", *args])
    except SystemExit as done:
        return int(done.code or 0)
    return 0


def _secrets() -> list[str]:
    nmbrs = NmbrsAccount.load("default")
    found = [*ENV.values()]
    for secret in (nmbrs.access_token, nmbrs.refresh_token):
        assert secret is not None
        found.append(secret.get_secret_value())
    return found


@pytest.mark.slow
def test_the_command_shows_every_account_and_exits_1_when_one_needs_connect(
    configured: None, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    assert _cli() == 1
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "service" in out and "interactive" in out and "default" in out
    assert "client credentials" in out and "needs connect" in out and "access token valid until" in out
    assert "29 days left" in out
    assert "connect again: nmbrs-visma connect visma --account interactive" in out
    for secret in _secrets():
        assert secret not in out

    assert _cli("--format", "json") == 1
    rows = {row["account"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["interactive"]["needs_connect"] and rows["default"]["refresh_token_days_left"] == 29
    assert rows["service"]["state"] == "client credentials"

    # connect the interactive account: nothing needs connect any more
    block = VismaNetAccount.load("interactive")
    auth = block.get_auth()
    request = auth.authorization_request()
    auth.complete_authorization(approve_authorization(request.url), request)
    assert _cli("--format", "csv") == 0
    assert {row["state"] for row in csv.DictReader(io.StringIO(capsys.readouterr().out))} == {
        "client credentials",
        "access token valid",
    }


@pytest.mark.slow
def test_the_installed_command(configured: None, prefect_api: str) -> None:
    """`nmbrs-visma accounts --format json` as a user runs it, in a process of its own."""
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "COLUMNS": "100"}
    command = [sys.executable, "-c", "from nmbrs_visma.cli import main; main()", "accounts", "--format", "json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1, done.stderr[-2000:]
    rows = json.loads(done.stdout)
    assert [row["account"] for row in rows] == ["interactive", "service", "default"]
    assert not any(secret in done.stdout + done.stderr for secret in _secrets())
