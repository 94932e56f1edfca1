"""Contract use cases that move a contract: to a new business ID (B-28, a successor contract, the old
one ending by B-27) and a Tallennus environment to another accounting firm (B-29, once both firms
have approved; then by B-26)."""

from __future__ import annotations

import dataclasses
from typing import Any

from billing_contracts.contracts import (
    ApprovingFirm,
    BusinessIdChangeRequestedV1,
    ContractSignedV1,
    TallennusFirmChangeApprovedV1,
)
from invoicing.calendar import YearMonth
from invoicing.contracts.changes import (
    Accepted,
    add_signed_contract,
    audit_and_announce,
    open_contract,
    refresh_and_announce,
    requested_by_of,
    schedule,
    terms_by_cut_off,
)
from invoicing.contracts.contract import Contract, check_signing
from invoicing.contracts.domain import (
    ChangeRefusedError,
    FirmApproval,
    Source,
    completed_firm_change,
    helsinki_date,
    record_firm_approval,
    termination,
)
from invoicing.contracts.repository import ContractRepository, approval_json
from invoicing.contracts.terms_repository import ContractTermsRepository
from service_runtime.clock import Clock
from service_runtime.database import Session


def _successor_signing(
    contract: Contract, c: BusinessIdChangeRequestedV1, terms_start: Any, start: Any
) -> ContractSignedV1:
    """B-28: the contract the new business ID and environment are signed with, continuing the old terms."""
    channel, einvoice = contract.successor_channel(
        None if c.new_einvoice_address is None else c.new_einvoice_address.model_dump(mode="json")
    )
    return ContractSignedV1.model_validate(
        {
            "event_id": c.event_id,
            "occurred_at": c.occurred_at,
            "producer": c.producer,
            "environment_id": c.new_environment_id,
            "business_id": c.new_business_id,
            "company_name": c.new_company_name,
            "package": terms_start.package,
            "production_date": start,
            "payer": terms_start.payer_kind,
            "accounting_firm_id": terms_start.accounting_firm_id,
            "accounting_firm_business_id": terms_start.accounting_firm_business_id,
            "reseller_partner_id": contract.reseller_partner_id,
            "own_use": contract.own_use,
            "billing_address": contract.billing_address,
            "billing_channel": channel,
            "einvoice_address": einvoice,
            "billing_email": contract.billing_email,
            "billing_contact": contract.billing_contact,
        }
    )


async def change_business_id(
    session: Session, c: BusinessIdChangeRequestedV1, clock: Clock, source: Source
) -> Accepted:
    """B-28: a new contract for the new business ID and environment; the old one ends by B-27."""
    contract = await open_contract(session, c.environment_id, clock, requested_by=c.requested_by)
    if c.new_business_id == contract.business_id:
        raise ChangeRefusedError("B-28", f"the contract already has the business ID {c.new_business_id}")
    if c.new_environment_id == c.environment_id:
        raise ChangeRefusedError("B-28", "a new business ID needs a new environment")
    if contract.successor_contract_id is not None:
        raise ChangeRefusedError(
            "B-28", f"the contract was already replaced by {contract.successor_contract_id}"
        )
    start = helsinki_date(c.requested_at)
    old_terms = await ContractTermsRepository(session).in_effect(contract.contract_id, YearMonth.of(start))
    successor = await ContractRepository(session).of_environment(c.new_environment_id, for_update=True)
    if successor is None:
        signed = _successor_signing(contract, c, old_terms, start)
        check_signing(signed)
        successor = await add_signed_contract(
            session, signed, clock, predecessor_contract_id=contract.contract_id
        )
    elif successor.predecessor_contract_id not in (None, contract.contract_id):
        raise ChangeRefusedError(
            "B-28", f"environment {c.new_environment_id} already replaces another contract"
        )
    elif successor.business_id != c.new_business_id:
        raise ChangeRefusedError(
            "B-28",
            f"environment {c.new_environment_id} has a contract for {successor.business_id}, not {c.new_business_id}",
        )
    new_id = successor.contract_id
    reason = f"business ID changed to {c.new_business_id}"
    ends = termination(c.requested_at)
    keep_end = contract.end_date is not None and contract.end_date <= ends.end_date
    values: dict[str, Any] = {"successor_contract_id": new_id}
    if keep_end:
        values["einvoice_address_ends_on"] = contract.end_date if contract.einvoice_address else None
    else:
        values |= contract.ending_values(ends, reason=reason)
        values["einvoice_address_ends_on"] = ends.end_date if contract.einvoice_address else None
    old = await audit_and_announce(
        session,
        contract,
        c,
        clock,
        name="business_id_changed",
        values=values,
        source=source,
        reason=reason,
        details={"successor_contract_id": new_id},
    )
    await refresh_and_announce(
        session,
        new_id,
        clock,
        change="signed_for_new_business_id",
        values={"predecessor_contract_id": contract.contract_id},
    )
    return dataclasses.replace(old, new_contract_id=new_id)


async def approve_tallennus_firm_change(
    session: Session, c: TallennusFirmChangeApprovedV1, clock: Clock, source: Source
) -> Accepted:
    """B-29: record one firm's approval; with both recorded, the move takes effect by B-26."""
    contract = await open_contract(session, c.environment_id, clock, requested_by=c.approved_by)
    contracts = ContractRepository(session)
    contract_id = contract.contract_id
    approval = FirmApproval(
        side=c.approving_firm,
        approved_at=c.approved_at,
        approved_by=c.approved_by.person_name,
        new_package=c.new_package,
        new_firm_business_id=c.new_accounting_firm_business_id,
    )
    pending = record_firm_approval(
        await contracts.pending_firm_change(contract_id),
        await terms_by_cut_off(session, contract_id, c.approved_at),
        old_firm_id=c.old_accounting_firm_id,
        new_firm_id=c.new_accounting_firm_id,
        approval=approval,
    )
    if not pending.is_complete:
        await contracts.save_pending_firm_change(contract_id, pending, clock.now())
        waiting_for = "new" if c.approving_firm is ApprovingFirm.OLD else "old"
        await contracts.record_change(
            contract_id=contract_id,
            at=clock.now(),
            change="tallennus_firm_change_approved",
            details=c.model_dump(mode="json"),
            requested_by=requested_by_of(c),
            outcome="pending",
            reason=f"waiting for the {waiting_for} firm's approval (B-29)",
            source=source,
            event_id=c.event_id,
        )
        return Accepted(
            contract_id=contract_id,
            change="tallennus_firm_change_approved",
            status=contract.status,
            pending=True,
        )
    assert pending.new_approval is not None
    business_id = pending.new_approval.new_firm_business_id or await contracts.known_business_id_of_firm(
        pending.new_firm_id
    )
    change = completed_firm_change(pending, end_date=contract.end_date, new_firm_business_id=business_id)
    await contracts.remove_pending_firm_change(contract_id)
    details = {
        "command": c.model_dump(mode="json"),
        "old_approval": approval_json(pending.old_approval),
        "new_approval": approval_json(pending.new_approval),
    }
    return await schedule(
        session, contract, change, c, clock, name="tallennus_firm_changed", source=source, details=details
    )
