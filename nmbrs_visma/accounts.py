"""Each configured account's state and how long its refresh token has left: `nmbrs-visma accounts` and the
keep-alive flow's `accounts` artifact.

Why: an Nmbrs refresh token (and an interactive Visma.net one) lapses after 30 days unused, and then every
company behind the account is refused until someone runs `nmbrs-visma connect` again. This shows, per account,
the state (connected, needs `connect`, access token valid until, client credentials) and the days its refresh
token has left, so a lapse is seen coming; the keep-alive flow (flows/keep_alive.py) renews before it.

Nothing here reads a secret: the blocks are listed without their secrets (Prefect's mask stands in for a set
one), and only whether a token is set and the times beside it are shown. Importing this module imports no
Prefect (the command line's `--help` stays instant); `read_account_statuses` imports the blocks when called.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from nmbrs_visma.blocks.oauth import OAuthAccount
    from nmbrs_visma.output import Column, OutputFormat
GRANT_NAMES = {"authorization_code": "authorization code", "client_credentials": "client credentials"}


class AccountState(StrEnum):
    """An account's state, as `nmbrs-visma accounts` shows it."""

    TOKEN_VALID = "access token valid"  # a live access token is stored (until: `access_token_valid_until`)
    CONNECTED = "connected"  # a refresh token is stored; the next run gets an access token with it
    NEEDS_CONNECT = "needs connect"  # no refresh token, or it lapsed or was refused: `nmbrs-visma connect` again
    CLIENT_CREDENTIALS = "client credentials"  # a Visma.net service account: a token per run, nothing to lapse


@dataclasses.dataclass(frozen=True)
class AccountStatus:
    """One account, without any secret: safe to print, to log and to put in an artifact.

    `refresh_days_left` is None when the account has no refresh token to count (a service account, one never
    connected) or its issue time is unknown; negative once it lapsed. `note` says what the keep-alive flow did
    or why the account needs `connect`.
    """

    system: str  # "Visma.net" or "Nmbrs"
    account: str  # the block's name
    grant_type: str  # authorization_code or client_credentials
    state: AccountState
    connect_command: str  # what connects this account again
    access_token_valid_until: dt.datetime | None = None
    refresh_token_expires_at: dt.datetime | None = None
    refresh_days_left: int | None = None
    note: str = ""

    @property
    def needs_connect(self) -> bool:
        return self.state is AccountState.NEEDS_CONNECT

    @property
    def state_text(self) -> str:
        """The state as a person reads it: the access token's expiry with it when one is valid."""
        if self.state is AccountState.TOKEN_VALID and self.access_token_valid_until is not None:
            return f"access token valid until {self.access_token_valid_until:%Y-%m-%d %H:%M} UTC"
        return self.state.value

    @property
    def refresh_text(self) -> str:
        """The refresh token's days left: `12 days left`, `lapsed 2026-03-01`, `none` or `-` (nothing to lapse)."""
        if self.grant_type == "client_credentials":
            return "-"
        if self.refresh_days_left is None:
            return "issue time unknown" if self.state is not AccountState.NEEDS_CONNECT else "none"
        if self.refresh_days_left < 0 and self.refresh_token_expires_at is not None:
            return f"lapsed {self.refresh_token_expires_at:%Y-%m-%d}"
        return f"{self.refresh_days_left} day{'' if self.refresh_days_left == 1 else 's'} left"

    @property
    def connect_hint(self) -> str:
        return f"{self.connect_command} --account {self.account}"

    def with_note(self, note: str) -> AccountStatus:
        return dataclasses.replace(self, note=note)

    def as_dict(self) -> dict[str, Any]:
        """The status for `--format json|csv` (the shared output writes the times as ISO 8601, UTC here)."""

        def when(value: dt.datetime | None) -> dt.datetime | None:
            return value.astimezone(dt.UTC) if value is not None else None

        return {
            "system": self.system,
            "account": self.account,
            "grant_type": self.grant_type,
            "state": self.state.value,
            "access_token_valid_until": when(self.access_token_valid_until),
            "refresh_token_expires_at": when(self.refresh_token_expires_at),
            "refresh_token_days_left": self.refresh_days_left,
            "needs_connect": self.needs_connect,
            "connect_command": self.connect_hint if self.needs_connect else None,
            "note": self.note,
        }


def account_status(account: OAuthAccount, name: str, *, now: dt.datetime | None = None) -> AccountStatus:
    """The status of one account block (loaded with or without its secrets: only `is None` is asked of them)."""
    now = now or dt.datetime.now(dt.UTC)
    grant_type = str(getattr(account, "grant_type", "authorization_code"))
    common: dict[str, Any] = {
        "system": account.system_name,
        "account": name,
        "grant_type": grant_type,
        "connect_command": account.connect_command,
    }
    valid_until = account.access_token_expires_at if account.access_token is not None else None
    if not account.uses_refresh_token:
        return AccountStatus(**common, state=AccountState.CLIENT_CREDENTIALS)
    if account.refresh_token is None:
        return AccountStatus(**common, state=AccountState.NEEDS_CONNECT, note="it holds no refresh token")
    expires = account.refresh_token_expires_at
    days_left = None if expires is None else (expires - now).days
    counted = {"refresh_token_expires_at": expires, "refresh_days_left": days_left}
    if expires is not None and expires <= now:
        return AccountStatus(
            **common,
            **counted,
            state=AccountState.NEEDS_CONNECT,
            note=f"its refresh token lapsed on {expires:%Y-%m-%d}",
        )
    if valid_until is not None and valid_until > now:
        return AccountStatus(**common, **counted, state=AccountState.TOKEN_VALID, access_token_valid_until=valid_until)
    return AccountStatus(**common, **counted, state=AccountState.CONNECTED)


def read_account_statuses(*, now: dt.datetime | None = None) -> list[AccountStatus]:
    """Every saved Visma.net and Nmbrs account block's status (Visma.net first, each by name); no secret is read."""
    from nmbrs_visma.blocks.listing import read_named_blocks
    from nmbrs_visma.blocks.nmbrs import NmbrsAccount
    from nmbrs_visma.blocks.visma_net import VismaNetAccount

    statuses: list[AccountStatus] = []
    for account_type in (VismaNetAccount, NmbrsAccount):
        for name, block in read_named_blocks(account_type):
            statuses.append(account_status(block, name, now=now))
    return statuses


# -- showing them ----------------------------------------------------------------------------------------------


def needs_connect_message(statuses: Iterable[AccountStatus]) -> str:
    """One line naming every account that needs `connect`, each with its command and why; empty when none does."""
    due = [status for status in statuses if status.needs_connect]
    if not due:
        return ""
    named = "; ".join(
        f"{status.system} account '{status.account}' needs `{status.connect_hint}`"
        + (f": {status.note}" if status.note else "")
        for status in due
    )
    return f"{len(due)} account(s) to connect again: {named}"


def summary(statuses: Sequence[AccountStatus]) -> str:
    """A line of counts by state."""
    if not statuses:
        return "no accounts configured"
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status.state.value] = counts.get(status.state.value, 0) + 1
    return f"{len(statuses)} account(s): " + ", ".join(f"{count} {state}" for state, count in counts.items())


class StatusRecord(dict[str, Any]):
    """An account's record for the shared output (nmbrs_visma/output.py): its `as_dict` values (what JSON and
    CSV hold), and the status itself, which the table's cells are made from."""

    def __init__(self, status: AccountStatus) -> None:
        super().__init__(status.as_dict())
        self.status = status


def _cell(text: Callable[[AccountStatus], str]) -> Callable[[Mapping[str, Any]], str]:
    return lambda record: text(record.status) if isinstance(record, StatusRecord) else ""


def layouts() -> list[list[Column]]:
    """The table's layouts, widest first (output.py prints the first that fits): names and days left never
    split, grants and states wrap at words; without the grant column where it does not fit (the state says
    client credentials)."""
    from nmbrs_visma.output import Column

    system = Column("system", "system", kind="code")
    account = Column("account", "account", kind="code")
    grant = Column("grant_type", "grant", show=_cell(lambda s: GRANT_NAMES.get(s.grant_type, s.grant_type)))
    state = Column("state", "state", show=_cell(lambda s: s.state_text), min_width=13)
    refresh = Column("refresh_token_days_left", "refresh token", kind="code", show=_cell(lambda s: s.refresh_text))
    return [[system, account, grant, state, refresh], [system, account, state, refresh]]


def artifact_rows(statuses: Sequence[AccountStatus]) -> list[dict[str, str]]:
    """Rows for a Prefect table artifact, keyed by column title."""
    return [
        {
            "system": status.system,
            "account": status.account,
            "grant": GRANT_NAMES.get(status.grant_type, status.grant_type),
            "state": status.state_text,
            "refresh token": status.refresh_text,
            "note": status.note or (f"connect again: {status.connect_hint}" if status.needs_connect else ""),
        }
        for status in statuses
    ]


def footer(statuses: Sequence[AccountStatus]) -> str:
    """Beneath the table: the counts, then a line per account that needs `connect` with its command and why."""
    lines = [summary(statuses)]
    lines += [
        f"  connect again: {status.connect_hint}" + (f" ({status.note})" if status.note else "")
        for status in statuses
        if status.needs_connect
    ]
    return "\n".join(lines)


def print_statuses(
    statuses: Sequence[AccountStatus], output: OutputFormat = "table", *, console: Console | None = None
) -> None:
    """The statuses as the shared output prints rows: a table that fits the console (its footer beneath), or
    JSON / CSV (the `as_dict` records) with nothing else on stdout."""
    from nmbrs_visma.output import print_rows

    print_rows(
        [StatusRecord(status) for status in statuses],
        layouts(),
        output=output,
        title="Accounts",
        footer=footer(statuses),
        row_style=lambda record: "red" if record.get("needs_connect") else None,
        console=console,
    )


def run_accounts(output: OutputFormat = "table") -> int:
    """`nmbrs-visma accounts`: exit status 1 when an account needs `connect`, 2 when they cannot be read."""
    from nmbrs_visma.output import fail, note

    try:
        statuses = read_account_statuses()
    except Exception as exc:  # the Prefect API unreachable, say: one line on stderr, no traceback
        return fail(f"cannot read the accounts: {exc}")
    if not statuses and output == "table":
        note("No accounts configured yet: add them with `nmbrs-visma config apply FILE`.")
        return 0
    print_statuses(statuses, output)
    return 1 if any(status.needs_connect for status in statuses) else 0
