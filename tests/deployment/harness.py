"""A real Prefect server and process worker as subprocesses, for the deployment test; always torn down.

Each runs in its own process group (so its children, e.g. the worker's flow-run processes, go with it),
logs to a file the test prints on failure, and is stopped with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx2

from tests.support import run_python

PREFECT = [sys.executable, "-m", "prefect"]


def prefect_env(home: Path, api_url: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a Prefect subprocess: its own home, no analytics, no UI, quick task recording."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE="200",
        PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE="200",
        PREFECT_SERVER_EVENTS_CAUSAL_ORDERING="prefect.server.events.ordering.memory",
        PYTHONUNBUFFERED="1",
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env.update(extra or {})
    return env


def worker_env(home: Path, api_url: str, workspace: Path) -> dict[str, str]:
    """A process worker's environment: quick polling, and its posting ledger and output folder in `workspace`."""
    return prefect_env(
        home,
        api_url,
        {
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            "NMBRS_VISMA_LEDGER_URL": f"sqlite:///{workspace / 'ledger.db'}",
            "NMBRS_VISMA_OUTPUT_DIR": str(workspace / "output"),
        },
    )


def run_prefect(args: list[str], env: Mapping[str, str], cwd: Path, timeout: float = 120) -> str:
    """Run a `prefect` CLI command to completion; its output, or an AssertionError carrying it."""
    done = subprocess.run(
        [*PREFECT, *args], env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"prefect {' '.join(args)} failed ({done.returncode}):\n{output}"
    return output


@contextmanager
def background(args: list[str], env: Mapping[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A long-running `prefect` subprocess in its own process group, stopped (group and all) on exit."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*PREFECT, *args], env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(grace)
    except ProcessLookupError:
        pass


def wait_healthy(api_url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"prefect server exited ({process.returncode}):\n{log.read_text(errors='replace')}")
        try:
            if httpx2.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"prefect server not healthy after {timeout:.0f}s:\n{log.read_text(errors='replace')}")


# -- additions for the README-steps and browser tests ---------------------------------------------------------

TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


def wait_for_ports(ports: list[int], process: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    """Wait until every loopback port accepts connections (or the process that should listen on them exits)."""
    import socket

    deadline = time.monotonic() + timeout
    waiting = list(ports)
    while waiting and time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args} exited ({process.returncode}):\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", waiting[0]), timeout=1):
                waiting.pop(0)
        except OSError:
            time.sleep(0.25)
    if waiting:
        raise AssertionError(f"ports {waiting} not listening after {timeout:.0f}s:\n{log.read_text(errors='replace')}")


def wait_for_flow_run(client: object, run_id: object, timeout: float, poll: float = 0.5) -> object:
    """The flow run once it is in a terminal state, read with a sync Prefect client; an AssertionError if not
    within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(run_id)  # type: ignore[attr-defined]
        if run.state is not None and run.state.type.value in TERMINAL_STATES:
            return run
        time.sleep(poll)
    raise AssertionError(f"flow run {run_id} did not finish in {timeout:.0f}s")


@contextmanager
def background_command(
    argv: list[str], env: Mapping[str, str], cwd: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Like `background`, for any command (e.g. `bash -c LINE`): its own process group, stopped on exit."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            stop(process)


def configure_demo_in_child(visma_url: str, nmbrs_url: str, env: Mapping[str, str], cwd: Path) -> None:
    """Apply the demo configuration against `env`'s Prefect API, in a process of its own: Prefect's in-process
    services stay bound to the first API they talk to, so the test process must not be the one to write."""
    code = "import sys; from nmbrs_visma.demo import configure_demo; configure_demo(*sys.argv[1:])"
    run_python(code, visma_url, nmbrs_url, env=dict(env), cwd=cwd, timeout=180)
