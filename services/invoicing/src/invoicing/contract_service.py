"""Contract use cases: sign contracts and apply change requests, each in one transaction with its outbox rows."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_contracts.base import Message
from billing_contracts.contracts import ContractSignedV1, PayerKind
from billing_contracts.invoicing import ContractChangedV1, ContractStatus
from invoicing import contract_repository as repo
from invoicing import tables as t
from invoicing.calendar import HELSINKI
from invoicing.contract_rules import EffectiveTerms, initial_change
from invoicing.pricing import PackageCode
from invoicing.references import is_valid_business_id
from service_runtime.clock import Clock
from service_runtime.consumer import Rejection
from service_runtime.outbox import enqueue, outgoing

PRODUCER = "invoicing"


def _today(clock: Clock) -> dt.date:
    return clock.now().astimezone(HELSINKI).date()


class ContractRefusedError(Exception):
    """A contract or change request that the rules refuse; the message says why."""


def _check_contract(c: ContractSignedV1) -> None:
    if not is_valid_business_id(c.business_id):
        raise ContractRefusedError(f"business ID {c.business_id} has an invalid check digit")
    if c.payer is PayerKind.ACCOUNTING_FIRM and c.accounting_firm_business_id is None:
        raise ContractRefusedError(
            "payer is the accounting firm but accounting_firm_business_id is missing (B-17)"
        )
    if c.accounting_firm_business_id is not None and not is_valid_business_id(c.accounting_firm_business_id):
        raise ContractRefusedError(f"business ID {c.accounting_firm_business_id} has an invalid check digit")
    if c.package is PackageCode.TALLENNUS and c.payer is not PayerKind.ACCOUNTING_FIRM:
        raise ContractRefusedError("a Tallennus environment is paid by its accounting firm (B-17)")
    if c.billing_channel.value == "einvoice" and c.einvoice_address is None:
        raise ContractRefusedError("billing channel einvoice needs an e-invoice address and operator (B-20)")
    if c.billing_channel.value == "email" and c.billing_email is None:
        raise ContractRefusedError("billing channel email needs a billing email")


async def sign_contract(session: AsyncSession, c: ContractSignedV1, clock: Clock) -> str:
    """Create the contract of an environment (B-01, B-17); refuse a second one for the same environment."""
    _check_contract(c)
    now = clock.now()
    contract_id = f"C-{c.environment_id}"
    status = ContractStatus.ACTIVE if c.production_date <= _today(clock) else ContractStatus.SIGNED
    payer_id = c.business_id if c.payer is PayerKind.COMPANY else str(c.accounting_firm_business_id)
    row = {
        "contract_id": contract_id,
        "environment_id": c.environment_id,
        "business_id": c.business_id,
        "company_name": c.company_name,
        "package": c.package.value,
        "production_date": c.production_date,
        "end_date": None,
        "payer_kind": c.payer.value,
        "payer_id": payer_id,
        "accounting_firm_id": c.accounting_firm_id,
        "accounting_firm_business_id": c.accounting_firm_business_id,
        "reseller_partner_id": c.reseller_partner_id,
        "own_use": c.own_use,
        "billing_address": c.billing_address.model_dump(mode="json"),
        "billing_channel": c.billing_channel.value,
        "einvoice_address": c.einvoice_address.model_dump(mode="json") if c.einvoice_address else None,
        "billing_email": c.billing_email,
        "billing_contact": c.billing_contact.model_dump(mode="json") if c.billing_contact else None,
        "status": status.value,
        "created_at": now,
        "updated_at": now,
    }
    created = (
        await session.execute(
            insert(t.contracts).values(row).on_conflict_do_nothing().returning(t.contracts.c.contract_id)
        )
    ).scalar_one_or_none()
    if created is None:
        raise ContractRefusedError(f"environment {c.environment_id} already has a contract")
    change_id = await repo.record_change(
        session, contract_id=contract_id, at=now, change="signed", details=c.model_dump(mode="json")
    )
    signed = EffectiveTerms(
        package=c.package,
        accounting_firm_id=c.accounting_firm_id,
        accounting_firm_business_id=c.accounting_firm_business_id,
        payer_kind=c.payer,
        payer_id=payer_id,
    )
    await repo.add_term_change(
        session, contract_id, initial_change(signed, signed_at=now), change_id=change_id, applied=True
    )
    changed = ContractChangedV1(
        event_id=uuid.uuid4(),
        occurred_at=now,
        producer=PRODUCER,
        contract_id=contract_id,
        environment_id=c.environment_id,
        business_id=c.business_id,
        company_name=c.company_name,
        status=status,
        package=c.package,
        production_date=c.production_date,
        accounting_firm_id=c.accounting_firm_id,
        reseller_partner_id=c.reseller_partner_id,
        own_use=c.own_use,
        change="signed",
    )
    await enqueue(session, t.runtime_tables.outbox, [outgoing(changed)], clock)
    return contract_id


class ContractIntake:
    """Batch use case for contract commands from sales and CRM systems."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def __call__(self, session: AsyncSession, events: Sequence[Message]) -> list[Rejection]:
        rejections = []
        for event in events:
            if not isinstance(event, ContractSignedV1):
                rejections.append(Rejection(event.event_id, f"unsupported command {type(event).__name__}"))
                continue
            try:
                async with session.begin_nested():
                    await sign_contract(session, event, self._clock)
            except ContractRefusedError as exc:
                rejections.append(Rejection(event.event_id, str(exc)))
        return rejections
