"""The posting ledger: one SQL table of every posting's intent and outcome, shared by every worker.

Why: Prefect's task cache is written only after success, and retries re-run side effects, so neither can stop
a second journal transaction. This table can: a row per (posting key, content fingerprint) says what was
attempted (`intent`, written just before the create), what is known (`sent` with its batch number, `rejected`,
`lost`), who wrote it and when. Every worker that points at the same database sees every other's intents.

Where: `Settings.ledger_url` (`NMBRS_VISMA_LEDGER_URL`, a SQLAlchemy URL; `postgresql://...` for workers on
several machines), by default an embedded SQLite file in the Prefect home (`$PREFECT_HOME/nmbrs-visma/ledger.db`):
nothing to set up. A flow run builds its ledger with `PostingLedger.from_settings(settings)`.

Mutual exclusion per key (`holding`), held from the look-up to the last outcome: on PostgreSQL, session
advisory locks on the connection that reads and writes the keys' rows (the server drops them the moment that
connection or its worker dies); on SQLite, which is one machine's database, kernel `flock`s beside the file
(posting_lock.py), released the moment their holder dies. The Prefect server's lock per administration
(tasks/posting.py) comes on top, for workers that share nothing else.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import os
import random
import re
import socket
import sqlite3
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from nmbrs_visma.journals.models import PayrollRun
from nmbrs_visma.journals.money import from_cents, to_cents
from nmbrs_visma.posting_lock import FlockLockManager
from nmbrs_visma.settings import Settings

logger = logging.getLogger(__name__)


PostingKind = Literal["journal", "reversal"]


class PostingState(StrEnum):
    INTENT = "intent"  # a create is about to be (or was) sent; its outcome is not known
    SENT = "sent"  # Visma.net holds the transaction (created by us, or found by its marker)
    REJECTED = "rejected"  # Visma.net answered with a definite refusal: nothing was created
    LOST = "lost"  # an intent whose transaction never showed in Visma.net within the settle time
    REVERSED = "reversed"  # sent, then undone by a reversal (its own row, under its own key)


class PostingEntry(BaseModel):
    """One row of the ledger: one posting key's content, what happened to it, who wrote it and when."""

    model_config = ConfigDict(frozen=True)

    key: str
    fingerprint: str
    kind: PostingKind = "journal"
    state: PostingState
    company: int
    reference: str = Field(description="the run's reference (referenceNumber)")
    payroll_period: str = Field(description="YYYYPP the lines belong to")
    period_id: str = Field(description="YYYYPP the transaction is booked in")
    administration: str = Field(description="tenant/branch/ledger")
    lines: int
    debit: Decimal
    credit: Decimal
    batch_number: str | None = None
    released: bool = False
    reverses: str | None = Field(default=None, description="the batch a reversal reverses")
    message: str = ""
    holder: str = ""
    flow_run_id: str | None = None
    updated_at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))


class CompletedRun(BaseModel):
    """A payroll run whose every journal transaction is booked: the run-driven pass need not read it again."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    company: int
    year: int
    period_end: int
    period_type: str = Field(description="the company's period type when the run was posted (month, 4-weeks, 1-week)")
    reference: str
    transactions: int
    flow_run_id: str | None = None

    @classmethod
    def of(cls, run: PayrollRun, transactions: int, flow_run_id: str | None = None) -> CompletedRun:
        return cls(
            run_id=run.run_id,
            company=run.company_number,
            year=run.year,
            period_end=run.period_end,
            period_type=run.period_type.value,
            reference=run.reference,
            transactions=transactions,
            flow_run_id=flow_run_id,
        )


class RunOutcome(BaseModel):
    """The latest outcome of a run in one administration and period, as the last pass that saw the run reported
    it (sent, already sent, refused, failed, waiting, ...), for `nmbrs-visma status`. A company-level row (the
    company unmapped, its runs unreadable) has no reference."""

    model_config = ConfigDict(frozen=True)

    company: int
    company_name: str = ""
    reference: str = Field(default="", description="the run's reference; empty for a company-level row")
    administration: str = ""
    period: str = Field(default="", description="the row's period: YYYYPP booked in, or the run's payroll period")
    run_period: str = Field(default="", description="the run's payroll period as written: 2026-03, 2026/13")
    run_month: str = Field(default="", description="YYYY-MM its last payroll period ends in; empty when unknown")
    booked_period: str = Field(default="", description="YYYYPP a transaction is booked in; empty for a refusal")
    status: str
    reason: str = ""
    codes: tuple[str, ...] = ()
    lines: int = 0
    debit: Decimal = Decimal("0.00")
    credit: Decimal = Decimal("0.00")
    batch_number: str | None = None
    flow_run_id: str | None = None
    recorded_at: dt.datetime | None = None


class LedgerUnavailable(RuntimeError):
    """The posting ledger could not be read or written; nothing was decided or sent on it."""


class LockTimeout(RuntimeError):
    """Another run held a posting key longer than the lock timeout; nothing was decided for that key."""


_metadata = sa.MetaData()
POSTINGS = sa.Table(
    "nmbrs_visma_postings",
    _metadata,
    sa.Column("key", sa.String(32), primary_key=True),
    sa.Column("fingerprint", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("company", sa.BigInteger, nullable=False),
    sa.Column("reference", sa.String(64), nullable=False),
    sa.Column("payroll_period", sa.String(6), nullable=False),
    sa.Column("period_id", sa.String(6), nullable=False),
    sa.Column("administration", sa.String(255), nullable=False),
    sa.Column("lines", sa.Integer, nullable=False),
    sa.Column("debit_cents", sa.BigInteger, nullable=False),
    sa.Column("credit_cents", sa.BigInteger, nullable=False),
    sa.Column("batch_number", sa.String(64)),
    sa.Column("released", sa.Boolean, nullable=False),
    sa.Column("reverses", sa.String(64)),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_nmbrs_visma_postings_company_period", "company", "payroll_period"),
)
RUNS = sa.Table(
    "nmbrs_visma_completed_runs",
    _metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("company", sa.BigInteger, nullable=False, index=True),
    sa.Column("year", sa.Integer, nullable=False),
    sa.Column("period_end", sa.Integer, nullable=False),
    sa.Column("period_type", sa.String(16), nullable=False),
    sa.Column("reference", sa.String(64), nullable=False),
    sa.Column("transactions", sa.Integer, nullable=False),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
)
OUTCOMES = sa.Table(  # the latest outcome per (company, run reference, administration, period): `RunOutcome`
    "nmbrs_visma_run_outcomes",
    _metadata,
    sa.Column("company", sa.BigInteger, primary_key=True),
    sa.Column("reference", sa.String(64), primary_key=True),
    sa.Column("administration", sa.String(255), primary_key=True),
    sa.Column("period", sa.String(16), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),  # rows of one key in one pass (a reversal and its new posting)
    sa.Column("company_name", sa.String(255), nullable=False),
    sa.Column("run_period", sa.String(16), nullable=False),
    sa.Column("run_year", sa.Integer),  # of run_period, for `status --period YYYY/NN`
    sa.Column("run_number", sa.Integer),
    sa.Column("run_month", sa.String(7), nullable=False),
    sa.Column("booked_period", sa.String(16), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("codes", sa.Text, nullable=False),
    sa.Column("lines", sa.Integer, nullable=False),
    sa.Column("debit_cents", sa.BigInteger, nullable=False),
    sa.Column("credit_cents", sa.BigInteger, nullable=False),
    sa.Column("batch_number", sa.String(64)),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_nmbrs_visma_run_outcomes_month", "run_month"),
    sa.Index("ix_nmbrs_visma_run_outcomes_booked", "booked_period"),
)
_SCHEMA_LOCK = 0x6E76_6C65_6467_6572  # "nvledger": serialises the first CREATE TABLE of concurrent workers


def default_ledger_url(settings: Settings | None = None) -> str:
    """The configured ledger URL (`settings`, else read now), or SQLite in the Prefect home."""
    if configured := (settings or Settings.load()).ledger_database():
        return configured
    from prefect.settings import PREFECT_HOME

    path = Path(PREFECT_HOME.value()).expanduser() / "nmbrs-visma" / "ledger.db"
    return f"sqlite:///{path}"


def _driver_url(url: str) -> sa.URL:
    """The URL with a driver SQLAlchemy has here (`postgresql://` means psycopg 3)."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _row(entry: PostingEntry, now: dt.datetime) -> dict[str, Any]:
    data = entry.model_dump(exclude={"debit", "credit", "updated_at"})
    data.update(
        state=entry.state.value,
        debit_cents=to_cents(entry.debit),
        credit_cents=to_cents(entry.credit),
        created_at=now,
        updated_at=now,
    )
    return data


def _entry(row: sa.Row[Any]) -> PostingEntry:
    data = dict(row._mapping)
    updated = data.pop("updated_at")
    data.pop("created_at")
    if updated.tzinfo is None:  # SQLite keeps no offset: the ledger writes UTC
        updated = updated.replace(tzinfo=dt.UTC)
    return PostingEntry(
        **{name: value for name, value in data.items() if name not in {"debit_cents", "credit_cents"}},
        debit=from_cents(data["debit_cents"]),
        credit=from_cents(data["credit_cents"]),
        updated_at=updated,
    )


_RUN_PERIOD = re.compile(r"^(\d{4})[-/](\d{1,2})$")


def _outcome_row(outcome: RunOutcome, seq: int, now: dt.datetime) -> dict[str, Any]:
    data = outcome.model_dump(exclude={"debit", "credit", "codes", "recorded_at"})
    parts = _RUN_PERIOD.match(outcome.run_period)
    data.update(
        seq=seq,
        company_name=outcome.company_name[:255],
        run_year=int(parts.group(1)) if parts else None,
        run_number=int(parts.group(2)) if parts else None,
        codes=",".join(outcome.codes),
        debit_cents=to_cents(outcome.debit),
        credit_cents=to_cents(outcome.credit),
        recorded_at=now,
    )
    return data


def _outcome(row: sa.Row[Any]) -> RunOutcome:
    data = dict(row._mapping)
    recorded = data.pop("recorded_at")
    if recorded.tzinfo is None:  # SQLite keeps no offset: the ledger writes UTC
        recorded = recorded.replace(tzinfo=dt.UTC)
    for name in ("seq", "run_year", "run_number"):
        data.pop(name)
    return RunOutcome(
        **{name: value for name, value in data.items() if name not in {"debit_cents", "credit_cents", "codes"}},
        codes=tuple(code for code in data["codes"].split(",") if code),
        debit=from_cents(data["debit_cents"]),
        credit=from_cents(data["credit_cents"]),
        recorded_at=recorded,
    )


def _advisory_id(key: str) -> int:
    """A signed 64-bit lock id for a key (keys are hex digests already; hashed again for any text)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
_write_locks: dict[str, threading.Lock] = {}


def _engine_write_lock(url: str) -> threading.Lock:
    """One lock per SQLite ledger URL and process, shared by every `PostingLedger` on it."""
    with _engines_lock:
        return _write_locks.setdefault(url, threading.Lock())


_schema_lock = threading.Lock()


def _engine(url: str, pool_size: int) -> Engine:
    """One engine per URL and process (an engine is a pool: made once, shared by every run's threads)."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        parsed = _driver_url(url)
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:":
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(
                parsed,
                connect_args={"check_same_thread": False, "timeout": 60},
                pool_size=pool_size,
                max_overflow=pool_size,
            )
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = sa.create_engine(
                parsed,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,  # a server restarted since the last run: reconnect, don't fail the first read
                connect_args={"connect_timeout": 10},
                # every read and write is one statement (a multi-row upsert is atomic by itself): no BEGIN and
                # COMMIT round trips around each
                isolation_level="AUTOCOMMIT",
            )
        _engines[url] = engine
        return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL: readers never wait for a writer; a writer waits up to a minute for another, never fails at once."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA busy_timeout=60000")
    deadline = time.monotonic() + 60
    while cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":  # kept in the file once set
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:  # processes opening a new file at once: the switch does not wait
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.01, 0.05))
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def holder_name() -> str:
    """Who writes a row: the machine and process (a thread's own id is added for a lock holder)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class PostingLedger:
    """Read, write and lock posting keys in the ledger database. Thread-safe; one instance serves a whole run.

    `url` and `lock_timeout` left out are taken from `Settings.load()`, read once here; a flow run passes its
    own settings instead (`from_settings`)."""

    def __init__(self, url: str | None = None, *, lock_timeout: float | None = None, pool_size: int = 20) -> None:
        if not url or lock_timeout is None:
            settings = Settings.load()
            url = url or default_ledger_url(settings)
            lock_timeout = settings.lock_timeout if lock_timeout is None else lock_timeout
        self.url = url
        self.lock_timeout = lock_timeout
        self._engine = _engine(self.url, pool_size)
        self._is_sqlite = self._engine.dialect.name == "sqlite"
        self._flocks: FlockLockManager | None = None
        # SQLite has one writer: this process's threads queue here, handed over at once, instead of in SQLite's
        # busy handler, which sleeps in growing steps (1, 2, 5 ... 100 ms) between tries (other processes
        # still wait there). PostgreSQL writes rows side by side.
        self._writes: AbstractContextManager[object] = (
            _engine_write_lock(self.url) if self._is_sqlite else nullcontext()
        )
        if self._is_sqlite:
            database = _driver_url(self.url).database or "ledger"
            self._flocks = FlockLockManager(Path(f"{database}.locks"))
        self._ready = False

    @classmethod
    def from_settings(cls, settings: Settings, *, pool_size: int = 20) -> PostingLedger:
        """The ledger a run's `settings` name (URL, lock time-out), without reading the environment again."""
        return cls(default_ledger_url(settings), lock_timeout=settings.lock_timeout, pool_size=pool_size)

    def __repr__(self) -> str:
        return f"PostingLedger({self.describe()!r})"

    def describe(self) -> str:
        """The ledger's URL with any password hidden: for messages and logs."""
        return make_url(self.url).render_as_string(hide_password=True)

    # -- reading without locks ------------------------------------------------------------------------------

    def entries(self, keys: Iterable[str]) -> dict[str, list[PostingEntry]]:
        """Every row of `keys`, without waiting for a run that holds them: enough to skip a key already sent
        (a sent row is final), not to decide anything else (use `holding`)."""
        wanted = sorted(set(keys))
        with self._connection() as connection:
            return _select(connection, wanted)

    def all_entries(self) -> list[PostingEntry]:
        """Every row, for `nmbrs-visma status`."""
        with self._connection() as connection:
            rows = connection.execute(sa.select(POSTINGS).order_by(POSTINGS.c.company, POSTINGS.c.period_id))
            found = [_entry(row) for row in rows]
            connection.commit()
        return found

    # -- completed runs ---------------------------------------------------------------------------------------

    def completed_runs(self, companies: Iterable[int]) -> dict[int, list[CompletedRun]]:
        """The runs recorded as completely booked, per company (every company asked for is a key)."""
        wanted = sorted(set(companies))
        found: dict[int, list[CompletedRun]] = {company: [] for company in wanted}
        with self._connection() as connection:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                for row in connection.execute(sa.select(RUNS).where(RUNS.c.company.in_(chunk))):
                    values = dict(row._mapping)
                    values.pop("completed_at")
                    found[values["company"]].append(CompletedRun(**values))
            connection.commit()
        return found

    def complete_runs(self, runs: Sequence[CompletedRun]) -> None:
        """Record runs as completely booked (again: the newest record wins)."""
        if not runs:
            return
        now = _now()
        rows = [{**run.model_dump(), "completed_at": now} for run in {run.run_id: run for run in runs}.values()]
        with self._connection() as connection, self._writes:
            _execute(connection, _upsert_statement(connection.dialect.name, RUNS, ("run_id",)), rows)

    # -- run outcomes -----------------------------------------------------------------------------------------

    def record_outcomes(self, outcomes: Sequence[RunOutcome]) -> None:
        """A pass's outcomes, in one transaction: for each (company, run reference) among them, and for each of
        their companies' company-level rows, what was recorded before is replaced (a run refused yesterday and
        sent today shows as sent, not as both). Rows of one key in one pass are all kept, in order."""
        if not outcomes:
            return
        now = _now()
        places: Counter[tuple[int, str, str, str]] = Counter()
        rows = []
        for outcome in outcomes:
            natural = (outcome.company, outcome.reference, outcome.administration, outcome.period)
            rows.append(_outcome_row(outcome, places[natural], now))
            places[natural] += 1
        runs = sorted({(o.company, o.reference) for o in outcomes} | {(o.company, "") for o in outcomes})
        pair = sa.tuple_(OUTCOMES.c.company, OUTCOMES.c.reference)
        with self._connection() as connection, self._writes:
            if not self._is_sqlite:  # the engine autocommits each statement; this write is one transaction
                connection.commit()
                connection = connection.execution_options(isolation_level="READ COMMITTED")
            try:
                for start in range(0, len(runs), 500):
                    connection.execute(sa.delete(OUTCOMES).where(pair.in_(runs[start : start + 500])))
                keys = ("administration", "company", "period", "reference", "seq")
                # a pass recording the same run at the same moment: the later write wins, none fails
                connection.execute(_upsert_statement(connection.dialect.name, OUTCOMES, keys), rows)
                connection.commit()
            except BaseException:
                connection.rollback()
                raise

    def outcomes(
        self,
        *,
        companies: Iterable[int] | None = None,
        reference: str | None = None,
        payroll: tuple[tuple[int, int], tuple[int, int]] | None = None,
        months: tuple[str, str] | None = None,
        booked_period: str | None = None,
    ) -> list[RunOutcome]:
        """The recorded outcomes, filtered: by company; by run reference (any case); by the run's payroll period
        (year, number) from..to; by the month (YYYY-MM) its last period ends in, from..to; by the financial period
        booked in. A filter on the run leaves out company-level rows."""
        query = sa.select(OUTCOMES)
        if companies is not None:
            query = query.where(OUTCOMES.c.company.in_(sorted(set(companies))))
        if reference is not None:
            query = query.where(sa.func.upper(OUTCOMES.c.reference) == reference.strip().upper())
        if payroll is not None:
            (first_year, first), (last_year, last) = payroll
            number = OUTCOMES.c.run_year * 100 + OUTCOMES.c.run_number
            query = query.where(number.between(first_year * 100 + first, last_year * 100 + last))
        if months is not None:
            query = query.where(OUTCOMES.c.run_month != "", OUTCOMES.c.run_month.between(*months))
        if booked_period is not None:
            query = query.where(OUTCOMES.c.booked_period == booked_period)
        order = (OUTCOMES.c.company, OUTCOMES.c.reference, OUTCOMES.c.administration, OUTCOMES.c.period)
        with self._connection() as connection:
            found = [_outcome(row) for row in connection.execute(query.order_by(*order, OUTCOMES.c.seq))]
            connection.commit()
        return found

    # -- locking ---------------------------------------------------------------------------------------------

    @contextmanager
    def holding(self, keys: Iterable[str]) -> Iterator[HeldKeys]:
        """Lock every key (in sorted order, so two runs never deadlock) and yield their rows' reader and writer.

        Raises `LockTimeout` when another run holds a key past the lock timeout, `LedgerUnavailable` when the
        database cannot be reached: in both cases before anything is decided."""
        names = sorted(set(keys))
        holder = f"{holder_name()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"
        with self._connection() as connection:
            acquired: list[str] = []
            held = HeldKeys(self, connection, names)
            try:
                if self._flocks is None:
                    self._lock_all(connection, names)
                    acquired = names
                else:
                    for name in names:
                        self._lock(connection, name, holder)
                        acquired.append(name)
                yield held
            finally:
                if acquired and held.unwritten:  # before the locks go: another run decides on these rows
                    try:
                        held.flush()
                    except LedgerUnavailable as exc:
                        keys = sorted({entry.key for entry in held.unwritten})
                        logger.warning("outcomes of %s not recorded (%s); the next run looks them up", keys, exc)
                self._unlock(connection, reversed(acquired), holder)

    def _lock(self, connection: Connection, key: str, holder: str) -> None:
        assert self._flocks is not None
        if not self._flocks.acquire_lock(key, holder, acquire_timeout=self.lock_timeout):
            raise self._timeout([key])

    def _lock_all(self, connection: Connection, keys: Sequence[str]) -> None:
        """PostgreSQL: every key's session advisory lock in one statement, left to right in sorted order (so two
        runs never deadlock), each waiting at most the lock timeout (`lock_timeout` applies to advisory locks).
        Locks taken before a time-out stay with the session until `_unlock` lets them all go."""
        if not keys:
            return
        calls = ", ".join(f"pg_advisory_lock(:k{number})" for number in range(len(keys)))
        statement = sa.text(f"SELECT set_config('lock_timeout', :wait, true), {calls}").bindparams(
            wait=f"{max(1, round(self.lock_timeout * 1000))}ms",
            **{f"k{number}": _advisory_id(key) for number, key in enumerate(keys)},
        )
        try:
            connection.execute(statement)
            connection.commit()  # a session lock outlives the transaction; no snapshot held
        except sa.exc.OperationalError as exc:
            connection.rollback()
            if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available: the wait timed out
                raise self._timeout(keys) from None
            raise self.unavailable(exc) from None
        except SQLAlchemyError as exc:
            raise self.unavailable(exc) from None

    def _timeout(self, keys: Sequence[str]) -> LockTimeout:
        which = f"posting key {keys[0]}" if len(keys) == 1 else f"one of posting keys {', '.join(keys)}"
        return LockTimeout(
            f"{which} stayed locked by another run for {self.lock_timeout:.0f}s; "
            "nothing was sent for it, run again once that run has finished"
        )

    def _unlock(self, connection: Connection, keys: Iterable[str], holder: str) -> None:
        if self._flocks is not None:
            for key in keys:
                self._flocks.release_lock(key, holder)
            return
        try:
            connection.execute(sa.text("SELECT pg_advisory_unlock_all()"))
            connection.commit()
        except SQLAlchemyError:  # the connection is gone, and its locks with it
            connection.invalidate()

    # -- connections -----------------------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        try:
            connection = self._engine.connect()
        except SQLAlchemyError as exc:
            raise self.unavailable(exc) from None
        try:
            if not self._ready:
                self._create_table(connection)
            yield connection
        except (SQLAlchemyError, OverflowError) as exc:
            raise self.unavailable(exc) from None
        finally:
            with suppress(SQLAlchemyError):
                connection.close()

    def _create_table(self, connection: Connection) -> None:
        """The table, created on first use. Threads take turns; so do processes on PostgreSQL (an advisory lock);
        a SQLite file's second creator finds the table made by the first and carries on."""
        with _schema_lock:
            if self._ready:
                return
            try:
                if self._is_sqlite:
                    _metadata.create_all(connection, checkfirst=True)
                    connection.commit()
                else:
                    schema_lock = sa.text("SELECT pg_advisory_lock(:id)").bindparams(id=_SCHEMA_LOCK)
                    connection.execute(schema_lock)
                    try:
                        _metadata.create_all(connection, checkfirst=True)
                    finally:
                        unlock = sa.text("SELECT pg_advisory_unlock(:id)").bindparams(id=_SCHEMA_LOCK)
                        connection.execute(unlock)
            except SQLAlchemyError as exc:
                connection.rollback()
                if "already exists" not in str(exc):
                    raise
            self._ready = True

    def unavailable(self, exc: BaseException) -> LedgerUnavailable:
        """The error to report: the ledger named (password hidden), and whether it was out of reach or refused."""
        text = str(getattr(exc, "orig", None) or exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        unreachable = isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError)
        what = "cannot be reached" if unreachable else "refused the operation"
        return LedgerUnavailable(f"the posting ledger {self.describe()} {what} ({reason})")


class HeldKeys:
    """The rows of locked keys: read them, write them (each write its own transaction, committed at once)."""

    def __init__(self, ledger: PostingLedger, connection: Connection, keys: Sequence[str]) -> None:
        self._ledger = ledger
        self._connection = connection
        self.keys = tuple(keys)
        self._later: list[PostingEntry] = []

    def entries(self) -> dict[str, list[PostingEntry]]:
        return self.entries_of(self.keys)

    def entries_of(self, keys: Sequence[str]) -> dict[str, list[PostingEntry]]:
        """Rows of `keys` (the locked ones, or keys decided under them, such as their reversals')."""
        return _guarded(self._ledger, lambda: _select(self._connection, sorted(set(keys))))

    def mark_reversed(self, key: str, fingerprint: str, *, by: str) -> None:
        """Record that the content `fingerprint` sent under `key` is undone by the reversal batch `by`."""
        update = (
            sa.update(POSTINGS)
            .where(POSTINGS.c.key == key, POSTINGS.c.fingerprint == fingerprint)
            .values(state=PostingState.REVERSED.value, message=f"reversed by batch {by}", updated_at=_now())
        )
        with self._ledger._writes:
            _guarded(self._ledger, lambda: _execute(self._connection, update))

    def put(self, *entries: PostingEntry, later: bool = False) -> None:
        """Write `entries`, with those put `later` before them, in one transaction (all or none); raises
        `LedgerUnavailable` when that fails (and keeps the later ones for the next write).

        `later` holds an outcome back until the next write (the next create's intent) or `flush`: one write
        between two creates instead of two. Safe because a create's outcome lost with its process is found
        again by the look-up, as for any answer lost; the keys stay locked until it is written."""
        if later:
            self._later.extend(entries)
            return
        batch = (*self._later, *entries)
        if batch:
            with self._ledger._writes:
                _guarded(self._ledger, lambda: _upsert(self._connection, batch))
            self._later.clear()

    def flush(self) -> None:
        """Write what was put `later`."""
        self.put()

    @property
    def unwritten(self) -> tuple[PostingEntry, ...]:
        """The rows still held back (`later`)."""
        return tuple(self._later)


def _guarded(ledger: PostingLedger, action: Any) -> Any:
    try:
        return action()
    except (SQLAlchemyError, OverflowError) as exc:  # OverflowError: a number SQLite's driver cannot bind
        raise ledger.unavailable(exc) from None


def _select(connection: Connection, keys: list[str]) -> dict[str, list[PostingEntry]]:
    found: dict[str, list[PostingEntry]] = defaultdict(list)
    for start in range(0, len(keys), 500):  # well inside every database's limit of bound parameters
        chunk = keys[start : start + 500]
        for row in connection.execute(sa.select(POSTINGS).where(POSTINGS.c.key.in_(chunk))):
            entry = _entry(row)
            found[entry.key].append(entry)
    connection.commit()
    return dict(found)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@functools.cache
def _upsert_statement(dialect: str, table: sa.Table, keys: tuple[str, ...], kept: tuple[str, ...] = ()) -> sa.Insert:
    """`INSERT ... ON CONFLICT (keys) DO UPDATE` of every other column (but `kept`), built once per dialect and
    table and executed with a list of rows (the driver's executemany): a multi-row VALUES statement would be
    compiled anew for every write, work that outweighs the write itself (docs/reliability.md)."""
    insert = (sqlite if dialect == "sqlite" else postgresql).insert(table)
    updated = {c.name: insert.excluded[c.name] for c in table.columns if c.name not in {*keys, *kept}}
    return insert.on_conflict_do_update(index_elements=list(keys), set_=updated)


def _upsert(connection: Connection, entries: Sequence[PostingEntry]) -> None:
    now = _now()
    last = {(entry.key, entry.fingerprint): entry for entry in entries}  # one row once per statement (PostgreSQL)
    rows = [_row(entry, now) for entry in last.values()]
    _execute(
        connection, _upsert_statement(connection.dialect.name, POSTINGS, ("key", "fingerprint"), ("created_at",)), rows
    )


def _execute(connection: Connection, statement: sa.Executable, rows: list[dict[str, Any]] | None = None) -> None:
    """One statement (with `rows`: executed once per row, by the driver's executemany), committed."""
    try:
        connection.execute(statement, rows) if rows is not None else connection.execute(statement)
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
