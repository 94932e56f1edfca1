"""What the repositories hand to use cases and routes: plain records of procountor-sync's tables.

Use cases and routes never see SQLAlchemy rows (import-linter's "no SQL in use cases and routes",
issue 9); `repository` builds these from its rows, field for field by column name.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One thing to hand over to Procountor (a row of `deliveries`): its kind, payload and progress."""

    delivery_id: str
    kind: str
    invoice_id: str | None
    invoice_number: str | None
    payer_business_id: str | None
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: dt.datetime
    leased_by: str | None
    leased_until: dt.datetime | None
    last_error: str | None
    hold_reason: str | None
    failure_announced: bool
    procountor_partner_id: str | None
    procountor_invoice_id: str | None
    procountor_status: str | None
    changed_by: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def document_id(self) -> str:
        """Our invoice's (or credit note's) id: every invoice and credit-note delivery has one."""
        if self.invoice_id is None:
            raise ValueError(f"delivery {self.delivery_id} is about no invoice")
        return self.invoice_id


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryAction:
    """One operator's requeue or cancel of a delivery: who (the token's subject), when, why."""

    id: int
    delivery_id: str
    action: str
    actor: str
    reason: str | None
    status_after: str
    at: dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class InvoiceState:
    """One of our invoices or credit notes as it stands in Procountor (payments, status, dunning)."""

    invoice_id: str
    procountor_invoice_id: str
    procountor_invoice_number: int | None
    kind: str
    invoice_number: str
    payer_business_id: str
    payer_name: str
    reference_number: str | None
    invoice_date: dt.date
    due_date: dt.date
    total_gross: Decimal
    settled: Decimal
    procountor_status: str
    payment_status: str
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncedCustomer:
    """A payer as last synced with its Procountor customer: the base of the three-way merge (I-02)."""

    business_id: str
    payer_id: str
    procountor_partner_id: str
    version: str | None
    base: dict[str, Any]
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncedProduct:
    """A price-list product as last synced with Procountor's product register (I-02)."""

    product_code: str
    procountor_product_id: str
    version: str | None
    base: dict[str, Any]
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Mismatch:
    """Totals Procountor computed otherwise than we did, for finance (I-01)."""

    invoice_id: str
    invoice_number: str
    procountor_invoice_id: str
    ours: dict[str, Any]
    procountor: dict[str, Any]
    detected_at: dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class HourEntry:
    """An hour entry kept for the payroll import file (I-04)."""

    entry_id: str
    environment_id: str
    employee_id: str
    service_product_code: str
    work_date: dt.date
    hours: Decimal
    billable: bool
    recorded_at: dt.datetime
