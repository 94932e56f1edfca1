"""The contract aggregate, pure: one environment's contract as a frozen object that a repository
loads (`ContractRepository.get(id, for_update=True)`) and saves, and the rules that change it.

Its package, accounting firm and payer are those in effect today (Helsinki); changes for later
months wait in the term changes until their month comes (B-26, `contracts.domain.terms_in_effect`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from billing_contracts.contracts import BillingChannel, ContractSignedV1, PayerKind
from invoicing.contracts.domain import (
    ChangeRefusedError,
    ContractStatus,
    EffectiveTerms,
    Termination,
    status_on,
)
from invoicing.prices.domain import PackageCode
from invoicing.references import is_valid_business_id


def contract_id_for(environment_id: str) -> str:
    """One contract per environment: its id is derived from the environment's."""
    return f"C-{environment_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Contract:
    """One environment's contract as it stands today."""

    contract_id: str
    environment_id: str
    business_id: str
    company_name: str  # B-22: changes only by a change notice
    package: PackageCode
    production_date: dt.date  # B-01
    end_date: dt.date | None  # B-27: the last billable day, once notice is given
    payer_kind: PayerKind  # B-17
    payer_id: str  # business ID of the payer
    accounting_firm_id: str | None
    accounting_firm_business_id: str | None
    reseller_partner_id: str | None  # P-08
    own_use: bool  # P-07
    billing_address: Mapping[str, Any]  # `PostalAddress` as JSON
    billing_channel: BillingChannel  # B-21
    einvoice_address: Mapping[str, Any] | None  # `EInvoiceAddress` as JSON (B-20)
    billing_email: str | None
    billing_contact: Mapping[str, Any] | None  # `BillingContact` as JSON (B-24)
    status: ContractStatus
    created_at: dt.datetime
    updated_at: dt.datetime
    notice_given_on: dt.date | None = None  # B-27
    termination_reason: str | None = None
    data_retained_until: dt.date | None = None  # B-27
    einvoice_address_ends_on: dt.date | None = None  # B-28
    predecessor_contract_id: str | None = None  # B-28
    successor_contract_id: str | None = None  # B-28

    @property
    def terms(self) -> EffectiveTerms:
        """The package, firm and payer in effect today."""
        return EffectiveTerms(
            package=self.package,
            accounting_firm_id=self.accounting_firm_id,
            accounting_firm_business_id=self.accounting_firm_business_id,
            payer_kind=self.payer_kind,
            payer_id=self.payer_id,
        )

    def fields(self, names: Iterable[str]) -> dict[str, Any]:
        """Some fields by name (for the audit's before and after)."""
        return {name: getattr(self, name) for name in names}

    def changed(self, **values: Any) -> Contract:
        """The contract with `values` set (field names as on the contract; vocabulary as text or enum)."""
        for name, kind in _VOCABULARY.items():
            if name in values:
                values[name] = kind(values[name])
        return dataclasses.replace(self, **values)

    def differences(self, other: Contract) -> dict[str, Any]:
        """The fields whose value in `other` differs from this one's, with `other`'s values."""
        return {
            f.name: getattr(other, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        }

    def in_effect(self, terms: EffectiveTerms, *, today: dt.date, now: dt.datetime) -> Contract:
        """The contract with today's terms (B-26) and the status of today (B-01, B-27)."""
        return dataclasses.replace(
            self,
            package=terms.package,
            accounting_firm_id=terms.accounting_firm_id,
            accounting_firm_business_id=terms.accounting_firm_business_id,
            payer_kind=terms.payer_kind,
            payer_id=terms.payer_id,
            status=status_on(today, production_date=self.production_date, end_date=self.end_date),
            updated_at=now,
        )

    def refuse_if_ended(self, today: dt.date) -> None:
        """B-27: an ended contract takes no more changes."""
        if self.end_date is not None and self.end_date < today:
            raise ChangeRefusedError("B-27", f"the contract ended on {self.end_date.isoformat()}")

    def ending_values(self, ends: Termination, *, reason: str | None) -> dict[str, Any]:
        """B-27: the fields an end by notice sets."""
        return {
            "notice_given_on": ends.notice_given_on,
            "end_date": ends.end_date,
            "data_retained_until": ends.data_retained_until,
            "termination_reason": reason,
        }

    def successor_channel(self, new_einvoice_address: Mapping[str, Any] | None) -> tuple[BillingChannel, Any]:
        """B-28: e-invoice addresses are per business ID; without one for the new ID, email or paper."""
        if new_einvoice_address is not None:
            return BillingChannel.EINVOICE, new_einvoice_address
        if self.billing_channel is not BillingChannel.EINVOICE:
            return self.billing_channel, None
        return (BillingChannel.EMAIL if self.billing_email else BillingChannel.PAPER), None


_VOCABULARY: dict[str, Any] = {
    "package": PackageCode,
    "payer_kind": PayerKind,
    "billing_channel": BillingChannel,
    "status": ContractStatus,
}


def check_signing(c: ContractSignedV1) -> None:
    """What a signed contract must hold (B-17, B-20, B-21, B-28); refused with the rule otherwise."""
    if not is_valid_business_id(c.business_id):
        raise ChangeRefusedError("B-28", f"business ID {c.business_id} has an invalid check digit")
    if c.payer is PayerKind.ACCOUNTING_FIRM and c.accounting_firm_business_id is None:
        raise ChangeRefusedError(
            "B-17", "payer is the accounting firm but accounting_firm_business_id is missing"
        )
    if c.accounting_firm_business_id is not None and not is_valid_business_id(c.accounting_firm_business_id):
        raise ChangeRefusedError(
            "B-17", f"business ID {c.accounting_firm_business_id} has an invalid check digit"
        )
    if c.package is PackageCode.TALLENNUS and c.payer is not PayerKind.ACCOUNTING_FIRM:
        raise ChangeRefusedError("B-17", "a Tallennus environment is paid by its accounting firm")
    if c.billing_channel is BillingChannel.EINVOICE and c.einvoice_address is None:
        raise ChangeRefusedError("B-20", "billing channel einvoice needs an e-invoice address and operator")
    if c.billing_channel is BillingChannel.EMAIL and c.billing_email is None:
        raise ChangeRefusedError("B-21", "billing channel email needs a billing email")


def _json(model: Any) -> Any:
    return None if model is None else model.model_dump(mode="json")


def signed_contract(
    c: ContractSignedV1, *, today: dt.date, now: dt.datetime, predecessor_contract_id: str | None = None
) -> Contract:
    """The contract a `ContractSignedV1` creates (B-01, B-17), in the status of today."""
    payer_id = c.business_id if c.payer is PayerKind.COMPANY else str(c.accounting_firm_business_id)
    return Contract(
        contract_id=contract_id_for(c.environment_id),
        environment_id=c.environment_id,
        business_id=c.business_id,
        company_name=c.company_name,
        package=c.package,
        production_date=c.production_date,
        end_date=None,
        payer_kind=c.payer,
        payer_id=payer_id,
        accounting_firm_id=c.accounting_firm_id,
        accounting_firm_business_id=c.accounting_firm_business_id,
        reseller_partner_id=c.reseller_partner_id,
        own_use=c.own_use,
        billing_address=_json(c.billing_address),
        billing_channel=c.billing_channel,
        einvoice_address=_json(c.einvoice_address),
        billing_email=c.billing_email,
        billing_contact=_json(c.billing_contact),
        status=status_on(today, production_date=c.production_date, end_date=None),
        created_at=now,
        updated_at=now,
        predecessor_contract_id=predecessor_contract_id,
    )
