"""A throwaway PostgreSQL server that tests start themselves (a helper module, not a test file).

The shared posting ledger must be tested against a real PostgreSQL (locks, transactions and restarts behave
differently from SQLite), and tests must not depend on a server someone else runs. `PostgresServer` makes a
fresh cluster with the Debian package's server binaries in a temporary folder, on 127.0.0.1 and a free port,
with `trust` auth, and hands out SQLAlchemy URLs (`postgresql+psycopg://postgres@127.0.0.1:<port>/<db>`).

PostgreSQL refuses to run as root; when the tests run as root the cluster is owned by, and every server
command runs as, the `postgres` user (which the Debian package creates).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import psycopg
from psycopg import sql

from nmbrs_visma.sandbox.server import free_port

INSTALL_HINT = "install the Debian package `postgresql` (apt-get install -y --no-install-recommends postgresql)"
_NEEDED = ("initdb", "pg_ctl", "postgres")
_DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

StopMode = Literal["smart", "fast", "immediate"]


class PostgresUnavailable(RuntimeError):
    """The server binaries (or, as root, the `postgres` user) are missing: the tests cannot run here."""


def _version_key(bindir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name)) or (0,)


def find_bindir() -> Path:
    """The folder holding initdb, pg_ctl and postgres: the highest /usr/lib/postgresql/<version>/bin,
    else `pg_config --bindir`, else the PATH. Raises PostgresUnavailable, naming the package to install."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    if pg_config := shutil.which("pg_config"):
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.strip()))
    if postgres := shutil.which("postgres"):
        candidates.append(Path(postgres).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in _NEEDED):
            return bindir
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found under /usr/lib/postgresql/*/bin, "
        f"`pg_config --bindir` or the PATH; {INSTALL_HINT}"
    )


class PostgresServer:
    """One throwaway PostgreSQL cluster in a temporary folder, listening on `host`:`port` only.

    Contract: `start()` runs initdb on first use, then `pg_ctl start -w` (returns once connections are
    accepted); `stop()` stops it and keeps the data; `start()` again reuses the same data folder and port, so
    URLs handed out before stay valid across a restart. `cleanup()` stops the server and deletes the folder.
    As a context manager it starts on entry and cleans up on exit.

    Speed over durability against OS crashes: fsync and full-page writes are off. synchronous_commit stays on,
    so a committed transaction survives `stop("immediate")` (a simulated server crash), as in production.
    """

    def __init__(self, *, port: int | None = None, host: str = "127.0.0.1", max_connections: int = 200) -> None:
        self.bindir = find_bindir()  # fail early, before anything is created on disk
        self._owner = self._server_user()
        self.host = host
        self.port = port or free_port(host)
        self.max_connections = max_connections
        self.base: Path | None = None

    @staticmethod
    def _server_user() -> pwd.struct_passwd | None:
        """The user the server runs as: `postgres` when we are root, else None (the current user)."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable(
                f"running as root, PostgreSQL must run as the user `postgres`, which does not exist; {INSTALL_HINT}"
            ) from None

    @property
    def data_dir(self) -> Path:
        return self._base() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._base() / "socket"

    @property
    def log_file(self) -> Path:
        return self._base() / "postgres.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the default `postgres` database."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{database}"

    def _base(self) -> Path:
        if self.base is None:
            raise RuntimeError("PostgresServer has not been started (or was cleaned up)")
        return self.base

    def _run(self, *args: str | Path, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a server binary, as `postgres` when we are root; raise with its output (and the log) on failure.

        Output goes to a file, not a pipe: the postmaster that `pg_ctl start` leaves behind would inherit a
        pipe and keep it open, and reading it would then never end."""
        base = self._base()
        extra: dict[str, Any] = {}
        if self._owner is not None:
            extra = {"user": self._owner.pw_uid, "group": self._owner.pw_gid, "extra_groups": []}
        command = [str(self.bindir / str(args[0])), *map(str, args[1:])]
        with tempfile.TemporaryFile("w+") as output:
            # cwd: the server user may not be allowed into the test process's working directory
            result = subprocess.run(
                command, stdout=output, stderr=subprocess.STDOUT, cwd=base, timeout=timeout, check=False, **extra
            )
            output.seek(0)
            result.stdout = output.read()
        if check and result.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-4000:] if self.log_file.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stdout}\n--- {self.log_file}:\n{log}"
            )
        return result

    def _chown(self, path: Path) -> None:
        if self._owner is not None:
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    def _init(self) -> None:
        # As root the folder lives under /tmp (world-traversable) and belongs to postgres; mkdtemp makes it 0o700.
        self.base = Path(tempfile.mkdtemp(prefix="nmbrs-visma-pg-", dir="/tmp" if self._owner else None))
        self._chown(self.base)
        self.socket_dir.mkdir(mode=0o700)
        self._chown(self.socket_dir)
        self._run("initdb", "-D", self.data_dir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "-N")
        settings = {
            "listen_addresses": f"'{self.host}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": str(self.max_connections),
            "fsync": "off",
            "full_page_writes": "off",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:  # appending keeps the file's owner
            conf.write("\n# nmbrs-visma tests\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
        (self.data_dir / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n"
        )  # overwriting keeps the file's owner

    @property
    def running(self) -> bool:
        return self.base is not None and self._run("pg_ctl", "status", "-D", self.data_dir, check=False).returncode == 0

    def start(self, timeout: int = 60) -> PostgresServer:
        """Start the server (initialising the cluster on first use) and wait until it accepts connections."""
        if self.base is None:
            try:
                self._init()
            except BaseException:
                self.cleanup()
                raise
        elif self.running:
            return self
        self._run("pg_ctl", "start", "-w", "-t", str(timeout), "-D", self.data_dir, "-l", self.log_file)
        return self

    def stop(self, mode: StopMode = "fast", timeout: int = 60) -> None:
        """Stop the server, keeping the data; a no-op when it is not running. `immediate` simulates a crash."""
        if self.running:
            self._run("pg_ctl", "stop", "-w", "-t", str(timeout), "-m", mode, "-D", self.data_dir)

    def restart(self, mode: StopMode = "fast") -> None:
        """Stop, then start on the same port and data folder."""
        self.stop(mode)
        self.start()

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(host=self.host, port=self.port, user="postgres", dbname="postgres", autocommit=True)

    def create_database(self, name: str) -> str:
        """Create the database `name` (lower-case identifier, at most 63 characters); return its SQLAlchemy URL."""
        if not _DB_NAME.fullmatch(name):
            raise ValueError(f"database name {name!r} must match {_DB_NAME.pattern}")
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop `name`, disconnecting its remaining sessions (e.g. from engines a test did not dispose of)."""
        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def cleanup(self) -> None:
        """Stop the server and delete its folder; the object can be started again afresh."""
        if self.base is None:
            return
        try:
            self.stop("immediate")  # the data is about to be deleted: no need for a clean shutdown
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()
