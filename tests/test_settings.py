"""The one settings object: `NMBRS_VISMA_*` read, typed and validated; read once per flow run, never at import;
handed down to the ledger, the output folder, the settle time and the worker count; the README's table.

The flow tests run real flows on the session's Prefect API; the import test runs a fresh interpreter.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nmbrs_visma.blocks.nmbrs import NmbrsAccount
from nmbrs_visma.blocks.visma_net import VismaNetAccount
from nmbrs_visma.posting_ledger import PostingLedger
from nmbrs_visma.settings import Settings, SettingsError, env_name, settings_table

REPO_ROOT = Path(__file__).resolve().parent.parent
FIELDS = ("max_workers", "ledger_url", "output_dir", "lock_timeout", "settle_seconds", "document_wait")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting in the environment (the test session may have some)."""
    for name in list(os.environ):
        if name.upper().startswith("NMBRS_VISMA_"):
            monkeypatch.delenv(name)
    return monkeypatch


# -- reading and validating --------------------------------------------------------------------------------


def test_the_variables_and_defaults_are_the_ones_documented_before(clean_env: pytest.MonkeyPatch) -> None:
    assert tuple(Settings.model_fields) == FIELDS
    assert [env_name(name) for name in FIELDS] == [
        "NMBRS_VISMA_MAX_WORKERS",
        "NMBRS_VISMA_LEDGER_URL",
        "NMBRS_VISMA_OUTPUT_DIR",
        "NMBRS_VISMA_LOCK_TIMEOUT",
        "NMBRS_VISMA_SETTLE_SECONDS",
        "NMBRS_VISMA_DOCUMENT_WAIT",
    ]
    settings = Settings.load()
    assert settings.max_workers == 8
    assert settings.ledger_url is None and settings.ledger_database() is None
    assert settings.output_dir == Path("nmbrs-visma-output")
    assert settings.lock_timeout == 900.0
    assert settings.settle_seconds == 300.0
    assert settings.document_wait == 60.0


def test_each_variable_is_read_typed(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("NMBRS_VISMA_MAX_WORKERS", "3")
    clean_env.setenv("nmbrs_visma_ledger_url", f"sqlite:///{tmp_path / 'l.db'}")  # any case, as before
    clean_env.setenv("NMBRS_VISMA_OUTPUT_DIR", "~/payloads")
    clean_env.setenv("NMBRS_VISMA_LOCK_TIMEOUT", "12.5")
    clean_env.setenv("NMBRS_VISMA_SETTLE_SECONDS", "0")  # 0: an intent nobody can still be creating, at once
    settings = Settings.load()
    assert settings.max_workers == 3
    assert settings.ledger_database() == f"sqlite:///{tmp_path / 'l.db'}"
    assert settings.output_dir == Path.home() / "payloads"
    assert (settings.lock_timeout, settings.settle_seconds) == (12.5, 0.0)
    with pytest.raises(ValueError):  # frozen: a run's values do not change under it
        settings.max_workers = 9  # type: ignore[misc]


def test_an_empty_variable_is_unset(clean_env: pytest.MonkeyPatch) -> None:
    for name in FIELDS:
        clean_env.setenv(env_name(name), "")
    assert Settings.load().model_dump() == {name: info.default for name, info in Settings.model_fields.items()}


@pytest.mark.parametrize(
    ("variable", "value", "why"),
    [
        ("NMBRS_VISMA_MAX_WORKERS", "0", "greater than or equal to 1"),
        ("NMBRS_VISMA_MAX_WORKERS", "eight", "valid integer"),
        ("NMBRS_VISMA_LOCK_TIMEOUT", "0", "greater than 0"),
        ("NMBRS_VISMA_LOCK_TIMEOUT", "-5", "greater than 0"),
        ("NMBRS_VISMA_SETTLE_SECONDS", "-1", "greater than or equal to 0"),
        ("NMBRS_VISMA_SETTLE_SECONDS", "5 minutes", "valid number"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(
    clean_env: pytest.MonkeyPatch, variable: str, value: str, why: str
) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        Settings.load()
    message = str(raised.value)
    assert message.startswith(f"invalid setting: {variable}: "), message
    assert why in message and repr(value) in message, message


def test_every_bad_value_is_named_at_once(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("NMBRS_VISMA_MAX_WORKERS", "-1")
    clean_env.setenv("NMBRS_VISMA_LOCK_TIMEOUT", "never")
    with pytest.raises(SettingsError, match=r"NMBRS_VISMA_MAX_WORKERS: .*; NMBRS_VISMA_LOCK_TIMEOUT: "):
        Settings.load()


def test_the_ledger_url_password_is_never_shown(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("NMBRS_VISMA_LEDGER_URL", "postgresql://nv:s3cret-pw@db.example:5432/ledger")
    settings = Settings.load()
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in str(settings)
    assert "s3cret-pw" not in settings.model_dump_json()
    assert settings.ledger_database() == "postgresql://nv:s3cret-pw@db.example:5432/ledger"


def test_other_nmbrs_visma_variables_are_not_settings(clean_env: pytest.MonkeyPatch) -> None:
    """The demo's secrets and the debug switch share the prefix; they are not settings and are ignored."""
    clean_env.setenv("NMBRS_VISMA_DEBUG", "1")
    clean_env.setenv("NMBRS_VISMA_DEMO_VISMA_SECRET", "not-a-setting")
    assert "not-a-setting" not in repr(Settings.load())


# -- handed down -------------------------------------------------------------------------------------------


def test_the_ledger_takes_the_settings_it_is_given_not_the_environment(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("NMBRS_VISMA_LEDGER_URL", f"sqlite:///{tmp_path / 'from-env.db'}")
    clean_env.setenv("NMBRS_VISMA_LOCK_TIMEOUT", "7")
    read = Settings.load()
    clean_env.setenv("NMBRS_VISMA_LEDGER_URL", f"sqlite:///{tmp_path / 'changed-later.db'}")
    clean_env.setenv("NMBRS_VISMA_LOCK_TIMEOUT", "8")
    ledger = PostingLedger.from_settings(read)
    assert (ledger.url, ledger.lock_timeout) == (f"sqlite:///{tmp_path / 'from-env.db'}", 7.0)
    ledger.entries([])  # a working ledger at that URL
    assert (tmp_path / "from-env.db").exists() and not (tmp_path / "changed-later.db").exists()
    alone = PostingLedger()  # outside a run (`status`): the settings read now
    assert (alone.url, alone.lock_timeout) == (f"sqlite:///{tmp_path / 'changed-later.db'}", 8.0)
    assert PostingLedger(lock_timeout=2).lock_timeout == 2.0  # given values win


def test_the_default_ledger_is_sqlite_in_the_prefect_home(clean_env: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_HOME

    expected = Path(PREFECT_HOME.value()).expanduser() / "nmbrs-visma" / "ledger.db"
    assert PostingLedger.from_settings(Settings.load()).url == f"sqlite:///{expected}"


def test_the_output_folder_is_the_settings_one(tmp_path: Path) -> None:
    import datetime as dt

    from nmbrs_visma.tasks.report import output_dir

    at = dt.datetime(2026, 3, 31, 12, 0, 1, 5, tzinfo=dt.UTC)
    assert output_dir(tmp_path, at) == tmp_path / "dry-run-20260331T120001000005Z"


def test_the_poster_uses_the_settle_time_it_is_given() -> None:
    from nmbrs_visma.flows.administrations import Pass
    from nmbrs_visma.tasks.posting import AdministrationPoster

    assert AdministrationPoster(object(), object()).settle == 300.0  # type: ignore[arg-type]
    assert AdministrationPoster(object(), object(), settle=4.0).settle == 4.0  # type: ignore[arg-type]
    assert Pass.__dataclass_fields__["settle_seconds"].default == 300.0


# -- the account blocks' time-out ------------------------------------------------------------------------------


@pytest.mark.parametrize("block", [VismaNetAccount, NmbrsAccount], ids=lambda block: block.__name__)
def test_the_client_waits_as_long_as_its_block_says(block: type[VismaNetAccount | NmbrsAccount]) -> None:
    secrets = {"client_secret": "s"} | ({"subscription_key": "k"} if block is NmbrsAccount else {"tenant_id": "1"})
    default = block(client_id="c", **secrets)  # type: ignore[arg-type]
    assert default.timeout_seconds == 30.0
    account = block(client_id="c", timeout_seconds=2.5, **secrets)  # type: ignore[arg-type]
    for client, seconds in ((account.get_client(), 2.5), (account.get_client(timeout=9.0), 9.0)):
        try:
            timeout = client._http.timeout
            assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (seconds,) * 4
        finally:
            client.close()
    with pytest.raises(ValueError, match="timeout_seconds"):
        block(client_id="c", timeout_seconds=0, **secrets)  # type: ignore[arg-type]


# -- the README -------------------------------------------------------------------------------------------------


def test_the_readme_settings_table_lists_every_setting_with_its_default() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Settings\n", 1)[1].split("\n#", 1)[0]
    rows = {
        match[1]: match[2]
        for match in re.finditer(r"^\| `(NMBRS_VISMA_[A-Z_]+)` \| ([^|]+) \|", section, flags=re.MULTILINE)
    }
    assert list(rows) == [variable for variable, _, _ in settings_table()]
    for name in FIELDS:
        default = Settings.model_fields[name].default
        shown = rows[env_name(name)].strip()
        if isinstance(default, int | float):
            assert float(shown.strip("`")) == default, (name, shown)
        elif default is None:
            assert "SQLite" in shown, (name, shown)
        else:
            assert str(default) in shown, (name, shown)


# -- read per run, never at import ------------------------------------------------------------------------------


def test_no_flow_module_reads_a_setting_at_import() -> None:
    """A worker imports the flows once and runs them many times: a bad value must not stop the import (each run
    reports it), and a value changed later must apply."""
    env = {**os.environ, "NMBRS_VISMA_MAX_WORKERS": "0", "NMBRS_VISMA_LOCK_TIMEOUT": "never"}
    modules = ["post_payroll_journals", "backfill", "reconcile", "keep_alive"]
    code = "; ".join(f"import nmbrs_visma.flows.{module}" for module in modules)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_each_flow_run_reads_its_settings_once_when_it_starts(prefect_api: str, clean_env: pytest.MonkeyPatch) -> None:
    """The task runner of each run is sized from the settings read as it starts, and the body sees the same
    object; a later run sees a changed value."""
    from prefect import flow
    from prefect.context import FlowRunContext

    from nmbrs_visma.flows import run_settings as module
    from nmbrs_visma.flows.run_settings import SettingsTaskRunner, run_settings

    reads: list[Settings] = []
    original = Settings.load

    def counted() -> Settings:
        reads.append(original())
        return reads[-1]

    @flow(task_runner=SettingsTaskRunner())
    def probe() -> tuple[int, int, bool]:
        context = FlowRunContext.get()
        assert context is not None
        first, again = run_settings(), run_settings()
        return first.max_workers, context.task_runner._max_workers, first is again  # type: ignore[attr-defined]

    clean_env.setattr(module.Settings, "load", staticmethod(counted))  # counts the reads, reads as before
    clean_env.setenv("NMBRS_VISMA_MAX_WORKERS", "3")
    assert probe() == (3, 3, True)
    assert len(reads) == 1
    clean_env.setenv("NMBRS_VISMA_MAX_WORKERS", "5")
    assert probe() == (5, 5, True)
    assert len(reads) == 2


@pytest.mark.slow
def test_a_bad_setting_ends_the_run_before_any_work_naming_the_variable(
    prefect_api: str, clean_env: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client

    from nmbrs_visma.flows.post_payroll_journals import post_payroll_journals

    clean_env.setenv("NMBRS_VISMA_MAX_WORKERS", "0")
    state = post_payroll_journals(companies=[1001], dry_run=True, return_state=True)
    assert state.is_failed(), state
    with pytest.raises(SettingsError, match="NMBRS_VISMA_MAX_WORKERS: Input should be greater than or equal to 1"):
        state.result()
    with get_client(sync_client=True) as client:  # ended on the server too, not left RUNNING holding a slot
        stored = client.read_flow_run(state.state_details.flow_run_id)
    assert stored.state is not None and stored.state.is_failed(), stored.state


@pytest.mark.slow
def test_the_keep_alive_runs_a_handful_of_renewals_at_once(prefect_api: str, clean_env: pytest.MonkeyPatch) -> None:
    from prefect import flow
    from prefect.context import FlowRunContext

    from nmbrs_visma.flows.keep_alive import RENEWALS_AT_ONCE, keep_accounts_alive
    from nmbrs_visma.flows.run_settings import SettingsTaskRunner

    assert isinstance(keep_accounts_alive.task_runner, SettingsTaskRunner)
    assert keep_accounts_alive.task_runner.most == RENEWALS_AT_ONCE == 4

    @flow(task_runner=SettingsTaskRunner(most=RENEWALS_AT_ONCE))
    def threads() -> int:
        context = FlowRunContext.get()
        assert context is not None
        return context.task_runner._max_workers  # type: ignore[attr-defined]

    assert threads() == 4  # the default 8 workers, capped
    clean_env.setenv("NMBRS_VISMA_MAX_WORKERS", "2")
    assert threads() == 2  # never more than the worker count
