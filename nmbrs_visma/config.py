"""Accounts and administration mappings as code: `nmbrs-visma config apply FILE` / `config show`.

A bureau keeps one YAML file under version control and applies it; each account becomes a Prefect block
(`VismaNetAccount` / `NmbrsAccount`, named after its key), each company an `AdministrationMappingBlock`
named `company-<number>`. Secrets are never in the file: it names the environment variables that hold them.
Tokens already in an account block (from `nmbrs-visma connect`, or rotated since) survive a re-apply unless the
account's identity (token URL, client id, tenant, grant type) changed. The file is validated as a whole
before any block is written.

The `nmbrs` section is optional: a bureau that posts only journal files given by hand
(`nmbrs-visma post --journal-file FILE --company N`) needs no Nmbrs API account. A company's `nmbrs_account`
defaults to the only Nmbrs account when there is one, is None (journal files only) when there is none, and
must be named when there are several.

The file::

    visma_net:
      accounts:
        main:                                   # block name: lowercase letters, digits, dashes
          grant_type: client_credentials        # or authorization_code (then `nmbrs-visma connect visma`)
          client_id: my-visma-client
          client_secret_env: VISMA_CLIENT_SECRET  # the environment variable holding the secret
          tenant_id: "1234567"                  # the Visma.net company (service clients)
          # optional: base_url, token_url, authorize_url, scopes, redirect_uri, timeout_seconds (30)
    nmbrs:                                      # optional: none for journal files only
      accounts:
        default:
          client_id: my-nmbrs-client
          client_secret_env: NMBRS_CLIENT_SECRET
          subscription_key_env: NMBRS_SUBSCRIPTION_KEY
          # optional: base_url, token_url, authorize_url, scopes, redirect_uri, timeout_seconds,
          # refresh_token_lifetime_days
    companies:
      - nmbrs_company: 1001
        visma_account: main
        nmbrs_account: default                 # optional when there is one Nmbrs account or none
        branch: "1"
        ledger: L
        dimensions:                             # optional
          cost_center: {enabled: true, description: Department}
          cost_unit: {enabled: true, description: Project}
        # optional: subaccount_dimension (SUBACCOUNT), account_translation {"4000": "4001"},
        # test_company, debtor_blocked, closed_period_policy (refuse | next_open), release, hold,
        # period_mapping (number | end_date; required for 4-weekly and weekly payrolls),
        # period_type (month | 4-weeks | 1-week: for journal files; from the API it is read from Nmbrs)
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic import ValidationError as PydanticValidationError

from nmbrs_visma.blocks.listing import read_named_blocks
from nmbrs_visma.blocks.locks import administration_lock_name, ensure_locks, token_lock, token_lock_name
from nmbrs_visma.blocks.mapping import AdministrationMappingBlock, mapping_block_name, read_mapping_blocks
from nmbrs_visma.blocks.nmbrs import NmbrsAccount
from nmbrs_visma.blocks.oauth import OAuthAccount
from nmbrs_visma.blocks.visma_net import VismaNetAccount
from nmbrs_visma.journals.keys import administration_id
from nmbrs_visma.journals.models import ClosedPeriodPolicy, DimensionSetting, PeriodMapping, PeriodType

_BLOCK_NAME = re.compile(r"^[a-z0-9-]+$")
_IDENTITY_FIELDS = ("token_url", "client_id", "tenant_id", "grant_type")
NO_NMBRS_ACCOUNT = "none (journal files only)"  # `config show`'s Nmbrs account of a company without one


class ConfigError(Exception):
    """The configuration cannot be applied; `problems` lists every problem found, each naming where it is."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {problem}" for problem in problems))


# -- the file's schema ------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _AccountSpec(_Strict):
    base_url: str | None = None
    token_url: str | None = None
    authorize_url: str | None = None
    client_id: str = Field(min_length=1)
    client_secret_env: str = Field(min_length=1, description="environment variable holding the client secret")
    scopes: list[str] | None = None
    redirect_uri: str | None = None
    timeout_seconds: float | None = Field(default=None, gt=0, description="the API client's time-out (default 30)")


class VismaNetAccountSpec(_AccountSpec):
    grant_type: Literal["client_credentials", "authorization_code"] = "client_credentials"
    tenant_id: str = ""

    @field_validator("tenant_id", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class NmbrsAccountSpec(_AccountSpec):
    subscription_key_env: str = Field(min_length=1, description="environment variable holding the subscription key")
    refresh_token_lifetime_days: int | None = Field(default=None, ge=1)


class _Accounts(_Strict):
    accounts: dict[str, Any] = Field(default_factory=dict)


class DimensionsSpec(_Strict):
    cost_center: DimensionSetting = DimensionSetting()
    cost_unit: DimensionSetting = DimensionSetting()


class CompanySpec(_Strict):
    nmbrs_company: int = Field(gt=0)
    visma_account: str
    nmbrs_account: str | None = None
    branch: str
    ledger: str
    dimensions: DimensionsSpec = DimensionsSpec()
    subaccount_dimension: str = "SUBACCOUNT"
    account_translation: dict[str, str] = Field(default_factory=dict)
    test_company: bool = False
    debtor_blocked: bool = False
    closed_period_policy: ClosedPeriodPolicy = ClosedPeriodPolicy.REFUSE
    release: bool = False
    hold: bool = False
    period_type: PeriodType = PeriodType.MONTH
    period_mapping: PeriodMapping | None = None

    @field_validator("branch", "ledger", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("account_translation", mode="before")
    @classmethod
    def _text_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(key): str(target) for key, target in value.items()}
        return value


# -- validation into blocks -------------------------------------------------------------------------------


@dataclass
class PlannedConfig:
    """The blocks a configuration file describes, validated, not yet saved."""

    visma_accounts: dict[str, VismaNetAccount] = field(default_factory=dict)
    nmbrs_accounts: dict[str, NmbrsAccount] = field(default_factory=dict)
    mappings: dict[int, AdministrationMappingBlock] = field(default_factory=dict)


@dataclass
class AppliedConfig:
    """What `apply_config` did: account and mapping blocks written (or already equal), token locks, and
    mapping blocks in Prefect that the file does not mention (left alone: deleting is a person's decision)."""

    visma_accounts: list[str]
    nmbrs_accounts: list[str]
    mappings: list[str]
    unchanged_mappings: list[str]
    token_locks: list[str]  # of the accounts on a rotating refresh token
    not_in_file: list[str]
    posting_locks: list[str] = field(default_factory=list)  # created now: one per administration mapped to


def _where(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location) or "(top level)"


def _pydantic_problems(prefix: str, error: PydanticValidationError) -> list[str]:
    return [f"{prefix}: {_where(e['loc'])}: {e['msg']}" for e in error.errors(include_url=False, include_input=False)]


def _secret(env: Mapping[str, str], label: str, variable: str, field_name: str, problems: list[str]) -> SecretStr:
    value = env.get(variable)
    if not value:
        problems.append(f"{label}: environment variable {variable} ({field_name}) is not set")
        return SecretStr("")
    return SecretStr(value)


def _plan_accounts(
    section: Any, key: str, spec_type: type[_AccountSpec], env: Mapping[str, str], problems: list[str]
) -> dict[str, OAuthAccount]:
    planned: dict[str, OAuthAccount] = {}
    if section is None:
        return planned
    try:
        accounts = _Accounts.model_validate(section).accounts
    except PydanticValidationError as error:
        problems.extend(_pydantic_problems(key, error))
        return planned
    block_type: type[OAuthAccount] = VismaNetAccount if spec_type is VismaNetAccountSpec else NmbrsAccount
    for name, raw in accounts.items():
        label = f"{block_type.system_name} account '{name}'"
        if not _BLOCK_NAME.match(str(name)):
            problems.append(f"{label}: the name must be lowercase letters, digits and dashes (it names a block)")
            continue
        try:
            spec = spec_type.model_validate(raw or {})
        except PydanticValidationError as error:
            problems.extend(_pydantic_problems(label, error))
            continue
        values = spec.model_dump(exclude_none=True, exclude={"client_secret_env", "subscription_key_env"})
        values["client_secret"] = _secret(env, label, spec.client_secret_env, "client_secret_env", problems)
        if isinstance(spec, NmbrsAccountSpec):
            values["subscription_key"] = _secret(
                env, label, spec.subscription_key_env, "subscription_key_env", problems
            )
        if isinstance(spec, VismaNetAccountSpec) and spec.grant_type == "client_credentials" and not spec.tenant_id:
            problems.append(f"{label}: tenant_id is required for grant_type client_credentials")
        try:
            planned[name] = block_type(**values)
        except PydanticValidationError as error:
            problems.extend(_pydantic_problems(label, error))
    return planned


def _company_nmbrs_account(
    spec: CompanySpec, label: str, nmbrs: Mapping[str, OAuthAccount], problems: list[str]
) -> str | None:
    """The Nmbrs account a company's runs are read with, or None: posted from journal files only.

    Why these rules: a company named nothing is unambiguous only with one Nmbrs account (it uses that one) or
    none at all (a bureau posting journal files given by hand, with no Nmbrs API account); with several it
    must name one. Naming an account the file does not define is a problem in every case.
    """
    if spec.nmbrs_account is not None:
        if spec.nmbrs_account not in nmbrs:
            problems.append(f"{label}: nmbrs_account '{spec.nmbrs_account}' is not defined under nmbrs.accounts")
        return spec.nmbrs_account
    if len(nmbrs) == 1:
        return next(iter(nmbrs))
    if nmbrs:
        problems.append(
            f"{label}: nmbrs_account is required when there are several Nmbrs accounts ({', '.join(sorted(nmbrs))})"
        )
    return None


def _plan_companies(
    raw: Any, visma: Mapping[str, OAuthAccount], nmbrs: Mapping[str, OAuthAccount], problems: list[str]
) -> dict[int, AdministrationMappingBlock]:
    planned: dict[int, AdministrationMappingBlock] = {}
    if raw is None:
        return planned
    if not isinstance(raw, list):
        problems.append("companies: must be a list of company mappings")
        return planned
    numbers = Counter(item.get("nmbrs_company") for item in raw if isinstance(item, dict))
    problems.extend(
        f"company {number} is mapped {count} times; map each company once"
        for number, count in sorted(numbers.items(), key=lambda item: str(item[0]))
        if count > 1 and number is not None
    )
    for index, item in enumerate(raw):
        number = item.get("nmbrs_company") if isinstance(item, dict) else None
        label = f"companies[{index}] (company {number})" if number is not None else f"companies[{index}]"
        if number is not None and numbers[number] > 1:
            continue
        try:
            spec = CompanySpec.model_validate(item)
        except PydanticValidationError as error:
            problems.extend(_pydantic_problems(label, error))
            continue
        if spec.visma_account not in visma:
            problems.append(f"{label}: visma_account '{spec.visma_account}' is not defined under visma_net.accounts")
        nmbrs_account = _company_nmbrs_account(spec, label, nmbrs, problems)
        values = spec.model_dump(exclude={"dimensions"})
        values.update(
            nmbrs_account=nmbrs_account,
            cost_center=spec.dimensions.cost_center,
            cost_unit=spec.dimensions.cost_unit,
        )
        try:
            planned[spec.nmbrs_company] = AdministrationMappingBlock(**values)
        except PydanticValidationError as error:
            problems.extend(_pydantic_problems(label, error))
    return planned


def plan_config(data: Any, env: Mapping[str, str]) -> PlannedConfig:
    """Validate a configuration (parsed YAML) into blocks; raise `ConfigError` listing every problem."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError(["the file must be a mapping with visma_net, companies and (optionally) nmbrs"])
    unknown = sorted(set(data) - {"visma_net", "nmbrs", "companies"})
    problems.extend(f"{key}: unknown section (expected visma_net, nmbrs, companies)" for key in unknown)
    visma = _plan_accounts(data.get("visma_net"), "visma_net", VismaNetAccountSpec, env, problems)
    nmbrs = _plan_accounts(data.get("nmbrs"), "nmbrs", NmbrsAccountSpec, env, problems)
    mappings = _plan_companies(data.get("companies"), visma, nmbrs, problems)
    if problems:
        raise ConfigError(problems)
    return PlannedConfig(
        visma_accounts={name: block for name, block in visma.items() if isinstance(block, VismaNetAccount)},
        nmbrs_accounts={name: block for name, block in nmbrs.items() if isinstance(block, NmbrsAccount)},
        mappings=mappings,
    )


# -- writing the blocks -----------------------------------------------------------------------------------


def _keep_tokens(new: OAuthAccount, old: OAuthAccount) -> None:
    """Carry the stored tokens over when the account is still the same identity."""
    if any(getattr(new, name, None) != getattr(old, name, None) for name in _IDENTITY_FIELDS):
        return
    new.access_token = old.access_token
    new.access_token_expires_at = old.access_token_expires_at
    new.refresh_token = old.refresh_token
    new.refresh_token_issued_at = old.refresh_token_issued_at
    if isinstance(new, VismaNetAccount) and isinstance(old, VismaNetAccount) and not new.tenant_id:
        new.tenant_id = old.tenant_id  # filled in by `connect` for an interactive login


def _save_account(name: str, block: OAuthAccount) -> str | None:
    """Save an account block under its token lock, keeping tokens a refresh may be rotating right now.

    A service account has no stored tokens to keep (nothing rotates): it is saved as it is, without a lock.
    """
    account_type = type(block)
    if not block.uses_refresh_token:
        block.save(name, overwrite=True, _sync=True)
        return None
    with token_lock(account_type, name):
        try:
            old = account_type.load(name, _sync=True)
        except ValueError:  # no block of that name yet
            old = None
        if old is not None:
            _keep_tokens(block, old)
        block.save(name, overwrite=True, _sync=True)
    return token_lock_name(account_type, name)


def _mapping_values(block: AdministrationMappingBlock) -> dict[str, Any]:
    return {name: getattr(block, name) for name in AdministrationMappingBlock.model_fields}


def apply_config(data: Any, env: Mapping[str, str]) -> AppliedConfig:
    """Validate `data` (a parsed configuration file), then write its blocks and create the token locks and the
    posting lock of every administration it maps to (so a first run does not stop to make them)."""
    planned = plan_config(data, env)
    locks: list[str] = []
    for name, block in [*sorted(planned.visma_accounts.items()), *sorted(planned.nmbrs_accounts.items())]:
        if (lock := _save_account(name, block)) is not None:
            locks.append(lock)
    existing = dict(read_mapping_blocks())
    written: list[str] = []
    unchanged: list[str] = []
    for number, mapping in sorted(planned.mappings.items()):
        name = mapping_block_name(number)
        if name in existing and _mapping_values(existing[name]) == _mapping_values(mapping):
            unchanged.append(name)
            continue
        mapping.save(name, overwrite=True, _sync=True)
        written.append(name)
    posting_locks = ensure_locks(_posting_lock_names(planned))
    return AppliedConfig(
        visma_accounts=sorted(planned.visma_accounts),
        nmbrs_accounts=sorted(planned.nmbrs_accounts),
        mappings=written,
        unchanged_mappings=unchanged,
        token_locks=locks,
        not_in_file=sorted(set(existing) - set(written) - set(unchanged)),
        posting_locks=posting_locks,
    )


def _posting_lock_names(planned: PlannedConfig) -> set[str]:
    """The posting lock of each administration the mappings post to (none for an account without a tenant yet:
    its first run makes it)."""
    names: set[str] = set()
    for mapping in planned.mappings.values():
        account = planned.visma_accounts.get(mapping.visma_account)
        if account is not None and account.tenant_id:
            names.add(administration_lock_name(administration_id(account.tenant_id, mapping.branch, mapping.ledger)))
    return names


def load_config_file(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError([f"{path}: cannot read the file ({error.strerror})"]) from None
    except yaml.YAMLError as error:
        raise ConfigError([f"{path}: not valid YAML: {error}"]) from None


# -- the commands -----------------------------------------------------------------------------------------


def apply_config_file(path: Path) -> int:
    """`nmbrs-visma config apply FILE`: exit status 0 when applied, 2 when the file is refused."""
    from rich.console import Console

    console = Console()
    try:
        applied = apply_config(load_config_file(path), os.environ)
    except ConfigError as error:
        console.print(f"[red]{path}: not applied[/], nothing was changed:", highlight=False)
        for problem in error.problems:
            console.print(f"  - {problem}", highlight=False, markup=False)
        return 2
    console.print(
        f"Applied {path}: {len(applied.visma_accounts)} Visma.net account(s), "
        f"{len(applied.nmbrs_accounts)} Nmbrs account(s), {len(applied.mappings)} company mapping(s) written, "
        f"{len(applied.unchanged_mappings)} unchanged.",
        highlight=False,
    )
    if applied.posting_locks:
        console.print(
            f"Created {len(applied.posting_locks)} posting lock(s) on the Prefect server, one per administration.",
            highlight=False,
        )
    if applied.not_in_file:
        console.print(
            "Mapping blocks not in the file (left as they are; delete them in the Prefect UI if obsolete): "
            + ", ".join(applied.not_in_file),
            highlight=False,
        )
    return 0


def _masked(secret: SecretStr | None) -> str:
    return "set (hidden)" if secret is not None else "-"


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value is not None else "-"


def show_config() -> int:
    """`nmbrs-visma config show`: the accounts and mappings in Prefect, secrets masked."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    visma = Table(title="Visma.net accounts")
    for column in ("account", "grant", "tenant", "client id", "client secret", "access token until", "refresh token"):
        visma.add_column(column)
    for name, account in read_named_blocks(VismaNetAccount):
        visma.add_row(
            name,
            account.grant_type,
            account.tenant_id or "-",
            account.client_id,
            _masked(account.client_secret),
            _when(account.access_token_expires_at),
            _masked(account.refresh_token),
        )
    nmbrs = Table(title="Nmbrs accounts")
    for column in ("account", "client id", "client secret", "subscription key", "refresh token", "refresh expires"):
        nmbrs.add_column(column)
    for name, account in read_named_blocks(NmbrsAccount):
        nmbrs.add_row(
            name,
            account.client_id,
            _masked(account.client_secret),
            _masked(account.subscription_key),
            _masked(account.refresh_token),
            _when(account.refresh_token_expires_at),
        )
    companies = Table(title="Company mappings")
    for column in (
        "company",
        "block",
        "nmbrs account",
        "visma",
        "branch",
        "ledger",
        "cost center",
        "cost unit",
        "closed period",
        "periods",
        "flags",
    ):
        companies.add_column(column)
    for name, block in sorted(read_mapping_blocks(), key=lambda item: (item[1].nmbrs_company, item[0])):
        nmbrs_account = block.nmbrs_account or NO_NMBRS_ACCOUNT
        flags = [
            flag
            for flag, on in (
                ("test company", block.test_company),
                ("debtor blocked", block.debtor_blocked),
                ("release", block.release),
                ("hold", block.hold),
            )
            if on
        ]
        if block.account_translation:
            flags.append(f"{len(block.account_translation)} account translation(s)")
        companies.add_row(
            str(block.nmbrs_company),
            name,
            nmbrs_account,
            block.visma_account,
            block.branch,
            block.ledger,
            block.cost_center.description if block.cost_center.enabled else "-",
            block.cost_unit.description if block.cost_unit.enabled else "-",
            block.closed_period_policy.value,
            f"{block.period_mapping or 'number'}",
            ", ".join(flags) or "-",
        )
    for table in (visma, nmbrs, companies):
        console.print(table)
    return 0
