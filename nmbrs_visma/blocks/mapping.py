"""The administration mapping block: one Nmbrs company -> one Visma.net administration, one block per company.

Why a block per company: a bureau edits one company's mapping in the Prefect UI without touching the others,
and `nmbrs-visma config apply` writes each as `company-<number>`. `load_mappings` reads them all (paged) and
sets aside a company mapped by more than one block: it is refused (`duplicate_mapping`), never guessed.
A mapping without an Nmbrs account (`nmbrs_account` None) belongs to a bureau that posts that company from
journal files only; it is carried through as None (never a made-up "default"), and a run reading from the
Nmbrs API refuses that company (flows/connections.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, field_validator, model_validator

from nmbrs_visma.blocks.listing import read_named_blocks
from nmbrs_visma.blocks.schema import CachedJsonSchema
from nmbrs_visma.journals.models import (
    AdministrationMapping,
    ClosedPeriodPolicy,
    DimensionSetting,
    PeriodMapping,
    PeriodType,
    Refusal,
)


class CostCenterSetting(DimensionSetting):
    """Post each line's Nmbrs cost center as the value of a Visma.net subaccount segment, found by the segment's
    description."""

    model_config = ConfigDict(title="Cost center")

    enabled: bool = Field(
        default=False, title="Post cost centers", description="Post each line's cost center; off: it is not posted."
    )
    description: str = Field(
        default="",
        title="Segment description",
        description="The description of the Visma.net subaccount segment that holds cost centers, e.g. Department.",
    )
    default: str = Field(
        default="",
        title="Default segment value",
        description="The segment value of lines without a cost center (balance-sheet lines); empty: the segment's "
        "all-zero value, if Visma.net holds it.",
    )


class CostUnitSetting(DimensionSetting):
    """Post each line's Nmbrs cost unit as the value of a Visma.net subaccount segment, found by the segment's
    description."""

    model_config = ConfigDict(title="Cost unit")

    enabled: bool = Field(
        default=False, title="Post cost units", description="Post each line's cost unit; off: it is not posted."
    )
    description: str = Field(
        default="",
        title="Segment description",
        description="The description of the Visma.net subaccount segment that holds cost units, e.g. Project.",
    )
    default: str = Field(
        default="",
        title="Default segment value",
        description="The segment value of lines without a cost unit (balance-sheet lines); empty: the segment's "
        "all-zero value, if Visma.net holds it.",
    )


def mapping_block_name(company: int) -> str:
    """The block name `config apply` gives a company's mapping."""
    return f"company-{company}"


class AdministrationMappingBlock(CachedJsonSchema, Block):
    """One Nmbrs company mapped to one Visma.net administration (tenant, branch, ledger) and its dimensions."""

    _block_type_name = "Nmbrs to Visma.net Administration Mapping"
    _block_type_slug = "nmbrs-visma-administration-mapping"
    _documentation_url = "https://docs.developers.visma.com/apis/visma-net-erp/"
    _description = (
        "Maps one Visma Nmbrs company to one Visma.net ERP administration: the Visma.net account block "
        "(tenant), branch and ledger, cost center / cost unit as subaccount segments found by description, "
        "an optional ledger account translation, and what to do with a closed financial period."
    )
    _code_example = """
    ```python
    from nmbrs_visma.blocks import AdministrationMappingBlock

    administration_mapping_block = AdministrationMappingBlock.load("BLOCK_NAME")
    mapping = administration_mapping_block.to_mapping()
    ```
    """

    nmbrs_company: int = Field(title="Nmbrs company number", description="The Nmbrs company number.")
    nmbrs_account: str | None = Field(
        default=None,
        title="Nmbrs account block",
        description="The name of the Nmbrs Account block this company's payroll runs are read with; empty: the "
        "company is posted from journal files only.",
    )
    visma_account: str = Field(
        title="Visma.net account block",
        description="The name of the Visma.net Account block of the administration (its tenant and credentials).",
    )
    branch: str = Field(title="Branch", description="The Visma.net branch number journal transactions are booked in.")
    ledger: str = Field(title="Ledger", description="The Visma.net ledger id, e.g. L.")
    cost_center: CostCenterSetting = Field(
        default_factory=CostCenterSetting,
        title="Cost center",
        description="Whether and how the Nmbrs cost center of each line (dim2) is posted: as the value of the "
        "Visma.net subaccount segment with the description given here.",
    )
    cost_unit: CostUnitSetting = Field(
        default_factory=CostUnitSetting,
        title="Cost unit",
        description="Whether and how the Nmbrs cost unit of each line (dim3) is posted: as the value of the "
        "Visma.net subaccount segment with the description given here.",
    )
    subaccount_dimension: str = Field(
        default="SUBACCOUNT",
        title="Subaccount dimension",
        description="The Visma.net dimension id that holds the subaccount segments.",
    )
    account_translation: dict[str, str] = Field(
        default_factory=dict,
        title="Ledger account translation",
        description="Nmbrs ledger account -> Visma.net account, for accounts numbered differently.",
    )
    test_company: bool = Field(
        default=False, title="Test company", description="A test company: reported as skipped, never posted."
    )
    debtor_blocked: bool = Field(
        default=False, title="Debtor blocked", description="The company's debtor is blocked: refused, never posted."
    )
    closed_period_policy: ClosedPeriodPolicy = Field(
        default=ClosedPeriodPolicy.REFUSE,
        title="Closed financial period",
        description="A closed financial period: refuse (default) or book in the first open period after it.",
    )
    release: bool = Field(
        default=False, title="Release", description="Release each journal transaction after creating it."
    )
    hold: bool = Field(default=False, title="Hold", description="Create journal transactions on hold.")
    period_type: PeriodType = Field(
        default=PeriodType.MONTH,
        title="Payroll frequency (journal files)",
        description="How often the company pays, for journal files (from the Nmbrs API it is read from Nmbrs).",
    )
    period_mapping: PeriodMapping | None = Field(
        default=None,
        title="Period mapping",
        description="How payroll periods become financial periods: number (period N is YYYYNN) or end_date (the "
        "financial period holding the payroll period's last day). Required for 4-weekly and weekly payrolls.",
    )

    @field_validator("cost_center", "cost_unit", mode="before")
    @classmethod
    def _dimension(cls, value: Any) -> Any:
        """A domain `DimensionSetting` (from `config apply` or code) is taken as its values."""
        return value.model_dump() if isinstance(value, DimensionSetting) else value

    @model_validator(mode="after")
    def _valid_mapping(self) -> AdministrationMappingBlock:
        """What the domain mapping refuses (a 4-weekly payroll without a period mapping) the block refuses."""
        self.to_mapping()
        return self

    @field_validator("nmbrs_account", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        """A field cleared in the Prefect UI form may come back as "": that too means journal files only."""
        return None if isinstance(value, str) and not value.strip() else value

    def to_mapping(self) -> AdministrationMapping:
        """The domain mapping the Prefect-free core works with (plain `DimensionSetting`s, not the form's kinds)."""
        values = {name: getattr(self, name) for name in AdministrationMapping.model_fields}
        for name in ("cost_center", "cost_unit"):
            values[name] = DimensionSetting(**values[name].model_dump())
        return AdministrationMapping(**values)

    @classmethod
    def from_mapping(
        cls, mapping: AdministrationMapping, *, nmbrs_account: str | None = None
    ) -> AdministrationMappingBlock:
        """The block of a domain mapping; without `nmbrs_account` the company is posted from journal files only."""
        return cls(**mapping.model_dump(), nmbrs_account=nmbrs_account)


@dataclass(frozen=True)
class LoadedMappings:
    """Every mapped company; a company claimed by several blocks is only in `duplicates`.

    `nmbrs_accounts` has every mapped company: its Nmbrs account block's name, or None for a company posted
    from journal files only.
    """

    mappings: dict[int, AdministrationMapping] = field(default_factory=dict)
    nmbrs_accounts: dict[int, str | None] = field(default_factory=dict)
    block_names: dict[int, str] = field(default_factory=dict)
    duplicates: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def refusals(self) -> list[Refusal]:
        """A `duplicate_mapping` refusal per company mapped twice, naming the blocks."""
        return [
            Refusal(
                code="duplicate_mapping",
                company=company,
                message=(
                    f"company {company} is mapped by more than one administration mapping block "
                    f"({', '.join(names)}); keep one"
                ),
            )
            for company, names in sorted(self.duplicates.items())
        ]

    @property
    def companies(self) -> list[int]:
        return sorted(self.mappings)


def group_mappings(blocks: list[tuple[str, AdministrationMappingBlock]]) -> LoadedMappings:
    """Index named mapping blocks by company, setting aside companies claimed twice."""
    by_company: dict[int, list[tuple[str, AdministrationMappingBlock]]] = defaultdict(list)
    for name, block in blocks:
        by_company[block.nmbrs_company].append((name, block))
    loaded = LoadedMappings()
    for company, claims in sorted(by_company.items()):
        if len(claims) > 1:
            loaded.duplicates[company] = tuple(sorted(name for name, _ in claims))
            continue
        name, block = claims[0]
        loaded.mappings[company] = block.to_mapping()
        loaded.nmbrs_accounts[company] = block.nmbrs_account
        loaded.block_names[company] = name
    return loaded


def read_mapping_blocks() -> list[tuple[str, AdministrationMappingBlock]]:
    """Every saved administration mapping block, with its name."""
    return read_named_blocks(AdministrationMappingBlock)


def load_mappings() -> LoadedMappings:
    """All administration mappings saved in Prefect, by Nmbrs company number."""
    return group_mappings(read_mapping_blocks())
