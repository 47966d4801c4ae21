"""Domain models shared by the parser, the checks, the payload builder, the clients and the flows.

Money is exact: `Decimal` at the edges, integer cents inside frames. These models carry no Prefect.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PeriodType(StrEnum):
    """How often a company pays (Nmbrs `periodType`): 12 months, 13 four-week periods or 52/53 weeks a year."""

    MONTH = "month"
    FOUR_WEEKS = "4-weeks"
    WEEK = "1-week"


class PeriodMapping(StrEnum):
    """How a payroll period is matched to a Visma.net financial period (journals/calendar.py)."""

    NUMBER = "number"
    END_DATE = "end_date"


class PayrollRun(_Model):
    """One Nmbrs payroll run of one company (GET /api/companies/{id}/runs)."""

    company_id: str = Field(description="Nmbrs companyId (uuid), used in API paths")
    company_number: int = Field(description="Nmbrs company number, the key of the mapping")
    company_name: str = ""
    run_id: str = Field(description="Nmbrs payrollRunId (uuid)")
    run_number: int
    year: int
    period_start: int = Field(ge=1, le=53, description="first payroll period of the run")
    period_end: int = Field(ge=1, le=53, description="last payroll period of the run")
    description: str = ""
    locked: bool = False
    sequence: int = Field(
        default=1, ge=1, description="the run's place among the runs of its payroll period: 1 for the first"
    )
    period_type: PeriodType = Field(default=PeriodType.MONTH, description="the company's payroll frequency")

    @property
    def reference(self) -> str:
        """The run's reference, identical on every line of every period's transaction (max 15 chars): its year,
        period and place in the period, the same from the API and from a journal file (`--run`)."""
        return f"NM{self.year % 100:02d}{self.period_end:02d}R{self.sequence}"[:15]


class DimensionSetting(_Model):
    """A Nmbrs dimension (cost center or cost unit) mapped to a Visma.net subaccount segment."""

    enabled: bool = False
    description: str = Field(default="", description="segment description in Visma.net, e.g. 'Department'")
    default: str = Field(
        default="",
        description="the segment value of lines without one (default: the all-zero value, if Visma.net holds it)",
    )


class ClosedPeriodPolicy(StrEnum):
    REFUSE = "refuse"
    NEXT_OPEN = "next_open"


class AdministrationMapping(_Model):
    """One Nmbrs company mapped to one Visma.net administration (tenant, branch, ledger)."""

    nmbrs_company: int = Field(description="Nmbrs company number")
    visma_account: str = Field(description="name of the Visma.net account (block) holding tenant + credentials")
    branch: str
    ledger: str
    cost_center: DimensionSetting = DimensionSetting()
    cost_unit: DimensionSetting = DimensionSetting()
    subaccount_dimension: str = "SUBACCOUNT"
    account_translation: dict[str, str] = Field(default_factory=dict, description="Nmbrs account -> Visma account")
    test_company: bool = False
    debtor_blocked: bool = False
    closed_period_policy: ClosedPeriodPolicy = ClosedPeriodPolicy.REFUSE
    release: bool = False
    hold: bool = False
    period_type: PeriodType = Field(
        default=PeriodType.MONTH, description="the payroll frequency of a journal file (the API's is read from Nmbrs)"
    )
    period_mapping: PeriodMapping | None = Field(
        default=None, description="how payroll periods become financial periods; monthly payrolls default to number"
    )

    @model_validator(mode="after")
    def _mapped_periods(self) -> AdministrationMapping:
        if self.period_type is not PeriodType.MONTH and self.period_mapping is None:
            raise ValueError(
                f"company {self.nmbrs_company}: a {self.period_type} payroll needs period_mapping "
                "(number: payroll period N is financial period YYYYNN; end_date: the period holding its last day)"
            )
        return self

    def period_mapping_for(self, period_type: PeriodType) -> PeriodMapping | None:
        """The mapping of a payroll of `period_type`: the one given, `number` for a monthly payroll, else None."""
        if self.period_mapping is not None:
            return self.period_mapping
        return PeriodMapping.NUMBER if period_type is PeriodType.MONTH else None


class FinancialPeriod(_Model):
    """A Visma.net financial period (GET /v1/financialPeriod)."""

    period_id: str = Field(pattern=r"^\d{6}$", description="YYYYPP")
    start_date: dt.date
    end_date: dt.date
    active: bool = True
    closed_in_gl: bool = False


class LedgerAccount(_Model):
    """A Visma.net general-ledger account (GET /v1/account)."""

    number: str
    description: str = ""
    active: bool = True


class Segment(_Model):
    """A segment of the Visma.net SUBACCOUNT dimension, with its values (value -> active)."""

    segment_id: int
    description: str
    length: int
    values: dict[str, bool] = Field(default_factory=dict)


class AdministrationReference(_Model):
    """What Visma.net holds for one administration, read once per run, that checks and mapping need."""

    tenant_id: str = ""
    periods: dict[str, FinancialPeriod] = Field(default_factory=dict)
    accounts: dict[str, LedgerAccount] = Field(default_factory=dict)
    segments: tuple[Segment, ...] = ()


RefusalCode = Literal[
    "test_company",
    "debtor_blocked",
    "not_authorised",
    "unmapped_company",
    "run_not_locked",
    "dimension_not_activated",
    "segment_not_found",
    "segment_default_missing",
    "unknown_account",
    "inactive_account",
    "unknown_segment_value",
    "inactive_segment_value",
    "period_missing",
    "period_inactive",
    "period_closed",
    "period_not_mapped",
    "not_balanced",
    "invalid_journal",
    "duplicate_mapping",
    "amount_too_large",
]


class Refusal(_Model):
    """One reason a company's run cannot be sent; `message` names company, run, period, line or field."""

    code: RefusalCode
    message: str
    company: int | None = Field(default=None, description="Nmbrs company number")
    period_id: str | None = None


class JournalLine(_Model):
    """One Nmbrs journal line at the edge (tests, previews); inside the pipeline lines live in a frame."""

    transaction: int
    line: int
    period_id: str
    date: dt.date
    account: str
    cost_center: str = ""
    cost_unit: str = ""
    debit: Decimal = Decimal("0.00")
    credit: Decimal = Decimal("0.00")
    description: str = ""

    @field_validator("debit", "credit")
    @classmethod
    def _two_places(cls, value: Decimal) -> Decimal:
        return value.quantize(Decimal("0.01"))
