"""A new user at a terminal: `nmbrs-visma sandbox --write-config FILE`, then every command by hand, as
subprocesses against a real Prefect server of their own (nothing shared with the test session's API).

What must hold: a sandbox port already in use is one line naming the port and the option, exit 2; the written
configuration applies; `post` (dry run and real), `backfill` and `status` answer with tables that fit 100
columns without splitting an amount, a period, a batch or a company number, with JSON and CSV that parse and
nothing else on stdout, and exit statuses that follow the rows; a dry run prints its payload folder; on a
terminal the administrations done / total show on stderr while the flow runs, and never in JSON.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from deployment.harness import background, background_command, prefect_env, wait_for_ports, wait_healthy

from nmbrs_visma.sandbox.server import free_port
from tests.support import run_python

CLI = [sys.executable, "-m", "nmbrs_visma.cli"]
WIDTH = 100


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "NMBRS_VISMA_", "COLUMNS"))}
    env.update(extra or {})
    return env


# -- the port clash --------------------------------------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


@pytest.mark.parametrize("option", ["--visma-port", "--nmbrs-port"])
def test_a_sandbox_port_in_use_is_one_line_naming_the_port_and_the_option(option: str, busy_port: int) -> None:
    other = "--nmbrs-port" if option == "--visma-port" else "--visma-port"
    done = subprocess.run(
        [*CLI, "sandbox", option, str(busy_port), other, str(free_port())],
        env=_clean_env({"COLUMNS": "200"}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(busy_port) in lines[0] and option in lines[0] and "in use" in lines[0]
    assert "Traceback" not in done.stderr


def test_the_same_port_for_both_emulators_is_refused_in_one_line() -> None:
    port = str(free_port())
    done = subprocess.run(
        [*CLI, "sandbox", "--visma-port", port, "--nmbrs-port", port],
        env=_clean_env({"COLUMNS": "200"}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and port in done.stderr


# -- every command by hand ---------------------------------------------------------------------------------


@dataclass
class Terminal:
    """A user's shell: the environment the written configuration asks for, and a way to run a command."""

    env: dict[str, str]
    cwd: Path
    config: Path
    visma_url: str
    nmbrs_url: str

    def run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], env=self.env, cwd=self.cwd, capture_output=True, text=True, timeout=timeout, check=False
        )


def _exports(config: Path) -> dict[str, str]:
    """The `export NAME=value` lines the written file's header tells the user to run."""
    found = {}
    for line in config.read_text().splitlines():
        text = line.lstrip("# ").strip()
        if text.startswith("export "):
            name, _, value = text.removeprefix("export ").partition("=")
            found[name] = value
    return found


@pytest.fixture(scope="module")
def terminal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Terminal]:
    """A Prefect server of its own (a long-lived one, as the README sets up), `nmbrs-visma sandbox
    --write-config` running, the file applied and the Nmbrs account connected, all as a user would."""
    base = tmp_path_factory.mktemp("by-hand")
    api_port, visma_port, nmbrs_port = free_port(), free_port(), free_port()
    while len({api_port, visma_port, nmbrs_port}) < 3:
        nmbrs_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}/api"
    server_env = prefect_env(base / "prefect", None)
    config = base / "sandbox.yaml"
    with (
        background(
            ["server", "start", "--host", "127.0.0.1", "--port", str(api_port)], server_env, base, base / "server.log"
        ) as server,
        background_command(
            [
                *CLI,
                "sandbox",
                "--visma-port",
                str(visma_port),
                "--nmbrs-port",
                str(nmbrs_port),
                "--write-config",
                str(config),
            ],
            _clean_env(),
            base,
            base / "sandbox.log",
        ) as sandbox,
    ):
        wait_healthy(api_url, server, base / "server.log")
        wait_for_ports([visma_port, nmbrs_port], sandbox, base / "sandbox.log")
        deadline = time.monotonic() + 30
        while not config.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert config.exists(), (base / "sandbox.log").read_text()
        env = prefect_env(
            base / "prefect",
            api_url,
            {
                **{k: v for k, v in _clean_env().items() if not k.startswith("PREFECT_")},
                **_exports(config),
                "NMBRS_VISMA_LEDGER_URL": f"sqlite:///{base / 'ledger.db'}",
                "NMBRS_VISMA_OUTPUT_DIR": str(base / "output"),
                "COLUMNS": str(WIDTH),
                "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
            },
        )
        shell = Terminal(env, base, config, f"http://127.0.0.1:{visma_port}", f"http://127.0.0.1:{nmbrs_port}")
        applied = shell.run("config", "apply", str(config))
        assert applied.returncode == 0, applied.stdout + applied.stderr
        # `nmbrs-visma connect nmbrs`, with the browser's part done as the emulator answers a browser
        run_python("from nmbrs_visma.demo import connect_demo_nmbrs; connect_demo_nmbrs()", env=env, cwd=base)
        yield shell


def _table_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if not line.startswith("Payload files")]


def _assert_whole(out: str, rows: list[dict[str, Any]]) -> None:
    """Every company number, period, run, batch number and amount of `rows` is a whole word on some line of
    the table, and no line is wider than the console."""
    lines = _table_lines(out)
    assert all(len(line.rstrip()) <= WIDTH for line in lines), out
    words = [line.split() for line in lines]
    for row in rows:
        values = [str(row["company"]), row["period"], row["reference"], row["batch_number"] or ""]
        if row["lines"]:
            values.append(row["debit"])
        for value in filter(None, values):
            assert any(value in line for line in words), f"{value!r} split or missing:\n{out}"


def _json(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    try:
        return json.loads(done.stdout)  # nothing but the JSON on stdout
    except json.JSONDecodeError:
        pytest.fail(f"stdout is not JSON:\n{done.stdout}\n--- stderr:\n{done.stderr[-3000:]}")


pytestmark_slow = pytest.mark.slow


@pytestmark_slow
def test_the_written_configuration_points_at_the_running_sandbox(terminal: Terminal) -> None:
    data = yaml.safe_load(terminal.config.read_text())
    accounts = data["visma_net"]["accounts"]
    assert accounts and all(account["base_url"] == terminal.visma_url for account in accounts.values())
    assert data["nmbrs"]["accounts"]["default"]["token_url"] == f"{terminal.nmbrs_url}/connect/token"
    assert {company["nmbrs_company"] for company in data["companies"]} >= {1001, 1002, 1003, 1004, 1005, 1006, 2001}
    secrets = _exports(terminal.config)
    assert len(secrets) == 3 and all(name in json.dumps(data) for name in secrets)  # the settings name variables
    assert not any(value in json.dumps(data) for value in secrets.values())  # and hold no secret
    shown = terminal.run("config", "show")
    assert shown.returncode == 0 and "demo-1000001" in shown.stdout, shown.stderr


@pytestmark_slow
def test_a_dry_run_by_hand_fits_100_columns_and_prints_its_payload_folder(terminal: Terminal) -> None:
    table = terminal.run("post", "--period", "2026-03", "--dry-run")
    assert table.returncode == 1, table.stdout + table.stderr  # the blocked debtor 2001 is refused
    as_json = terminal.run("post", "--period", "2026-03", "--dry-run", "--format", "json")
    assert as_json.returncode == 1
    rows = _json(as_json)
    assert {row["status"] for row in rows} == {"dry run", "refused", "waiting", "skipped"}
    _assert_whole(table.stdout, rows)
    files = {Path(row["payload_file"]) for row in rows if row["payload_file"]}
    assert len({path.parent for path in files}) == 1 and all(path.is_file() for path in files)
    assert f"Payload files (nothing was sent): {next(iter(files)).parent}" in as_json.stderr  # beside JSON: stderr
    (line,) = [line for line in table.stdout.splitlines() if line.startswith("Payload files (nothing was sent): ")]
    folder = Path(line.split(": ", 1)[1])  # the table's own dry run: the same payloads, in a folder of its own
    assert sorted(path.name for path in folder.iterdir()) == sorted(path.name for path in files)
    for row in rows:
        if row["lines"]:
            assert Decimal(row["debit"]) == Decimal(row["credit"]) and row["debit"].split(".")[1].__len__() == 2


@pytestmark_slow
def test_post_then_status_by_payroll_period_booking_period_run_and_company(terminal: Terminal) -> None:
    posted = terminal.run("post", "--period", "2026-03", "--format", "json")
    assert posted.returncode == 1, posted.stderr[-3000:]
    rows = _json(posted)
    sent = [row for row in rows if row["status"] == "sent"]
    assert sent and all(row["batch_number"] for row in sent)

    status = terminal.run("status", "--period", "2026-03")
    assert status.returncode == 1, status.stdout + status.stderr  # it shows the refusal
    _assert_whole(status.stdout, rows)
    words = set(status.stdout.split())
    for name in ("Slapende", "Holding", "Testbedrijf", "Vierweken"):  # company names, the refused one included
        assert name in words, status.stdout
    for state in ("sent", "refused", "waiting", "skipped"):
        assert state in words

    booked = terminal.run("status", "--booked", "202601", "--format", "csv")
    assert booked.returncode == 0, booked.stderr
    parsed = list(csv.DictReader(io.StringIO(booked.stdout)))
    assert parsed and {row["period"] for row in parsed} == {"202601"}
    assert {row["company"] for row in parsed} == {"1003", "1006"}  # the March runs' January corrections
    assert all(row["reference"] == "NM2603R1" and row["status"] == "sent" for row in parsed)

    four_weekly = terminal.run("status", "--payroll-run", "NM2603R1", "-c", "1006", "--format", "json")
    assert four_weekly.returncode == 0
    found = _json(four_weekly)
    assert {row["company"] for row in found} == {1006} and {row["run_period"] for row in found} == {"2026/03"}
    assert sorted(row["batch_number"] for row in found) == sorted(
        row["batch_number"] for row in sent if row["company"] == 1006
    )
    refused = terminal.run("status", "-c", "2001", "--format", "json")
    (row,) = _json(refused)
    assert row["status"] == "refused" and row["company_name"] == "Slapende Holding BV" and "blocked" in row["reason"]
    assert refused.returncode == 1


@pytestmark_slow
def test_backfill_by_hand_answers_in_every_format(terminal: Terminal) -> None:
    first = terminal.run("backfill", "--from", "2026-01", "--to", "2026-02", "-c", "1001", "--format", "csv")
    assert first.returncode == 0, first.stderr[-3000:]
    parsed = list(csv.DictReader(io.StringIO(first.stdout)))
    assert [(row["period"], row["status"]) for row in parsed] == [("202601", "sent"), ("202602", "sent")]
    again = terminal.run("backfill", "--from", "2026-01", "--to", "2026-02", "-c", "1001")
    assert again.returncode == 0
    assert "already sent" in again.stdout
    _assert_whole(again.stdout, [{**row, "lines": int(row["lines"])} for row in parsed])


def _under_a_terminal(terminal: Terminal, *args: str) -> tuple[int, str, str]:
    """Run a command with stderr on a pseudo-terminal (stdout on a pipe); its exit status, stdout, and what the
    terminal showed."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [*CLI, *args], env=terminal.env, cwd=terminal.cwd, stdout=subprocess.PIPE, stderr=slave, text=True
    )
    os.close(slave)
    shown = b""
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            shown += chunk
        elif process.poll() is not None:
            break
    out = process.stdout.read() if process.stdout else ""
    os.close(master)
    return process.wait(60), out, shown.decode(errors="replace")


@pytestmark_slow
def test_on_a_terminal_the_administrations_done_show_while_the_flow_runs_and_never_with_json(
    terminal: Terminal,
) -> None:
    status, out, shown = _under_a_terminal(terminal, "post", "--period", "2026-02", "-c", "1002", "--dry-run")
    assert status == 0, shown[-3000:]
    assert "administrations" in shown and "1/1" in shown, shown[-3000:]
    assert "administrations" not in out and "Payroll journals 2026-02 (dry run)" in out
    status, out, shown = _under_a_terminal(
        terminal, "post", "--period", "2026-02", "-c", "1002", "--dry-run", "--format", "json"
    )
    assert status == 0 and "administrations" not in shown and json.loads(out)
