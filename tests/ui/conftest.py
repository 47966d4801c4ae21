"""The Prefect UI as a payroll admin sees it: a real `prefect server` (UI on), the project deployed, a process
worker, both emulators with the demo configuration, and a headless Chromium (Debian's, driven by Playwright
through `executable_path`: no browser download) pointed at it.

The stack starts once per test module (a server takes ~20 s); each test gets a fresh browser page.
Screenshots go to a temporary folder, or to `NMBRS_VISMA_SCREENSHOTS` when set (`docs/screenshots/take.py`
sets it to refresh the committed ones).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from nmbrs_visma.sandbox.server import free_port
from tests.deployment.harness import background, configure_demo_in_child, prefect_env, run_prefect, wait_healthy
from tests.deployment.harness import worker_env as worker_env_of

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from nmbrs_visma.sandbox.serve import Sandboxes

REPO = Path(__file__).resolve().parents[2]
POOL = "nmbrs-visma"
SCREENSHOTS_ENV = "NMBRS_VISMA_SCREENSHOTS"
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")
# As the machine's notes advise for a closed network: no background traffic, no sandbox (root), no GPU.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing(reason: str) -> None:
    """A missing browser: an error in CI (.ci/run installs it), a plain skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(reason + " (CI is set, so this is an error)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium (`apt-get install chromium`)."""
    for name in CHROMIUM_CANDIDATES:
        if found := shutil.which(name):
            return found
    _missing("the browser tests need Debian's chromium (apt-get install -y chromium)")
    raise AssertionError  # unreachable: _missing fails or skips


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the browser tests need the playwright package (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    context.set_default_timeout(30_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests write their screenshots."""
    if configured := os.environ.get(SCREENSHOTS_ENV):
        folder = Path(configured).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("screenshots")


@dataclass
class UiStack:
    """The running stack: the UI's address, the API's, the emulators and the deployments by name."""

    ui_url: str
    api_url: str
    sandboxes: Sandboxes
    deployments: dict[str, Any]
    logs: list[Path]

    def client(self) -> Any:
        """A sync Prefect client of this server (use as a context manager)."""
        from prefect.client.orchestration import get_client

        return get_client(sync_client=True)

    def print_logs(self) -> None:
        for log in self.logs:
            if log.exists():
                print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-6000:]}")


@pytest.fixture(scope="module")
def ui_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiStack]:
    """Server (UI on), emulators, demo configuration, work pool, every deployment, a worker; torn down after."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from nmbrs_visma.sandbox.serve import running_sandboxes

    tmp = tmp_path_factory.mktemp("ui-stack")
    port = free_port()
    ui_url = f"http://127.0.0.1:{port}"
    api_url = f"{ui_url}/api"
    home = tmp / "prefect-home"
    server_log, worker_log = tmp / "server.log", tmp / "worker.log"
    worker_dir = tmp / "worker"
    worker_dir.mkdir()
    server_env = prefect_env(
        home,
        None,
        {
            "PREFECT_UI_ENABLED": "true",
            "PREFECT_UI_API_URL": api_url,  # the UI's own idea of the API (it defaults to port 4200)
        },
    )
    client_env = prefect_env(home, api_url)
    worker_env = worker_env_of(home, api_url, tmp)
    server_args = ["server", "start", "--host", "127.0.0.1", "--port", str(port)]
    stack: UiStack | None = None
    with ExitStack() as running:
        try:
            server = running.enter_context(background(server_args, server_env, REPO, server_log))
            sandboxes = running.enter_context(running_sandboxes())
            wait_healthy(api_url, server, server_log)
            run_prefect(["work-pool", "create", POOL, "--type", "process"], client_env, REPO)
            run_prefect(
                ["--no-prompt", "deploy", "--all", "--prefect-file", str(REPO / "deployments" / "prefect.yaml")],
                client_env,
                REPO,
            )
            # in a process of its own, as in tests/deployment: Prefect's in-process services stay bound to the
            # first API they talk to
            configure_demo_in_child(sandboxes.visma_url, sandboxes.nmbrs_url, client_env, REPO)
            worker_args = ["worker", "start", "--pool", POOL, "--type", "process", "--limit", "2"]
            running.enter_context(background(worker_args, worker_env, worker_dir, worker_log))
            running.enter_context(temporary_settings(updates={PREFECT_API_URL: api_url}))
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as client:
                deployments = {deployment.name: deployment for deployment in client.read_deployments()}
            stack = UiStack(ui_url, api_url, sandboxes, deployments, [server_log, worker_log])
            yield stack
        except BaseException:
            for log in (server_log, worker_log):
                if log.exists():
                    print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-6000:]}")
            raise
