"""A flow run's settings, read once when the run starts, and its task runner sized by them.

Why a task runner: a flow's `task_runner` is built when its module is imported (the `@flow` decorator), but
the worker count is a per-run setting. Prefect makes each run's runner with `task_runner.duplicate()` and
enters it before the flow body runs, for a deployment's run as for a call. `SettingsTaskRunner` reads
`Settings.load()` there, sizes its thread pool from it, and keeps it; the body takes the very same object with
`run_settings()`. So the settings are read once per run, the set-up tasks (tokens, company lists) and a
reconciliation's companies get `max_workers` threads as before, and nothing is read at import.

A bad value must not raise while the runner is entered: Prefect has not started the flow body then, and the run
would stay RUNNING on the server (holding its deployment's concurrency slot). The runner keeps the error and
one thread instead; `run_settings()`, the first thing each flow body calls, raises it, so the run ends FAILED
before any work with a `SettingsError` naming the variable.
"""

from __future__ import annotations

from typing import Self

from prefect.context import FlowRunContext
from prefect.task_runners import ThreadPoolTaskRunner

from nmbrs_visma.settings import Settings, SettingsError


class SettingsTaskRunner(ThreadPoolTaskRunner):
    """A thread pool of `settings.max_workers` threads (at most `most`), the settings read when a run starts.

    Given `settings`, it uses those (a test, or a caller that read them already); without, each run's
    duplicate reads its own."""

    def __init__(self, settings: Settings | None = None, *, most: int | None = None) -> None:
        self.settings = settings
        self.most = most
        self.error: SettingsError | None = None
        super().__init__(max_workers=self._threads(settings) if settings is not None else most)

    def _threads(self, settings: Settings) -> int:
        return settings.max_workers if self.most is None else min(self.most, settings.max_workers)

    def duplicate(self) -> SettingsTaskRunner:
        return type(self)(self.settings, most=self.most)

    def __enter__(self) -> Self:
        if self.settings is None and self.error is None:
            try:
                self.settings = Settings.load()
            except SettingsError as exc:  # raised by `run_settings()` in the body, where Prefect fails the run
                self.error = exc
        self._max_workers = self._threads(self.settings) if self.settings is not None else 1
        return super().__enter__()


def run_settings() -> Settings:
    """The current flow run's settings (read when it started); outside a run of such a flow, read now.

    Raises `SettingsError` (naming the variables) when the run's settings could not be read."""
    context = FlowRunContext.get()
    runner = context.task_runner if context is not None else None
    if isinstance(runner, SettingsTaskRunner):
        if runner.error is not None:
            raise SettingsError(str(runner.error))
        if runner.settings is not None:
            return runner.settings
    return Settings.load()
