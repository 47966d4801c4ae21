"""Flow tests: one Prefect test harness per session, both emulators over real HTTP, the demo config applied.

Each test gets fresh emulators (fresh ledgers), a fresh posting record and output folder, and the demo
configuration re-applied against the new emulator URLs, so tests never see each other's postings.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nmbrs_visma.sandbox.demo_data import COMPANIES, TENANTS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NMBRS_VISMA_RECORD_DIR", str(tmp_path / "postings"))
    monkeypatch.setenv("NMBRS_VISMA_OUTPUT_DIR", str(tmp_path / "output"))
    return tmp_path


@pytest.fixture
def sandboxes(prefect_api: None, workspace: Path) -> Iterator[object]:
    from nmbrs_visma.demo import configure_demo
    from nmbrs_visma.sandbox.serve import running_sandboxes

    with running_sandboxes() as running:
        configure_demo(running.visma_url, running.nmbrs_url)
        yield running


def booked(sandboxes: object, tenant_id: str | None = None) -> list[object]:
    """Every journal transaction the Visma.net emulator holds (optionally of one tenant)."""
    world = sandboxes.visma_world  # type: ignore[attr-defined]
    tenants = [tenant_id] if tenant_id else [tenant.tenant_id for tenant in TENANTS]
    return [transaction for tenant in tenants for transaction in world.transactions(tenant)]


def demo_company(number: int) -> object:
    return next(c for c in COMPANIES if c.number == number)


@pytest.fixture
def ledger() -> object:
    """`ledger(sandboxes, tenant_id=None)`: the emulator's journal transactions."""
    return booked


@pytest.fixture
def company() -> object:
    """`company(number)`: the demo company."""
    return demo_company
