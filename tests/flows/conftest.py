"""Flow tests: one Prefect test harness per session, both emulators over real HTTP, the demo config applied.

Each test gets fresh emulators (fresh ledgers), a fresh posting ledger and output folder, and the demo
configuration re-applied against the new emulator URLs, so tests never see each other's postings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nmbrs_visma.sandbox.demo_data import TENANTS
from tests.support import demo_company

pytestmark = pytest.mark.slow


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NMBRS_VISMA_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("NMBRS_VISMA_OUTPUT_DIR", str(tmp_path / "output"))
    return tmp_path


class Recorder:
    """ASGI wrapper that notes every (method, path) the emulator is asked, so tests can count API calls."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.calls.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


@dataclass
class Emulators:
    visma_world: Any
    nmbrs_world: Any
    visma_calls: list[tuple[str, str]]
    visma_url: str
    nmbrs_url: str


@pytest.fixture(scope="session")
def emulators(prefect_api: str) -> Iterator[Emulators]:
    """Both emulators (demo world) on free loopback ports, the demo configuration applied once against them."""
    from nmbrs_visma.demo import configure_demo
    from nmbrs_visma.sandbox.nmbrs import NmbrsWorld
    from nmbrs_visma.sandbox.nmbrs import create_app as create_nmbrs_app
    from nmbrs_visma.sandbox.server import serving
    from nmbrs_visma.sandbox.visma_net import VismaWorld
    from nmbrs_visma.sandbox.visma_net import create_app as create_visma_app

    visma_world, nmbrs_world = VismaWorld().seed_demo(), NmbrsWorld().seed_demo()
    nmbrs_world.document_polls = 0  # documents ready at once: the 202 polling has its own client tests
    visma_app = Recorder(create_visma_app(visma_world))
    with serving(visma_app) as visma, serving(create_nmbrs_app(nmbrs_world)) as nmbrs:
        configure_demo(visma.url, nmbrs.url)
        yield Emulators(visma_world, nmbrs_world, visma_app.calls, visma.url, nmbrs.url)


@pytest.fixture
def sandboxes(emulators: Emulators, workspace: Path) -> Emulators:
    """The emulators with an empty ledger, no faults armed and no calls noted; a fresh posting record."""
    with emulators.visma_world.lock:
        for tenant in emulators.visma_world.tenants.values():
            tenant.batches.clear()
    emulators.visma_world.faults.lose_next_creates = 0
    emulators.visma_calls.clear()
    return emulators


def booked(sandboxes: object, tenant_id: str | None = None) -> list[object]:
    """Every journal transaction the Visma.net emulator holds (optionally of one tenant)."""
    world = sandboxes.visma_world  # type: ignore[attr-defined]
    tenants = [tenant_id] if tenant_id else [tenant.tenant_id for tenant in TENANTS]
    return [transaction for tenant in tenants for transaction in world.transactions(tenant)]


@pytest.fixture
def ledger() -> object:
    """`ledger(sandboxes, tenant_id=None)`: the emulator's journal transactions."""
    return booked


@pytest.fixture
def company() -> object:
    """`company(number)`: the demo company."""
    return demo_company
