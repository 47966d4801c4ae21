"""Alerts as a payroll admin sets them up: a real `prefect server` (its triggers and actions services on), a custom
webhook notification block pointing at a local HTTP receiver, `nmbrs-visma alerts add`, and runs of the real flow
(`nmbrs-visma post`, in processes of their own, against the emulators). A run that ends FAILED sends exactly one
message naming what went wrong; a COMPLETED run of ours and a failed run of someone else's flow send none;
`alerts list` shows the alert and `alerts remove` removes it.

Automations are asynchronous (event -> triggers service -> actions service -> webhook): the receiver is polled
with a deadline, and "exactly one" is checked after a grace period in which a second message would have come.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from nmbrs_visma.sandbox.server import free_port
from tests.deployment.harness import background, prefect_env, wait_healthy
from tests.support import run_python

REPO = Path(__file__).resolve().parents[2]
BLOCK = "payroll-team"
CLI = [sys.executable, "-m", "nmbrs_visma.cli"]
FOREIGN_FLOW = """
from prefect import flow

@flow(name="someone-elses-flow")
def someone_elses_flow():
    raise RuntimeError("not ours: no alert")

someone_elses_flow(return_state=True)
"""
BROKEN_RUN = """
from nmbrs_visma.flows.post_payroll_journals import post_payroll_journals

post_payroll_journals(journal_file="no-such-journal.xml", companies=[1001], return_state=True)
"""
GRACE = 6.0  # seconds in which a second (wrong) message would have arrived: the services take milliseconds
DEADLINE = 60.0

pytestmark = pytest.mark.slow


@dataclass
class Receiver:
    """A tiny threaded HTTP server recording the JSON bodies posted to it (what the custom webhook block sends)."""

    url: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.messages)

    def wait_for(self, count: int, timeout: float = DEADLINE) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.seen()) >= count:
                return self.seen()
            time.sleep(0.25)
        raise AssertionError(f"{count} message(s) expected within {timeout:.0f}s, got {self.seen()}")

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.lock:
                receiver.messages.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class World:
    api_url: str
    ui_url: str
    env: dict[str, str]
    receiver: Receiver
    sandboxes: Any
    server_log: Path

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], env=self.env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
        )

    def python(self, code: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @contextmanager
    def client(self) -> Iterator[Any]:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.api_url}), get_client(sync_client=True) as client:
            yield client

    def runs_of(self, flow_name: str) -> dict[str, Any]:
        from prefect.client.schemas.filters import FlowFilter, FlowFilterName

        with self.client() as client:
            runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
        return {str(run.id): run for run in runs}

    def new_run(self, flow_name: str, before: dict[str, Any]) -> Any:
        (run,) = [run for run_id, run in self.runs_of(flow_name).items() if run_id not in before]
        return run


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A real Prefect server (triggers + actions services on; started as in the README, so it knows no UI address
    of its own: the links come from the profile that runs `alerts add`), the emulators with the demo configuration
    applied, a receiver and a custom webhook block `payroll-team` posting to it."""
    from nmbrs_visma.sandbox.serve import running_sandboxes

    tmp = tmp_path_factory.mktemp("alerts")
    port = free_port()
    api_url, ui_url = f"http://127.0.0.1:{port}/api", f"http://127.0.0.1:{port}"
    home, server_log = tmp / "prefect-home", tmp / "server.log"
    server_env = prefect_env(
        home,
        None,
        {
            "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "true",  # the reactive triggers and the actions services
            "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "true",
            # the triggers service imports this module; the harness's "memory" is no module, and stops it
            "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect.server.events.ordering.memory",
        },
    )
    env = prefect_env(
        home,
        api_url,
        {"NMBRS_VISMA_LEDGER_URL": f"sqlite:///{tmp / 'ledger.db'}", "NMBRS_VISMA_OUTPUT_DIR": str(tmp / "output")},
    )
    server_args = ["server", "start", "--host", "127.0.0.1", "--port", str(port)]
    try:
        with (
            background(server_args, server_env, REPO, server_log) as server,
            running_sandboxes() as sandboxes,
            receiving() as receiver,
        ):
            wait_healthy(api_url, server, server_log)
            setup = (
                "import sys\n"
                "from prefect.blocks.notifications import CustomWebhookNotificationBlock\n"
                "from nmbrs_visma.demo import configure_demo\n"
                "configure_demo(sys.argv[1], sys.argv[2])\n"
                "CustomWebhookNotificationBlock(name='payroll', url=sys.argv[3],\n"
                "    json_data={'subject': '{{subject}}', 'body': '{{body}}'}).save(sys.argv[4])\n"
            )
            run_python(setup, sandboxes.visma_url, sandboxes.nmbrs_url, receiver.url, BLOCK, env=env, cwd=REPO)
            yield World(api_url, ui_url, env, receiver, sandboxes, server_log)
    except BaseException:
        if server_log.exists():
            print(f"--- {server_log.name} ---\n{server_log.read_text(errors='replace')[-6000:]}")
        raise


def _alert_automations(world: World) -> list[Any]:
    from prefect.events.filters import AutomationFilter, AutomationFilterTags

    with world.client() as client:
        return client.read_automations(automations=AutomationFilter(tags=AutomationFilterTags(all_=["nmbrs-visma"])))


def test_add_is_idempotent_list_shows_it_and_only_our_failed_runs_notify(world: World) -> None:
    missing = world.cli("alerts", "add", "--block", "nobody-made-this")
    assert missing.returncode == 2, missing.stdout + missing.stderr
    (line,) = missing.stderr.strip().splitlines()  # one line, no traceback
    assert "no notification block named nobody-made-this" in line and "Prefect UI" in line
    assert "Error" not in line and "Traceback" not in missing.stderr

    added = world.cli("alerts", "add", "--block", BLOCK)
    assert added.returncode == 0, added.stdout + added.stderr
    assert "Added alert to custom-webhook/payroll-team" in added.stdout
    again = world.cli("alerts", "add", "--block", f"custom-webhook/{BLOCK}")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Already there" in again.stdout
    (automation,) = _alert_automations(world)
    assert automation.name == "nmbrs-visma alert: custom-webhook/payroll-team"

    listed = world.cli("alerts", "list", "--format", "json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    (alert,) = json.loads(listed.stdout)
    assert alert["block"] == "custom-webhook/payroll-team" and alert["state"] == "on"
    assert {"post-payroll-journals", "backfill-correction-periods"} <= set(alert["flows"])
    assert {"Failed", "Crashed"} <= set(alert["events"])

    # paused in the UI, and a second copy made by a racing `add`: adding again leaves one, enabled
    from prefect.events.schemas.automations import AutomationCore

    with world.client() as client:
        client.pause_automation(automation.id)
        client.create_automation(AutomationCore.model_validate(automation.model_dump(exclude={"id"})))
    assert len(_alert_automations(world)) == 2
    paused = json.loads(world.cli("alerts", "list", "--format", "json").stdout)
    assert sorted(alert["state"] for alert in paused) == ["on", "paused"]
    updated = world.cli("alerts", "add", "--block", BLOCK)
    assert updated.returncode == 0 and "Updated alert to custom-webhook/payroll-team" in updated.stdout, updated
    (automation,) = _alert_automations(world)
    assert automation.enabled

    table = world.cli("alerts", "list")
    assert table.returncode == 0, table.stdout + table.stderr
    assert all(word in table.stdout for word in ("payroll-team", "custom-webhook", "on", "post-payroll-journals"))

    # someone else's flow failing on the same server: no message
    foreign = world.python(FOREIGN_FLOW)
    assert foreign.returncode == 0, foreign.stdout + foreign.stderr
    assert "Failed" in foreign.stdout + foreign.stderr

    # one of ours completing: no message (company 1001's March is sent)
    before = world.runs_of("post-payroll-journals")
    sent = world.cli("post", "--period", "2026-03", "--company", "1001")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert world.new_run("post-payroll-journals", before).state.type.value == "COMPLETED"

    # one of ours failing (a journal file that is not there): one message, with the run's message and a link
    before = world.runs_of("post-payroll-journals")
    broken = world.python(BROKEN_RUN)
    assert broken.returncode == 0, broken.stdout + broken.stderr
    run = world.new_run("post-payroll-journals", before)
    assert run.state.type.value == "FAILED"
    (message,) = world.receiver.wait_for(1)
    time.sleep(GRACE)
    assert world.receiver.seen() == [message], "exactly one message, and none for the other runs"
    assert message["subject"] == f"nmbrs-visma: post-payroll-journals run {run.name} Failed"
    assert "no-such-journal.xml" in message["body"], message
    assert f"{world.ui_url}/runs/flow-run/{run.id}" in message["body"]
    world.receiver.clear()


def test_a_refused_company_sends_one_message_naming_it_and_remove_stops_it(world: World) -> None:
    assert world.cli("alerts", "add", "--block", BLOCK).returncode == 0
    world.receiver.clear()

    # company 2001 is a blocked debtor in the demo: refused, so the run ends FAILED with a message naming it
    before = world.runs_of("post-payroll-journals")
    refused = world.cli("post", "--period", "2026-03", "--company", "2001")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    run = world.new_run("post-payroll-journals", before)
    assert run.state.type.value == "FAILED", (
        f"a run with a refused company must end FAILED (#14 'States that alerts can use'); it ended "
        f"{run.state.type.value} with message {run.state.message!r}"
    )
    assert "2001" in str(run.state.message)
    (message,) = world.receiver.wait_for(1)
    time.sleep(GRACE)
    assert world.receiver.seen() == [message], "exactly one message per failed run"
    assert "2001" in message["body"] and "Failed" in message["subject"], message
    assert str(run.state.message) in message["body"]
    assert f"{world.ui_url}/runs/flow-run/{run.id}" in message["body"]

    removed = world.cli("alerts", "remove", "--block", BLOCK)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "Removed alert to custom-webhook/payroll-team" in removed.stdout
    assert _alert_automations(world) == []
    assert "No alerts" in world.cli("alerts", "list").stdout
    gone = world.cli("alerts", "remove", "--block", BLOCK)
    assert gone.returncode == 1 and "no alert sends to block payroll-team" in gone.stdout

    # an alert whose block was deleted since is shown as such; --all removes every alert of ours
    make = (
        "import sys; from prefect.blocks.notifications import CustomWebhookNotificationBlock as Hook; "
        "Hook(name='x', url=sys.argv[1], json_data={'body': '{{body}}'}).save('short-lived')"
    )
    made = world.python(make, world.receiver.url)
    assert made.returncode == 0, made.stdout + made.stderr
    assert world.cli("alerts", "add", "--block", "short-lived").returncode == 0
    assert world.cli("alerts", "add", "--block", BLOCK).returncode == 0
    with world.client() as client:
        client.delete_block_document(client.read_block_document_by_name("short-lived", "custom-webhook").id)
    states = {a["block"]: a["state"] for a in json.loads(world.cli("alerts", "list", "--format", "json").stdout)}
    assert states == {"custom-webhook/short-lived": "no block", "custom-webhook/payroll-team": "on"}
    every = world.cli("alerts", "remove", "--all")
    assert every.returncode == 0 and every.stdout.count("Removed alert to") == 2, every.stdout + every.stderr
    assert _alert_automations(world) == []

    # and with no alert, a failed run sends nothing
    world.receiver.clear()
    assert world.cli("post", "--period", "2026-03", "--company", "2001").returncode == 1
    time.sleep(GRACE)
    assert world.receiver.seen() == []
