"""Invoicing's HTTP API for contracts: create, change, history, terms per month (price lists: `prices.api`)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from typing_extensions import TypeAliasType

from billing_contracts.base import Message
from billing_contracts.contracts import (
    AccountingFirmChangeRequestedV1,
    AdvanceBillingRequestedV1,
    BillingChannel,
    BillingContact,
    BillingContactChangeRequestedV1,
    BusinessIdChangeRequestedV1,
    CompanyNameChangeNoticeGivenV1,
    ContractSignedV1,
    EInvoiceAddress,
    PackageChangeRequestedV1,
    PackageCode,
    PayerKind,
    PostalAddress,
    ProductionStartedV1,
    TallennusFirmChangeApprovedV1,
    TerminationNoticeGivenV1,
)
from invoicing.calendar import YearMonth
from invoicing.contracts.contract import Contract
from invoicing.contracts.domain import ContractTerms, from_http
from invoicing.contracts.repository import ContractRepository
from invoicing.contracts.service import (
    Accepted,
    ContractNotFoundError,
    Outcome,
    Refused,
    handle_contract_command,
)
from invoicing.contracts.terms_repository import ContractTermsRepository
from invoicing.contracts.upkeep import refresh_contracts
from service_runtime.auth import Caller, authenticated
from service_runtime.host import ServiceHost

_YEAR_MONTH = r"^20\d{2}-(0[1-9]|1[0-2])$"
#: The envelope every command carries; the API fills it in (a new event id, now, producer `http`).
_ENVELOPE = ("event_id", "occurred_at", "producer")


def command_body(
    command_type: type[Message], *, received: str | None = None, keep_environment: bool = False
) -> type[BaseModel]:
    """The request body of a command: the command's own fields, typed and described as in the contract,
    without the envelope and (for a change of an existing contract) without `environment_id`, which
    the path's contract gives. `received` (when the request was made) becomes optional: default now."""
    fields: dict[str, Any] = {}
    for name, info in command_type.model_fields.items():
        if name in _ENVELOPE or (name == "environment_id" and not keep_environment):
            continue
        if name == received:
            fields[name] = (
                dt.datetime | None,
                Field(default=None, description=f"{info.description or ''} Default: now.".strip()),
            )
        else:
            fields[name] = (info.annotation, info)
    body: type[BaseModel] = create_model(
        f"{command_type.__name__.removesuffix('V1')}Body",
        __config__=ConfigDict(extra="ignore"),
        __doc__=f"The fields of `{command_type.__name__}` (the envelope is added by the API).",
        **fields,
    )
    return body


ContractSignedBody = command_body(ContractSignedV1, keep_environment=True)
ProductionStartedBody = command_body(ProductionStartedV1)
PackageChangeBody = command_body(PackageChangeRequestedV1, received="requested_at")
AccountingFirmChangeBody = command_body(AccountingFirmChangeRequestedV1, received="requested_at")
TerminationNoticeBody = command_body(TerminationNoticeGivenV1, received="notice_given_at")
BusinessIdChangeBody = command_body(BusinessIdChangeRequestedV1, received="requested_at")
TallennusFirmApprovalBody = command_body(TallennusFirmChangeApprovedV1, received="approved_at")
BillingContactChangeBody = command_body(BillingContactChangeRequestedV1, received="requested_at")
CompanyNameChangeBody = command_body(CompanyNameChangeNoticeGivenV1, received="notice_given_at")
AdvanceBillingBody = command_body(AdvanceBillingRequestedV1, received="requested_at")

#: An audit record's details: JSON made of text, whole numbers, booleans, lists and objects (money
#: and dates are strings in it, as on the wire). They differ by change: the command as received,
#: and the changed fields before and after.
AuditDetail = TypeAliasType(
    "AuditDetail",
    "str | int | bool | list[AuditDetail] | dict[str, AuditDetail] | None",
)


class ChangeView(BaseModel):
    """What a contract command did."""

    contract_id: str = Field(description="The contract the command was about.")
    change: str = Field(description="What changed, as in the contract's history.")
    status: str = Field(description="The contract's status after it.")
    effective_from: dt.date | None = Field(
        default=None, description="First day of the first billed month it applies to (B-26)."
    )
    pending: bool = Field(default=False, description="B-29: recorded, waiting for the other firm's approval.")
    new_contract_id: str | None = Field(
        default=None, description="B-28: the contract created for the new business ID."
    )


class ContractView(BaseModel):
    """A contract's current state (package, firm and payer per month: `/terms/{month}`)."""

    contract_id: str
    environment_id: str
    business_id: str
    company_name: str = Field(description="The name invoices carry (B-22).")
    package: PackageCode = Field(description="The package in effect now.")
    production_date: dt.date = Field(description="B-01: billing starts from it.")
    end_date: dt.date | None = Field(description="B-27: the last billable day, once notice is given.")
    payer_kind: PayerKind
    payer_id: str = Field(description="Business ID of the payer (B-17).")
    accounting_firm_id: str | None
    accounting_firm_business_id: str | None
    reseller_partner_id: str | None
    own_use: bool = Field(description="P-07: the accounting firm's own environment.")
    billing_address: PostalAddress
    billing_channel: BillingChannel
    einvoice_address: EInvoiceAddress | None
    billing_email: str | None
    billing_contact: BillingContact | None
    status: str = Field(description="`signed`, `in_production`, `notice_given` or `ended` (B-27).")
    created_at: dt.datetime
    updated_at: dt.datetime
    notice_given_on: dt.date | None
    termination_reason: str | None
    data_retained_until: dt.date | None = Field(description="B-27: the data is kept until this day.")
    einvoice_address_ends_on: dt.date | None = Field(description="B-28: the e-invoice address ends here.")
    predecessor_contract_id: str | None
    successor_contract_id: str | None


class FirmApprovalView(BaseModel):
    model_config = ConfigDict(extra="allow")

    person_name: str | None = Field(default=None, description="Who approved for the firm.")
    approved_at: dt.datetime | None = Field(default=None)


class PendingFirmChangeView(BaseModel):
    """B-29: a Tallennus firm change waiting for the other firm's approval."""

    contract_id: str
    old_accounting_firm_id: str
    new_accounting_firm_id: str
    old_approval: dict[str, AuditDetail] | None = Field(description="The old firm's approval, once given.")
    new_approval: dict[str, AuditDetail] | None = Field(description="The new firm's approval, once given.")
    updated_at: dt.datetime


class ContractDetailView(ContractView):
    pending_tallennus_firm_change: PendingFirmChangeView | None


class ChangeRecordView(BaseModel):
    """One audited change or refusal of a contract: who, when, what, why (B-25)."""

    id: int
    contract_id: str
    at: dt.datetime
    change: str = Field(description="What changed, e.g. `signed`, `package_changed`.")
    requested_by: dict[str, AuditDetail] | None = Field(
        description="Who asked: a `Requester` for a customer's request, or the system that reported it."
    )
    details: dict[str, AuditDetail] = Field(
        description="The command as received, and the changed fields before and after."
    )
    outcome: str = Field(description="`accepted`, `pending` or `refused`.")
    rule: str | None = Field(description="The SPEC rule of a refusal.")
    reason: str | None = Field(description="The refusal's reason, or the requester's.")
    effective_from: dt.date | None = Field(description="First billed month it affects (B-26).")
    source: str | None = Field(description="`http`, `kafka`, `procountor` or `schedule`.")
    asserted_by: str | None = Field(
        default=None,
        description="Who vouches for `requested_by`: the calling system's token subject over HTTP, "
        "`kafka:<topic>` for a command read from Kafka, `invoicing` for the schedule (B-25).",
    )
    event_id: uuid.UUID | None


class TermsView(BaseModel):
    """The terms billing uses for one month (B-26): package, firm and payer in effect."""

    contract_id: str
    environment_id: str
    business_id: str
    invoice_name: str
    package: PackageCode
    production_date: dt.date
    end_date: dt.date | None
    payer_kind: PayerKind
    payer_id: str
    accounting_firm_id: str | None
    accounting_firm_business_id: str | None
    reseller_partner_id: str | None
    own_use: bool
    billing_address: PostalAddress
    billing_channel: BillingChannel
    einvoice_address: EInvoiceAddress | None
    billing_email: str | None
    billing_contact: BillingContact | None
    status: str


class RefreshView(BaseModel):
    contracts_changed: int = Field(description="Contracts whose status or terms in effect changed today.")


def _refused(refusal: Refused) -> HTTPException:
    return HTTPException(status_code=422, detail={"rule": refusal.rule, "reason": refusal.reason})


def _no_contract(contract_id: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"no contract {contract_id}")


def _validate(command_type: type[Message], payload: dict[str, Any]) -> Message:
    try:
        return command_type.model_validate(payload)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


def _view(outcome: Accepted) -> ChangeView:
    return ChangeView(
        contract_id=outcome.contract_id,
        change=outcome.change,
        status=outcome.status.value,
        effective_from=outcome.effective_from,
        pending=outcome.pending,
        new_contract_id=outcome.new_contract_id,
    )


def _contract_view(contract: Contract) -> ContractView:
    return ContractView.model_validate({name: getattr(contract, name) for name in ContractView.model_fields})


def _terms_view(terms: ContractTerms) -> TermsView:
    return TermsView.model_validate({name: getattr(terms, name) for name in terms.__dataclass_fields__})


def build_contracts_router(host: ServiceHost) -> APIRouter:
    """Contracts over HTTP: the same use case as the Kafka commands (`handle_contract_command`)."""
    router = APIRouter()

    def envelope() -> dict[str, Any]:
        return {
            "event_id": str(uuid.uuid4()),
            "occurred_at": host.clock.now().isoformat(),
            "producer": "http",
        }

    def answer(outcome: Outcome) -> ChangeView:
        """Called after the transaction, so that a refusal's audit row is committed before the 422 answers."""
        if isinstance(outcome, Refused):
            raise _refused(outcome)
        host.relay.wake()
        return _view(outcome)

    async def submit(
        command_type: type[Message],
        contract_id: str,
        body: BaseModel,
        caller: Caller,
        *,
        received: str | None,
    ) -> ChangeView:
        async with host.sessions.begin() as session:
            contract = await ContractRepository(session).get(contract_id)
            if contract is None:
                raise _no_contract(contract_id)
            payload = envelope() | body.model_dump(mode="json", exclude_unset=True)
            payload |= {"environment_id": contract.environment_id}
            if received is not None:
                payload.setdefault(received, host.clock.now().isoformat())
            command = _validate(command_type, payload)
            try:
                outcome = await handle_contract_command(
                    session, command, host.clock, source=from_http(caller.subject)
                )
            except ContractNotFoundError as exc:
                raise HTTPException(status_code=404, detail=str(exc)) from exc
        return answer(outcome)

    @router.post("/contracts", response_model=ChangeView, status_code=201, tags=["contracts"])
    async def create_contract(
        body: ContractSignedBody,  # type: ignore[valid-type]
        caller: Annotated[Caller, authenticated],
    ) -> ChangeView:
        """Sign a contract: the body is `ContractSignedV1` without the envelope (B-01, B-17, B-20)."""
        command = _validate(ContractSignedV1, envelope() | body.model_dump(mode="json", exclude_unset=True))  # type: ignore[attr-defined]
        async with host.sessions.begin() as session:
            outcome = await handle_contract_command(
                session, command, host.clock, source=from_http(caller.subject)
            )
        return answer(outcome)

    @router.get("/contracts", tags=["contracts"])
    async def list_contracts(
        environment_id: str | None = None,
        business_id: str | None = None,
        payer_id: str | None = None,
        status: str | None = None,
        limit: int = Query(default=100, ge=1, le=1000),
        after: str | None = Query(default=None, description="Contract id to continue after (keyset paging)."),
    ) -> list[ContractView]:
        async with host.sessions() as session:
            found = await ContractRepository(session).find(
                environment_id=environment_id,
                business_id=business_id,
                payer_id=payer_id,
                status=status,
                limit=limit,
                after=after,
            )
        return [_contract_view(c) for c in found]

    @router.get("/contracts/{contract_id}", tags=["contracts"])
    async def get_contract(contract_id: str) -> ContractDetailView:
        """The contract's current state, with a Tallennus firm change waiting for approvals (B-29)."""
        async with host.sessions() as session:
            contracts = ContractRepository(session)
            contract = await contracts.get(contract_id)
            if contract is None:
                raise _no_contract(contract_id)
            pending = await contracts.pending_firm_change_row(contract_id)
        return ContractDetailView.model_validate(
            _contract_view(contract).model_dump() | {"pending_tallennus_firm_change": pending}
        )

    @router.get("/contracts/{contract_id}/history", tags=["contracts"])
    async def contract_history(contract_id: str) -> list[ChangeRecordView]:
        """Every change and refusal: who, when, what, why (B-25)."""
        async with host.sessions() as session:
            contracts = ContractRepository(session)
            if await contracts.get(contract_id) is None:
                raise _no_contract(contract_id)
            history = await contracts.history(contract_id)
        return [ChangeRecordView.model_validate(h) for h in history]

    @router.get("/contracts/{contract_id}/terms/{month}", tags=["contracts"])
    async def contract_terms(
        contract_id: str, month: Annotated[str, Path(pattern=_YEAR_MONTH, description="YYYY-MM.")]
    ) -> TermsView:
        """The terms billing uses for `month` (YYYY-MM): package, firm and payer in effect (B-26)."""
        try:
            ym = YearMonth.parse(month)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        async with host.sessions() as session:
            terms = await ContractTermsRepository(session).of(contract_id, ym)
        if terms is None:
            raise _no_contract(contract_id)
        return _terms_view(terms)

    @router.post("/contracts/{contract_id}/production-date", response_model=ChangeView, tags=["contracts"])
    async def set_production_date(
        contract_id: str,
        body: ProductionStartedBody,  # type: ignore[valid-type]
        caller: Annotated[Caller, authenticated],
    ) -> ChangeView:
        """Body: `ProductionStartedV1` fields (`production_date`) (B-01)."""
        return await submit(ProductionStartedV1, contract_id, body, caller, received=None)

    @router.post("/contracts/{contract_id}/package-changes", response_model=ChangeView, tags=["contracts"])
    async def change_package(
        contract_id: str,
        body: PackageChangeBody,  # type: ignore[valid-type]
        caller: Annotated[Caller, authenticated],
    ) -> ChangeView:
        """Body: `PackageChangeRequestedV1` fields; `requested_at` defaults to now (B-25, B-26)."""
        return await submit(PackageChangeRequestedV1, contract_id, body, caller, received="requested_at")

    @router.post(
        "/contracts/{contract_id}/accounting-firm-changes", response_model=ChangeView, tags=["contracts"]
    )
    async def change_accounting_firm(
        contract_id: str,
        body: AccountingFirmChangeBody,  # type: ignore[valid-type]
        caller: Annotated[Caller, authenticated],
    ) -> ChangeView:
        """Body: `AccountingFirmChangeRequestedV1` fields; `requested_at` defaults to now (B-25, B-26)."""
        return await submit(
            AccountingFirmChangeRequestedV1, contract_id, body, caller, received="requested_at"
        )

    @router.post("/contracts/{contract_id}/termination", response_model=ChangeView, tags=["contracts"])
    async def give_notice(
        contract_id: str,
        body: TerminationNoticeBody,  # type: ignore[valid-type]
        caller: Annotated[Caller, authenticated],
    ) -> ChangeView:
        """Body: `TerminationNoticeGivenV1` fields; `notice_given_at` defaults to now (B-25, B-27)."""
        return await submit(TerminationNoticeGivenV1, contract_id, body, caller, received="notice_given_at")

    @router.post(
        "/contracts/{contract_id}/business-id-changes", response_model=ChangeView, tags=["contracts"]
    )
    async def change_business_id(
        contract_id: str,
        body: BusinessIdChangeBody,  # type: ignore[valid-type]
        caller: Annotated[Caller, authenticated],
    ) -> ChangeView:
        """Body: `BusinessIdChangeRequestedV1` fields; `requested_at` defaults to now (B-25, B-28)."""
        return await submit(BusinessIdChangeRequestedV1, contract_id, body, caller, received="requested_at")

    @router.post(
        "/contracts/{contract_id}/tallennus-firm-approvals", response_model=ChangeView, tags=["contracts"]
    )
    async def approve_tallennus_firm_change(
        contract_id: str,
        body: TallennusFirmApprovalBody,  # type: ignore[valid-type]
        caller: Annotated[Caller, authenticated],
    ) -> ChangeView:
        """Body: `TallennusFirmChangeApprovedV1` fields; `approved_at` defaults to now (B-29)."""
        return await submit(TallennusFirmChangeApprovedV1, contract_id, body, caller, received="approved_at")

    @router.post("/contracts/{contract_id}/billing-contact", response_model=ChangeView, tags=["contracts"])
    async def change_billing_contact(
        contract_id: str,
        body: BillingContactChangeBody,  # type: ignore[valid-type]
        caller: Annotated[Caller, authenticated],
    ) -> ChangeView:
        """Body: `BillingContactChangeRequestedV1` fields; `requested_at` defaults to now (B-24, B-25)."""
        return await submit(
            BillingContactChangeRequestedV1, contract_id, body, caller, received="requested_at"
        )

    @router.post("/contracts/{contract_id}/company-name", response_model=ChangeView, tags=["contracts"])
    async def change_company_name(
        contract_id: str,
        body: CompanyNameChangeBody,  # type: ignore[valid-type]
        caller: Annotated[Caller, authenticated],
    ) -> ChangeView:
        """Body: `CompanyNameChangeNoticeGivenV1` fields; `notice_given_at` defaults to now (B-22, B-25)."""
        return await submit(
            CompanyNameChangeNoticeGivenV1, contract_id, body, caller, received="notice_given_at"
        )

    @router.post("/contracts/{contract_id}/advance-billing", response_model=ChangeView, tags=["contracts"])
    async def request_advance_billing(
        contract_id: str,
        body: AdvanceBillingBody,  # type: ignore[valid-type]
        caller: Annotated[Caller, authenticated],
    ) -> ChangeView:
        """Always refused with 422: billing is in arrears (B-04)."""
        return await submit(AdvanceBillingRequestedV1, contract_id, body, caller, received="requested_at")

    @router.post("/contracts/refresh", response_model=RefreshView, tags=["contracts"])
    async def refresh(caller: Annotated[Caller, authenticated]) -> RefreshView:
        """Bring every contract up to today (production reached, ended, terms now in effect); idempotent."""
        changed = await refresh_contracts(host.sessions, host.clock, source=from_http(caller.subject))
        host.relay.wake()
        return RefreshView(contracts_changed=changed)

    return router
