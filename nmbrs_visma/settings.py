"""The pipeline's settings: one object, from `NMBRS_VISMA_*` environment variables, read once per run.

Why one object read once: a setting read here and there (one at import, others per call) can change half-way
through a run, and a bad value surfaced deep inside a task. Each flow run reads `Settings.load()` when it starts
(flows/run_settings.py) and hands the values down: the posting ledger's URL and lock time-out, the dry-run
output folder, the settle time of an unanswered create, the wait for an Nmbrs journal document, the worker
count. Nothing reads these variables at import, so a worker whose environment changes between runs applies the
change to the next run. A command that runs outside a flow (`status`) reads its own `Settings.load()` once.

What belongs to one account (the HTTP client time-out, `timeout_seconds`) lives in its account block, beside
the URL it applies to; what belongs to the worker process lives here.

No Prefect here: the core (posting_ledger.py) reads its defaults from this module.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "NMBRS_VISMA_"
DEFAULT_MAX_WORKERS = 8
DEFAULT_OUTPUT_DIR = Path("nmbrs-visma-output")
DEFAULT_LOCK_TIMEOUT = 900.0  # seconds a run waits for another run's posting of the same key
DEFAULT_SETTLE_SECONDS = 300.0  # how long an unanswered create may take to show in Visma.net's listing
DEFAULT_DOCUMENT_WAIT = 60.0  # how long Nmbrs may take to prepare a run's journal document


class SettingsError(ValueError):
    """A setting whose value cannot be used; the message names each environment variable and why."""


class Settings(BaseSettings):
    """The worker's settings (environment variables `NMBRS_VISMA_<FIELD>`, case-insensitive; empty means unset).

    Frozen: one run's values do not change under it. `Settings.load()` is the constructor for callers: it reads
    the environment and turns a bad value into a `SettingsError` naming the variable.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, extra="ignore")

    max_workers: int = Field(
        default=DEFAULT_MAX_WORKERS,
        ge=1,
        title="Workers",
        description="Administrations creating journal transactions at once (and the threads of a run's set-up "
        "tasks and of a reconciliation's companies); Visma.net's rate limits are per tenant.",
    )
    ledger_url: SecretStr | None = Field(
        default=None,
        title="Posting ledger URL",
        description="The posting ledger's SQLAlchemy URL (postgresql://... for workers on several machines; it may "
        "carry the database password, so it is kept secret). Unset: SQLite in $PREFECT_HOME/nmbrs-visma/ledger.db.",
    )
    output_dir: Path = Field(
        default=DEFAULT_OUTPUT_DIR,
        title="Output folder",
        description="Where a dry run writes its payload files, one dry-run-<UTC time> folder per run.",
    )
    lock_timeout: float = Field(
        default=DEFAULT_LOCK_TIMEOUT,
        gt=0,
        title="Lock time-out (seconds)",
        description="Seconds a run waits for another run holding the same posting key or administration, then "
        "reports those transactions as failed (nothing is decided for them; the next run takes them up).",
    )
    settle_seconds: float = Field(
        default=DEFAULT_SETTLE_SECONDS,
        ge=0,
        title="Settle time (seconds)",
        description="Seconds an unanswered create may take to show in Visma.net's listing: until then a transaction "
        "not found is reported pending, after that it is posted. 0: post at once (only when no create can still "
        "be in flight).",
    )

    document_wait: float = Field(
        default=DEFAULT_DOCUMENT_WAIT,
        gt=0,
        title="Journal document wait (seconds)",
        description="Seconds Nmbrs may take to prepare a payroll run's journal document (it answers 202 until then); "
        "past it the company's administration is reported failed with nothing sent, and the next run reads it again.",
    )

    @field_validator("output_dir")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @classmethod
    def load(cls) -> Settings:
        """The settings from the environment now; `SettingsError` naming every variable with a bad value."""
        try:
            return cls()
        except ValidationError as exc:
            problems = []
            for error in exc.errors(include_url=False):
                field = str(error["loc"][0]) if error["loc"] else ""
                shown = "" if field == "ledger_url" else f" (got {error.get('input')!r})"  # a URL may hold a password
                problems.append(f"{env_name(field)}: {error['msg']}{shown}")
            raise SettingsError("invalid setting: " + "; ".join(problems)) from None

    def ledger_database(self) -> str | None:
        """The configured ledger URL in clear (for the database driver only), or None for the default."""
        return self.ledger_url.get_secret_value() if self.ledger_url is not None else None


def env_name(field: str) -> str:
    """The environment variable of a settings field: `max_workers` -> `NMBRS_VISMA_MAX_WORKERS`."""
    return f"{ENV_PREFIX}{field.upper()}"


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) of every setting, in declaration order: the README's table, and its test."""
    rows = []
    for name, info in Settings.model_fields.items():
        default = info.default
        shown = "(SQLite in the Prefect home)" if default is None else str(default)
        rows.append((env_name(name), shown, info.description or ""))
    return rows


__all__ = [
    "DEFAULT_DOCUMENT_WAIT",
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_MAX_WORKERS",
    "DEFAULT_OUTPUT_DIR",
    "DEFAULT_SETTLE_SECONDS",
    "ENV_PREFIX",
    "Settings",
    "SettingsError",
    "env_name",
    "settings_table",
]
