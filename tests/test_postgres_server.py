"""The PostgreSQL fixtures (tests/postgres.py, tests/conftest.py) give a real server the ledger tests can rely on:
SQL works, a stopped server refuses connections, data survives a restart, and advisory locks are per session."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from postgres import PostgresServer, StopMode

pytestmark = pytest.mark.slow


def _engine(url: str) -> sa.Engine:
    # NullPool: closing a connection really ends the PostgreSQL session (a pool would keep it, and its locks)
    return sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})


def test_create_insert_select(postgres_url: str) -> None:
    engine = _engine(postgres_url)
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == postgres_url.rsplit("/", 1)[1]
        conn.execute(sa.text("CREATE TABLE posting (id serial PRIMARY KEY, amount numeric(12, 2) NOT NULL)"))
        conn.execute(sa.text("INSERT INTO posting (amount) VALUES (12.50), (-3.25)"))
    with engine.connect() as conn:
        assert str(conn.execute(sa.text("SELECT sum(amount) FROM posting")).scalar_one()) == "9.25"
    engine.dispose()


def test_databases_are_fresh_per_test(postgres_url: str) -> None:
    with _engine(postgres_url).connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('posting')")).scalar_one() is None


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_stop_refuses_connections_and_start_keeps_data(
    postgres_server: PostgresServer, postgres_url: str, mode: StopMode
) -> None:
    engine = _engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE posting (id int PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO posting VALUES (1), (2)"))
    port = postgres_server.port
    try:
        postgres_server.stop(mode)
        assert not postgres_server.running
        with pytest.raises(sa.exc.OperationalError):
            engine.connect()
    finally:
        postgres_server.start()  # the session's server must stay up for the other tests
    assert postgres_server.port == port
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id FROM posting ORDER BY id")).scalars().all() == [1, 2]


def test_advisory_lock_blocks_other_sessions_until_its_connection_closes(postgres_url: str) -> None:
    engine = _engine(postgres_url)
    try_lock = sa.text("SELECT pg_try_advisory_lock(42)")
    holder = engine.connect()
    holder.execute(sa.text("SELECT pg_advisory_lock(42)"))
    with engine.connect() as other:
        assert other.execute(try_lock).scalar_one() is False
        holder.close()  # ends the session: PostgreSQL releases its session-level locks
        assert other.execute(try_lock).scalar_one() is True
