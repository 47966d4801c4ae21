"""Test-session settings shared by every test folder.

Prefect reads its settings at import, so PREFECT_HOME and friends are set here, before any test module
imports Prefect: every test session gets its own throwaway Prefect home and never touches ~/.prefect.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_PREFECT_HOME = tempfile.mkdtemp(prefix="nmbrs-visma-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE", "200")
os.environ.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE", "200")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """../shared/reference (the published API specs). Present in CI; a plain skip elsewhere, with the reason."""
    if not REFERENCE_DIR.is_dir():
        message = (
            f"contract test needs the published API specs in {REFERENCE_DIR}; they sit beside the checkout "
            "in CI and in a development workspace, not in a user's clone"
        )
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this is an error)")
        pytest.skip(message)
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One throwaway Prefect API (temporary SQLite) for the whole test session; yields its URL.

    One per session, not one per folder: the server takes ~20 s to start, and Prefect's in-process services
    (e.g. the concurrency-slot service behind the token locks) stay bound to the first API they talk to.
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield str(PREFECT_API_URL.value())


from typing import TYPE_CHECKING, NoReturn  # noqa: E402  (appended section: PostgreSQL fixtures)

if TYPE_CHECKING:  # the helper module is imported by the fixtures, when first used
    from postgres import PostgresServer


def _postgres_unavailable(reason: str) -> NoReturn:
    """Missing PostgreSQL binaries: an error in CI (the tests must run there), a plain skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(reason + " (CI is set, so this is an error)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server (tests/postgres.py) for the whole session; stopped and deleted at the end.

    Tests may stop and start it (same port and data), but must leave it running."""
    from postgres import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        _postgres_unavailable(str(exc))
    with server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database per test on the session's server; yields its SQLAlchemy URL, dropped afterwards."""
    import re
    import uuid

    name = f"t_{re.sub(r'[^a-z0-9_]+', '_', request.node.name.lower())[:40]}_{uuid.uuid4().hex[:8]}"
    yield postgres_server.create_database(name)
    if postgres_server.running:
        postgres_server.drop_database(name)


# -- ledger databases, for test_posting_ledger.py and test_status.py -----------------------------------------


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.slow),
    ]
)
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty ledger database on each backend, distinct per test; its cached engine is dropped after."""
    from tests.support import dispose_engine

    url = (
        f"sqlite:///{tmp_path / 'ledger.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    )
    yield url
    dispose_engine(url)


# -- the emulators, for the client and sandbox tests (and a few others); their helpers are in tests/support.py ----
# Imported when first used: a folder that needs no emulator does not pay for FastAPI and uvicorn.

if TYPE_CHECKING:
    from nmbrs_visma.clients.nmbrs import NmbrsAuth, NmbrsClient
    from nmbrs_visma.sandbox.nmbrs import NmbrsWorld
    from nmbrs_visma.sandbox.server import RunningServer
    from tests.support import Sandbox, Sleeps, TokenLog


@pytest.fixture
def world() -> NmbrsWorld:
    """A fresh Nmbrs demo world per test (a module may override it, e.g. with `support.periodic_world()`)."""
    from nmbrs_visma.sandbox.nmbrs import NmbrsWorld

    return NmbrsWorld().seed_demo()


@pytest.fixture
def server(world: NmbrsWorld) -> Iterator[RunningServer]:
    """The Nmbrs emulator serving `world` over real HTTP (uvicorn, a free loopback port)."""
    from nmbrs_visma.sandbox.nmbrs import create_app
    from nmbrs_visma.sandbox.server import serving

    with serving(create_app(world)) as running:
        yield running


@pytest.fixture
def tokens() -> TokenLog:
    """Every token pair the `auth` fixture's client is handed."""
    from tests.support import TokenLog

    return TokenLog()


@pytest.fixture
def auth(server: RunningServer, tokens: TokenLog) -> Iterator[NmbrsAuth]:
    """The emulator's demo client, connected."""
    from tests.support import connect, make_auth

    auth = make_auth(server, tokens)
    connect(auth)
    yield auth
    auth.close()


@pytest.fixture
def sleeps() -> Sleeps:
    """Waits recorded instead of slept (pass it as a client's `sleep`)."""
    from tests.support import Sleeps

    return Sleeps()


@pytest.fixture
def client(server: RunningServer, auth: NmbrsAuth) -> Iterator[NmbrsClient]:
    """An `NmbrsClient` of the emulator, authorised, retrying and polling in milliseconds."""
    from tests.support import make_client

    with make_client(server, auth) as client:
        yield client


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """One Visma.net emulator (demo world) per test module; `clean_world` resets it around each test."""
    from tests.support import Sandbox

    with Sandbox.running() as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def clean_world(request: pytest.FixtureRequest) -> Iterator[None]:
    """Around each test that uses `sandbox`: no fault armed, settings put back after (`Sandbox.clean`)."""
    if "sandbox" not in request.fixturenames:
        yield
        return
    with request.getfixturevalue("sandbox").clean():
        yield
