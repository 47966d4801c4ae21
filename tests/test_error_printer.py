"""One error printer for every command: `alerts` prints its failures exactly as `post` / `status` do (one line on
stderr, `error: ...`, no Python type names, exit status 2, the traceback only with NMBRS_VISMA_DEBUG=1)."""

from __future__ import annotations

import socket

import pytest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.fixture
def no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NMBRS_VISMA_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")


@pytest.mark.usefixtures("no_debug")
def test_an_unexpected_alerts_failure_is_the_line_every_command_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nmbrs_visma import alerts
    from nmbrs_visma.commands import _error

    def broken() -> list[alerts.Alert]:
        raise RuntimeError("tenant 1000001 [bold]x[/]\nsecond line")

    monkeypatch.setattr(alerts, "list_alerts", broken)
    assert alerts.run_alerts_list() == 2
    from_alerts = _one_error_line(capsys)
    assert _error(RuntimeError("tenant 1000001 [bold]x[/]\nsecond line")) == 2
    assert from_alerts == _one_error_line(capsys)
    hint = "(run with NMBRS_VISMA_DEBUG=1 for the traceback)"
    assert from_alerts == f"error: unexpected failure: tenant 1000001 [bold]x[/]; second line {hint}"  # text
    assert "RuntimeError" not in from_alerts


@pytest.mark.usefixtures("no_debug")
def test_no_prefect_server_configured_is_the_alert_errors_message_alone(capsys: pytest.CaptureFixture[str]) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from nmbrs_visma.alerts import run_alerts_add, run_alerts_list, run_alerts_remove

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        codes = [run_alerts_list(), run_alerts_add("payroll-team"), run_alerts_remove("payroll-team")]
        assert codes == [2, 2, 2]
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and len(set(lines)) == 1, lines
    assert lines[0].startswith("error: alerts live on a Prefect server and none is configured: start one")
    assert "AlertError" not in lines[0] and "unexpected" not in lines[0]


@pytest.mark.usefixtures("no_debug")
def test_an_unreachable_prefect_server_is_named_with_its_url(capsys: pytest.CaptureFixture[str]) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from nmbrs_visma.alerts import run_alerts_list

    url = f"http://127.0.0.1:{_free_port()}/api"  # nothing listens there
    with temporary_settings(updates={PREFECT_API_URL: url}):
        assert run_alerts_list() == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: cannot reach the Prefect server at {url} (")
    assert line.endswith("is `prefect server start` running?")
    assert "ConnectError" not in line and "Traceback" not in line


def test_debug_prints_the_traceback_then_the_same_line_without_the_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nmbrs_visma import alerts

    def broken() -> list[alerts.Alert]:
        raise KeyError("tenant")

    monkeypatch.setattr(alerts, "list_alerts", broken)
    monkeypatch.setenv("NMBRS_VISMA_DEBUG", "1")
    assert alerts.run_alerts_list() == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback (most recent call last)" in captured.err and "in broken" in captured.err
    assert captured.err.strip().splitlines()[-1] == "error: unexpected failure: 'tenant'"
