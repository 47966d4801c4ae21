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
