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
def client_timeout(sandboxes: object) -> Callable[[float], None]:
    """`client_timeout(seconds)`: every Visma.net account block waits `seconds` for an answer (its
    `timeout_seconds`, saved as a user sets it in the block form; the default is 30 s, and a spike test would
    otherwise take minutes). The flow's clients read it from the blocks."""
    from nmbrs_visma.blocks.listing import read_named_blocks
    from nmbrs_visma.blocks.visma_net import VismaNetAccount

    def set_timeout(seconds: float) -> None:
        accounts = read_named_blocks(VismaNetAccount, include_secrets=True)
        assert accounts, "the demo configuration has no Visma.net account"
        for name, account in accounts:
            account.timeout_seconds = seconds
            account.save(name, overwrite=True, _sync=True)
        assert all(account.timeout_seconds == seconds for _, account in read_named_blocks(VismaNetAccount))

    return set_timeout
