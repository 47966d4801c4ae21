"""Fault tests: the session's Prefect API (`prefect_api` in tests/conftest.py), both emulators over real HTTP,
the demo config applied.

Each test gets fresh emulators (fresh ledgers, fresh fault switches), a fresh posting ledger and output
folder, and the demo configuration re-applied against the new emulator URLs. Waits are kept short by the
worlds' settings (one-second rate windows and `Retry-After`, short token lifetimes, short client time-outs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NMBRS_VISMA_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("NMBRS_VISMA_OUTPUT_DIR", str(tmp_path / "output"))
    monkeypatch.setenv("NMBRS_VISMA_LOCK_TIMEOUT", "120")
    return tmp_path


@pytest.fixture
def sandboxes(prefect_api: str, workspace: Path) -> Iterator[object]:
    from nmbrs_visma.demo import configure_demo
    from nmbrs_visma.sandbox.serve import running_sandboxes

    with running_sandboxes() as running:
        running.nmbrs_world.document_polls = 0  # documents ready at once: no one-second polls in these tests
        configure_demo(running.visma_url, running.nmbrs_url)
        try:
            yield running
        finally:
            from .support import release_administration_locks

            release_administration_locks()  # a killed child's lock would hold its lease into the next test


@pytest.fixture
def client_timeout(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """`client_timeout(seconds)`: the Visma.net clients the flow builds give up on an answer after `seconds`
    (the product's default is 30 s; a spike test would otherwise take minutes)."""
    from nmbrs_visma.blocks.visma_net import VismaNetAccount

    original = VismaNetAccount.get_client

    def set_timeout(seconds: float) -> None:
        def get_client(self: VismaNetAccount, *, timeout: float = seconds) -> object:
            return original(self, timeout=timeout)

        monkeypatch.setattr(VismaNetAccount, "get_client", get_client)

    return set_timeout
