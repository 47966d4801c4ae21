"""What a run works on and through: the selected companies, and the accounts' clients shared by all of them.

`select_companies` turns the saved mappings into the run's companies (and the rows of those it cannot post:
unmapped, mapped twice). `connect_accounts` makes every needed account usable once per run: tokens renewed
under each rotating account's lock, one client per account, each Nmbrs account's company list read once.
Each tenant's reference data is read later, on first need, by its first company's task (tasks/reference.py),
and kept here for the rest of the run.

A company mapped without an Nmbrs account is posted from journal files only: a run reading from the Nmbrs API
refuses it (`Connections.problem`, code `unmapped_company`, naming the company) while the others go on, and
no Nmbrs account is connected for it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prefect.futures import PrefectFuture

from nmbrs_visma.blocks.listing import read_named_blocks
from nmbrs_visma.blocks.mapping import LoadedMappings
from nmbrs_visma.blocks.nmbrs import NmbrsAccount
from nmbrs_visma.blocks.visma_net import VismaNetAccount
from nmbrs_visma.journals.models import AdministrationMapping, Refusal
from nmbrs_visma.results import Status, StatusRow
from nmbrs_visma.tasks.extract import find_nmbrs_companies
from nmbrs_visma.tasks.plan import refused_row
from nmbrs_visma.tasks.reference import References
from nmbrs_visma.tasks.tokens import AccountNotAuthorised, System, TokenStatus, missing_account, refresh_token

if TYPE_CHECKING:
    from nmbrs_visma.clients.nmbrs import NmbrsClient, NmbrsCompany
    from nmbrs_visma.clients.visma_connect import VismaConnectAuth
    from nmbrs_visma.clients.visma_net import VismaNetClient

logger = logging.getLogger(__name__)


@dataclass
class Selection:
    """The mapped companies a run works on, and the rows of those it cannot (unmapped, mapped twice).

    `nmbrs_accounts` has every company of `mappings`: its Nmbrs account, or None (journal files only).
    """

    mappings: dict[int, AdministrationMapping]
    nmbrs_accounts: dict[int, str | None]
    rows: list[StatusRow] = field(default_factory=list)


def select_companies(loaded: LoadedMappings, companies: Sequence[int] | None) -> Selection:
    wanted = sorted(set(companies)) if companies else sorted(set(loaded.mappings) | set(loaded.duplicates))
    selection = Selection(mappings={}, nmbrs_accounts={})
    duplicates = {refusal.company: refusal for refusal in loaded.refusals()}
    for company in wanted:
        if company in duplicates:
            selection.rows.append(refused_row(company, [duplicates[company]]))
        elif company not in loaded.mappings:
            unmapped = Refusal(
                code="unmapped_company",
                company=company,
                message=f"company {company} has no administration mapping (add it to the config and apply it)",
            )
            selection.rows.append(refused_row(company, [unmapped]))
        else:
            selection.mappings[company] = loaded.mappings[company]
            selection.nmbrs_accounts[company] = loaded.nmbrs_accounts.get(company)
    return selection


@dataclass
class Connections:
    """Clients and per-run reads, shared by every company of the run; `unavailable` says why an account is out.

    `use_nmbrs`: the run reads its journals from the Nmbrs API (no journal file given).
    """

    visma: dict[str, VismaNetClient] = field(default_factory=dict)
    tenants: dict[str, str] = field(default_factory=dict)  # Visma.net account -> its block's tenant id
    nmbrs: dict[str, NmbrsClient] = field(default_factory=dict)
    references: References = field(default_factory=References)  # each tenant's, read on first need
    nmbrs_companies: dict[str, dict[int, NmbrsCompany]] = field(default_factory=dict)
    unavailable: dict[tuple[str, str], tuple[Status, Refusal]] = field(default_factory=dict)
    use_nmbrs: bool = False

    def close(self) -> None:
        for account in list(self.visma):
            self.release_visma(account)
        for client in self.nmbrs.values():
            _close(client)

    def release_visma(self, account: str, *, closer: Executor | None = None) -> None:
        """Close `account`'s client and its auth (built for it from the block) once the run is done with them:
        their connections and token go now, not at the end of a run of hundreds of accounts. With `closer`,
        the closing (system calls) happens there, off the caller's thread."""
        client = self.visma.pop(account, None)
        if client is not None:
            if closer is None:
                _close_client(client)
            else:
                closer.submit(_close_client, client)

    def problem(self, mapping: AdministrationMapping, nmbrs_account: str | None) -> tuple[Status, Refusal] | None:
        """Why the company of `mapping` cannot be worked on in this run, or None.

        `nmbrs_account` is the account its journals are read with, None when they are not read from Nmbrs:
        in a run from the Nmbrs API that means the company has no Nmbrs account (journal files only), a
        refusal of its own, reported before any account's trouble (it is the configuration, not an outage).
        """
        if self.use_nmbrs and nmbrs_account is None:
            return Status.REFUSED, no_nmbrs_account(mapping.nmbrs_company)
        if ("visma", mapping.visma_account) in self.unavailable:
            return self.unavailable[("visma", mapping.visma_account)]
        if nmbrs_account is not None:
            for key in (("nmbrs", nmbrs_account), ("nmbrs-companies", nmbrs_account)):
                if key in self.unavailable:
                    return self.unavailable[key]
        return None


def no_nmbrs_account(company: int) -> Refusal:
    """The refusal of a company mapped without an Nmbrs account in a run that reads from the Nmbrs API."""
    return Refusal(
        code="unmapped_company",
        company=company,
        message=(
            f"company {company} has no Nmbrs account in its mapping (journal files only): post it with "
            "--journal-file, or add nmbrs_account to its mapping"
        ),
    )


def _close(closable: VismaNetClient | NmbrsClient | VismaConnectAuth) -> None:
    try:
        closable.close()
    except Exception as exc:  # closing is best effort
        logger.debug("closing %r failed: %s", closable, exc)


def _close_client(client: VismaNetClient) -> None:
    _close(client)
    _close(client.auth)


def _failure(system: str, account: str, exc: BaseException) -> tuple[Status, Refusal]:
    if isinstance(exc, AccountNotAuthorised):
        return Status.REFUSED, exc.refusal()
    message = f"{system} account '{account}': {type(exc).__name__}: {exc}"
    return Status.FAILED, Refusal(code="not_authorised", message=message)


def connect_accounts(selection: Selection, *, use_nmbrs: bool) -> Connections:
    """Make every needed account usable: a service account's client straight from its block (it fetches a
    token on first use; nothing rotates, so no lock); a rotating account's token refreshed first, one refresh
    per account at a time; each Nmbrs account's company list read once.

    With `use_nmbrs`, a company without an Nmbrs account is left out (it is refused, `Connections.problem`):
    neither an Nmbrs nor a Visma.net account is connected for it."""
    connections = Connections(use_nmbrs=use_nmbrs)
    workable = {
        company: mapping
        for company, mapping in selection.mappings.items()
        if not use_nmbrs or selection.nmbrs_accounts.get(company) is not None
    }
    visma_accounts = sorted({mapping.visma_account for mapping in workable.values()})
    nmbrs_accounts = (
        sorted({account for company in workable if (account := selection.nmbrs_accounts.get(company)) is not None})
        if use_nmbrs
        else []
    )
    refreshes: dict[tuple[System, str], PrefectFuture[TokenStatus]] = {}
    saved = dict(read_named_blocks(VismaNetAccount, include_secrets=True)) if visma_accounts else {}
    for name in visma_accounts:
        block = saved.get(name)
        if block is None:
            connections.unavailable[("visma", name)] = _failure("visma", name, missing_account(VismaNetAccount, name))
        elif block.uses_refresh_token:
            refreshes[("visma", name)] = refresh_token.submit("visma", name)
        else:
            connections.tenants[name] = block.tenant_id
            connections.visma[name] = block.get_client()
    refreshes |= {("nmbrs", name): refresh_token.submit("nmbrs", name) for name in nmbrs_accounts}
    for (system, name), future in refreshes.items():
        try:
            future.result()
            if system == "visma":
                block = VismaNetAccount.load(name, _sync=True)
                connections.tenants[name] = block.tenant_id
                connections.visma[name] = block.get_client()
            else:
                connections.nmbrs[name] = NmbrsAccount.load(name, _sync=True).get_client()
        except Exception as exc:
            connections.unavailable[(system, name)] = _failure(system, name, exc)

    listings = {name: find_nmbrs_companies.submit(name, client) for name, client in connections.nmbrs.items()}
    for name, future in listings.items():
        try:
            connections.nmbrs_companies[name] = future.result()
        except Exception as exc:
            connections.unavailable[("nmbrs-companies", name)] = (
                Status.FAILED,
                Refusal(code="not_authorised", message=f"Nmbrs account '{name}': listing companies failed: {exc}"),
            )
    return connections
