"""The README's deployment steps, run as written on a fresh machine: the commands are read from the block of
README.md between `<!-- readme-steps` and `<!-- /readme-steps -->`, so the test runs exactly what a new user
is told to type (server, sandbox, configuration, connect, work pool, deploy, worker, a manual run with
parameters), then reads the run and its artifacts through the Prefect API.

How the block is played, as a person at four terminals would:
- a line whose comment says "keep it running" has a terminal of its own: it is started in the background (its
  own process group, stopped at the end) and waited for until the ports on its line listen (the Prefect server:
  until healthy; a `--write-config FILE`: until the file is there);
- every other line runs to completion in "terminal 3", one after another, through `bash -c`, and must exit 0;
  an `export NAME=VALUE` line there holds for the later lines of that terminal (not for the others');
- "in the checkout": the working folder is a temporary folder holding a link to each top-level entry of the
  repository, so what a step writes there (`sandbox.yaml`) stays out of the real checkout.

What the test changes, and only that:
- the port numbers 4200 (Prefect server), 8701 and 8702 (the emulators) become free ports chosen now, wherever
  they appear (so also in `PREFECT_API_URL=http://127.0.0.1:4200/api`). The login listener of `connect nmbrs`
  keeps 127.0.0.1:8765: it is the redirect URI the Nmbrs emulator has registered for its demo client (an exact
  match, as Nmbrs' identity server does), so the test asks for that port to be free and says so if it is not;
- the environment: a fresh, empty PREFECT_HOME (no profile, no PREFECT_API_URL: the README's own
  `prefect config set` is what points everything at the server), no NMBRS_VISMA_* variables, the virtual
  environment's bin first on PATH (the README's "virtual environment active"), analytics off, the worker asked
  to poll every second (PREFECT_WORKER_QUERY_SECONDS; the default is 10 s), and BROWSER set to a small script
  that opens the login URL as a browser would (follows the emulator's redirect to the listener), since there is
  no browser to open here.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from nmbrs_visma.sandbox.server import free_port
from tests.deployment.harness import background_command, wait_for_ports, wait_healthy

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"
BLOCK = re.compile(r"<!-- readme-steps\b.*?-->\s*```bash\n(?P<body>.*?)```\s*<!-- /readme-steps -->", re.DOTALL)
DOCUMENTED_PORTS = (4200, 8701, 8702)  # the Prefect server's, the Visma.net emulator's, the Nmbrs emulator's
CONNECT_LISTENER_PORT = 8765  # the Nmbrs emulator's registered redirect URI (sandbox/nmbrs/world.py)
KEEP_RUNNING = "keep it running"
BROWSER_SCRIPT = """#!{python}
# Stands in for the user's browser: opens the login URL and follows the redirects (the emulator approves the
# demo user at once and redirects to the `connect` listener on the loopback).
import sys

import httpx2

httpx2.get(sys.argv[1], follow_redirects=True, timeout=30)
"""


@dataclass(frozen=True)
class Step:
    line: str  # as the README has it
    command: str  # the line with the ports replaced
    background: bool
    ports: tuple[int, ...]  # the (replaced) ports on the line, which a background step must open

    @property
    def exports(self) -> dict[str, str] | None:
        """NAME -> VALUE of an `export` line, None for any other line."""
        words = shlex.split(self.command, comments=True)
        if not words or words[0] != "export":
            return None
        return dict(word.split("=", 1) for word in words[1:])

    @property
    def written_file(self) -> str | None:
        """The file a `--write-config FILE` on the line writes."""
        words = shlex.split(self.command, comments=True)
        return words[words.index("--write-config") + 1] if "--write-config" in words else None


def readme_steps(text: str, ports: dict[int, int]) -> list[Step]:
    """The commands of the README's marked block, in order, with the documented ports replaced by `ports`."""
    found = BLOCK.findall(text)
    assert len(found) == 1, "README.md must hold exactly one <!-- readme-steps --> block around a ```bash block"
    steps = []
    for line in found[0].replace("\\\n", " ").splitlines():  # a continued line is one command
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        command = re.sub(r"\b(\d{4})\b", lambda m: str(ports.get(int(m[1]), m[1])), line)
        on_line = tuple(new for old, new in ports.items() if re.search(rf"\b{old}\b", line))
        steps.append(Step(line, command, KEEP_RUNNING in line, on_line))
    return steps


def test_readme_steps_are_found_and_complete() -> None:
    """The block is there and holds every step the issue asks for, in an order that can work."""
    steps = readme_steps(README.read_text(encoding="utf-8"), {port: port for port in DOCUMENTED_PORTS})
    commands = [step.line for step in steps]

    def index(fragment: str) -> int:
        matches = [i for i, command in enumerate(commands) if fragment in command]
        assert matches, f"no README step with {fragment!r}: {commands}"
        return matches[0]

    server, sandbox = index("prefect server start"), index("nmbrs-visma sandbox")
    config, apply = index("prefect config set PREFECT_API_URL="), index("nmbrs-visma config apply")
    pool, deploy = index("prefect work-pool create nmbrs-visma"), index("prefect --no-prompt deploy --all")
    worker, run = index("prefect worker start --pool nmbrs-visma"), index("prefect deployment run")
    assert server < config < apply < index("nmbrs-visma connect nmbrs") < run
    assert sandbox < apply and config < pool < deploy < run and config < worker < run
    assert {i for i, step in enumerate(steps) if step.background} == {server, sandbox, worker}
    assert "--param" in commands[run] and "--watch" in commands[run] and "dry_run=false" in commands[run]


def _checkout(folder: Path) -> Path:
    """A working folder that looks like the checkout (a link per top-level entry) but keeps what steps write."""
    folder.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in {".git", "sandbox.yaml"}:
            (folder / entry.name).symlink_to(entry)
    return folder


def _environment(home: Path, browser: Path) -> dict[str, str]:
    """A new user's terminal: no Prefect or nmbrs-visma variable but a fresh home; see the module's docstring."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "NMBRS_VISMA_"))}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="1",
        PYTHONUNBUFFERED="1",
        BROWSER=str(browser),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return env


def _deployment_names() -> set[str]:
    import yaml

    return {deployment["name"] for deployment in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}


def _wait_port_free(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"127.0.0.1:{port} is in use: `nmbrs-visma connect nmbrs` listens there (the Nmbrs "
                        "emulator's registered redirect URI); stop what holds it and run the test again"
                    ) from None
        time.sleep(0.5)


def _wait_file(path: Path, process: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{path} was not written:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_the_readme_deployment_steps_run_a_manual_deployment_on_a_fresh_machine(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from nmbrs_visma.tasks.report import status_artifact_key

    ports = {port: free_port() for port in DOCUMENTED_PORTS}
    api_url = f"http://127.0.0.1:{ports[4200]}/api"
    home = tmp_path / "prefect-home"
    browser = tmp_path / "browser"
    browser.write_text(BROWSER_SCRIPT.format(python=sys.executable))
    browser.chmod(0o755)
    checkout = _checkout(tmp_path / "checkout")
    base_env = _environment(home, browser)
    terminal = dict(base_env)  # "terminal 3": the exports of its earlier lines hold for its later ones
    steps = readme_steps(README.read_text(encoding="utf-8"), ports)
    logs: list[Path] = []
    outputs: dict[str, str] = {}
    try:
        with ExitStack() as running:
            for number, step in enumerate(steps, start=1):
                log = tmp_path / f"step-{number:02d}.log"
                logs.append(log)
                if step.background:
                    argv = ["bash", "-c", step.command]
                    process = running.enter_context(background_command(argv, base_env, checkout, log))
                    if "prefect server start" in step.command:
                        wait_healthy(api_url, process, log)
                    wait_for_ports(list(step.ports), process, log)
                    if step.written_file:
                        _wait_file(checkout / step.written_file, process, log)
                    continue
                if (exports := step.exports) is not None:
                    terminal.update(exports)
                    continue
                if "nmbrs-visma connect" in step.command:
                    _wait_port_free(CONNECT_LISTENER_PORT)
                done = subprocess.run(
                    ["bash", "-c", step.command],
                    env=terminal,
                    cwd=checkout,
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=False,
                )
                output = done.stdout + done.stderr
                log.write_text(f"$ {step.command}\n{output}")
                assert done.returncode == 0, f"README step failed ({done.returncode}): {step.line}\n{output}"
                outputs[step.line] = output
            (run_step,) = [step for step in steps if "prefect deployment run" in step.line]
            assert "Flow run finished successfully" in outputs[run_step.line], outputs[run_step.line]
            (connect_step,) = [step for step in steps if "nmbrs-visma connect nmbrs" in step.line]
            assert "Connected" in outputs[connect_step.line], outputs[connect_step.line]

            profile = (home / "profiles.toml").read_text()
            assert api_url in profile, "`prefect config set` did not write the server's URL to the profile"

            with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
                manual = client.read_deployment_by_name("post-payroll-journals/manual")
                deployments = {deployment.name for deployment in client.read_deployments()}
                assert deployments == _deployment_names()
                runs = [flow_run for flow_run in client.read_flow_runs() if flow_run.deployment_id == manual.id]
                assert len(runs) == 1, runs
                (run,) = runs
                assert run.state is not None and run.state.type.value == "COMPLETED", run.state
                assert run.parameters == {"period": "2026-03", "companies": [1001], "dry_run": False}

                artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
                tables = [artifact for artifact in artifacts if artifact.type == "table"]
                assert len(tables) == 1, [(artifact.key, artifact.type) for artifact in artifacts]
                table = str(tables[0].data)
                assert "1001" in table and "sent" in table, table
                keys = {artifact.key for artifact in artifacts}
                assert status_artifact_key("1000001/1/L", "2026-03", False) in keys, keys
    except BaseException:
        for log in logs:
            if log.exists():
                print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-5000:]}")
        raise
