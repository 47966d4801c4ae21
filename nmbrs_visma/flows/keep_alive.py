"""The `keep-accounts-alive` flow: renew refresh tokens before they lapse, and say which accounts need `connect`.

Why: an Nmbrs refresh token lapses after 30 days unused (an interactive Visma.net one likewise), and from then
on every company behind that account is refused until a person logs in again. The daily run renews tokens as
it uses them, but an account whose companies have nothing to post for a month would lapse unnoticed. The
weekly `keep-alive` deployment renews each refresh token that has fewer than `renew_within_days` left, through
the same machinery as a run (the account's token lock, the block re-read under it, the rotated pair saved at
once: tasks/tokens.py), leaves the others alone, and reports an account whose refresh is refused as needing
`nmbrs-visma connect ...`. The run then ends FAILED with a message naming those accounts, so an automation
alerts someone; its `accounts` table artifact shows every account's state and days left.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.futures import PrefectFuture
from prefect.states import Completed, Failed, State
from pydantic import Field

from nmbrs_visma.accounts import AccountStatus, artifact_rows, needs_connect_message, read_account_statuses, summary
from nmbrs_visma.flows.run_settings import SettingsTaskRunner, run_settings
from nmbrs_visma.tasks.tokens import AccountNotAuthorised, System, keep_token_alive

ARTIFACT_KEY = "accounts"
DEFAULT_RENEW_WITHIN_DAYS = 14  # twice the weekly schedule: a token is renewed once or twice before it lapses
SYSTEMS: dict[str, System] = {"Visma.net": "visma", "Nmbrs": "nmbrs"}
RENEWALS_AT_ONCE = 4  # a handful of accounts renew side by side (never more than the run's `max_workers`)


def outcome_message(statuses: Sequence[AccountStatus], failed: dict[str, str]) -> str:
    """The run's state message (what an alert shows): first every account that needs `connect` or could not be
    renewed, each named with why, then the counts."""
    renewed = sum(1 for status in statuses if status.note.startswith("renewed"))
    parts = []
    if message := needs_connect_message(statuses):
        parts.append(message)
    if failed:
        listed = "; ".join(f"{name}: {why}" for name, why in failed.items())
        parts.append(f"{len(failed)} account(s) could not be renewed: {listed}")
    parts.append(f"{summary(statuses)}; {renewed} refresh token(s) renewed")
    return "; ".join(parts)


def _why(error: object) -> str:
    """A failed renewal's reason, without repeating the account's name (the message names it)."""
    if isinstance(error, AccountNotAuthorised):
        return f"{error.reason}; {error.action}"
    return str(error) if isinstance(error, BaseException) else "the renewal did not finish"


def _label(status: AccountStatus) -> str:
    return f"{status.system} account '{status.account}'"


@flow(
    name="keep-accounts-alive",
    flow_run_name="keep-alive · renew under {renew_within_days} days",
    task_runner=SettingsTaskRunner(most=RENEWALS_AT_ONCE),  # the run's settings, read when it starts
    description="Renew every Nmbrs (and interactive Visma.net) refresh token before it lapses; report the accounts "
    "that need `nmbrs-visma connect` again (the run then ends FAILED).",
)
def keep_accounts_alive(
    renew_within_days: Annotated[
        int, Field(ge=1, le=365, json_schema_extra={"title": "Renew when fewer days are left than", "examples": [14]})
    ] = DEFAULT_RENEW_WITHIN_DAYS,
) -> State:
    """Renew each refresh token with fewer than `renew_within_days` days left; leave the others alone.

    Args:
        renew_within_days: A refresh token that lapses within this many days is renewed now (a new refresh token,
            whose lifetime starts again). Keep it above the schedule's interval (7 days for the weekly deployment).
    """
    run_settings()  # read when the run started: a bad value ends it here, naming the variable
    log = get_run_logger()
    statuses = read_account_statuses()
    futures: dict[int, PrefectFuture[AccountStatus]] = {}
    for index, status in enumerate(statuses):
        if status.grant_type == "authorization_code":
            futures[index] = keep_token_alive.submit(SYSTEMS[status.system], status.account, renew_within_days)
    failed: dict[str, str] = {}
    kept: list[AccountStatus] = []
    for index, status in enumerate(statuses):
        future = futures.get(index)
        if future is None:
            kept.append(status.with_note("nothing to renew: a token per run"))
            continue
        result = future.result(raise_on_failure=False)
        if isinstance(result, AccountStatus):
            kept.append(result)
        else:  # the task failed (the client refused, the identity server unreachable): keep what the block said
            why = _why(result)
            failed[_label(status)] = why
            kept.append(dataclasses.replace(status, note=f"renewal failed: {why}"))
    message = outcome_message(kept, failed)
    create_table_artifact(
        key=ARTIFACT_KEY,
        table=artifact_rows(kept),
        description=f"Accounts and their refresh tokens: {message}",
    )
    for status in kept:
        (log.warning if status.needs_connect else log.info)(
            "%s: %s, %s", _label(status), status.state_text, status.note
        )
    if failed or any(status.needs_connect for status in kept):
        return Failed(message=message, data=kept)
    return Completed(message=message, data=kept)
