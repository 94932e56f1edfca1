"""What metering publishes: the final usage of a closed month, and later corrections (B-04, B-08…B-16)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from billing_contracts.base import INT32_MAX, EnvironmentId, Message, YearMonth


class UsageFigures(BaseModel):
    """Billable usage of one environment in one month. Counts are exact integers or decimal hours."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    vouchers: int = Field(
        ge=0, le=INT32_MAX, description="Vouchers created in the month and not voided in it (B-08…B-11)."
    )
    payees: int = Field(
        ge=0, le=INT32_MAX, description="Distinct persons whose pay was calculated in the month (B-12)."
    )
    einvoices_sent: int = Field(
        ge=0, le=INT32_MAX, description="Sales invoices sent through an e-invoice channel (B-13)."
    )
    einvoices_received: int = Field(
        ge=0, le=INT32_MAX, description="Purchase invoices received through an e-invoice channel (B-13)."
    )
    billable_users: int = Field(
        ge=0, le=INT32_MAX, description="Tallennus users with a paid role at month end (B-16)."
    )
    signatures: int = Field(ge=0, le=INT32_MAX, description="Signers of completed signatures in the month.")
    billable_hours: dict[str, str] = Field(
        default_factory=dict,
        description="Billable hours per service product code, as decimal strings (I-07).",
    )


class _MonthlyUsage(Message):
    environment_id: EnvironmentId
    month: YearMonth

    key_field: ClassVar[str | None] = "environment_id"


class UsageFinalizedV1(_MonthlyUsage):
    """The final usage of one environment for a month that metering closed."""

    message_type: ClassVar[str] = "metering.usage-finalized"

    usage: UsageFigures = Field(description="Final usage figures of the month.")


class UsageAdjustedV1(_MonthlyUsage):
    """Usage of an already closed month changed through late events; invoicing bills the difference as a labelled correction.

    Both the corrected and the previously published figures are given, because charges are not
    linear in usage (included vouchers, minimum charges): the consumer prices both and bills the
    difference.
    """

    message_type: ClassVar[str] = "metering.usage-adjusted"

    adjustment_no: int = Field(
        ge=1, le=INT32_MAX, description="Running number of adjustments of this environment and month."
    )
    usage: UsageFigures = Field(description="Corrected usage figures of the month.")
    previous: UsageFigures = Field(description="The figures published before this adjustment.")


class MonthClosedV1(Message):
    """Metering closed a month: every environment with usage has had its `UsageFinalizedV1` published."""

    message_type: ClassVar[str] = "metering.month-closed"

    month: YearMonth
    environment_count: int = Field(
        ge=0,
        le=INT32_MAX,
        description="How many `UsageFinalizedV1` messages belong to this month; a consumer waits for all.",
    )

    key_field: ClassVar[str | None] = "month"
