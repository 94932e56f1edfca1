"""Invoicing's HTTP API for contracts (create, change, history, terms per month) and price lists (B-07)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billing_contracts.base import Message
from billing_contracts.contracts import (
    AccountingFirmChangeRequestedV1,
    AdvanceBillingRequestedV1,
    BillingContactChangeRequestedV1,
    BusinessIdChangeRequestedV1,
    CompanyNameChangeNoticeGivenV1,
    ContractSignedV1,
    PackageChangeRequestedV1,
    ProductionStartedV1,
    TallennusFirmChangeApprovedV1,
    TerminationNoticeGivenV1,
)
from invoicing import tables as t
from invoicing.calendar import YearMonth
from invoicing.contracts import repository as repo
from invoicing.contracts.domain import ContractTerms
from invoicing.contracts.service import (
    SOURCE_HTTP,
    Accepted,
    ContractNotFoundError,
    Outcome,
    Refused,
    handle_contract_command,
    refresh_contracts,
)
from invoicing.prices import repository as prices
from invoicing.prices.domain import PriceListError
from service_runtime.host import ServiceHost

_YEAR_MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"


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


class RefreshView(BaseModel):
    contracts_changed: int = Field(description="Contracts whose status or terms in effect changed today.")


class PriceListView(BaseModel):
    price_list_id: str
    valid_from: dt.date
    valid_to: dt.date | None
    is_sample: bool = Field(description="Made-up SAMPLE prices; production refuses them.")
    source: str = Field(description="`file` (the configured price book) or `api`.")
    loaded_at: dt.datetime


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


def _price_list_view(stored: prices.StoredPriceList) -> PriceListView:
    return PriceListView(**{k: v for k, v in stored.__dict__.items() if k != "document"})


def _terms_view(terms: ContractTerms) -> dict[str, Any]:
    view = {name: getattr(terms, name) for name in terms.__dataclass_fields__}
    return view | {
        "package": terms.package.value,
        "payer_kind": terms.payer_kind.value,
        "status": terms.status.value,
    }


def build_contracts_router(
    host: ServiceHost, *, configured_price_book: str, allow_sample_prices: bool = True
) -> APIRouter:
    """`configured_price_book`: the YAML of the configured price book, stored before any API load;
    without `allow_sample_prices`, SAMPLE price lists are refused (as at start-up)."""
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

    async def ensure_configured(session: AsyncSession) -> None:
        await prices.ensure_configured_price_lists(session, configured_price_book, now=host.clock.now())

    async def submit(
        command_type: type[Message], contract_id: str, body: dict[str, Any], *, received: str | None
    ) -> ChangeView:
        async with host.sessions.begin() as session:
            row = await repo.contract_row(session, contract_id)
            if row is None:
                raise _no_contract(contract_id)
            payload = envelope() | body | {"environment_id": row["environment_id"]}
            if received is not None:
                payload.setdefault(received, host.clock.now().isoformat())
            command = _validate(command_type, payload)
            try:
                outcome = await handle_contract_command(session, command, host.clock, source=SOURCE_HTTP)
            except ContractNotFoundError as exc:
                raise HTTPException(status_code=404, detail=str(exc)) from exc
        return answer(outcome)

    @router.post("/contracts", response_model=ChangeView, status_code=201, tags=["contracts"])
    async def create_contract(body: dict[str, Any]) -> ChangeView:
        """Sign a contract: the body is `ContractSignedV1` without the envelope (B-01, B-17, B-20)."""
        command = _validate(ContractSignedV1, envelope() | body)
        async with host.sessions.begin() as session:
            outcome = await handle_contract_command(session, command, host.clock, source=SOURCE_HTTP)
        return answer(outcome)

    @router.get("/contracts", tags=["contracts"])
    async def list_contracts(
        environment_id: str | None = None,
        business_id: str | None = None,
        payer_id: str | None = None,
        status: str | None = None,
        limit: int = Query(default=100, ge=1, le=1000),
        after: str | None = Query(default=None, description="Contract id to continue after (keyset paging)."),
    ) -> list[dict[str, Any]]:
        c = t.contracts.c
        query = select(t.contracts).order_by(c.contract_id).limit(limit)
        for column, value in (
            (c.environment_id, environment_id),
            (c.business_id, business_id),
            (c.payer_id, payer_id),
            (c.status, status),
        ):
            if value is not None:
                query = query.where(column == value)
        if after is not None:
            query = query.where(c.contract_id > after)
        async with host.sessions() as session:
            return [dict(r) for r in (await session.execute(query)).mappings()]

    @router.get("/contracts/{contract_id}", tags=["contracts"])
    async def get_contract(contract_id: str) -> dict[str, Any]:
        """The contract's current state, with a Tallennus firm change waiting for approvals (B-29)."""
        async with host.sessions() as session:
            row = await repo.contract_row(session, contract_id)
            if row is None:
                raise _no_contract(contract_id)
            pending = await repo.pending_tallennus_firm_change(session, contract_id)
        return dict(row) | {"pending_tallennus_firm_change": None if pending is None else dict(pending)}

    @router.get("/contracts/{contract_id}/history", tags=["contracts"])
    async def contract_history(contract_id: str) -> list[dict[str, Any]]:
        """Every change and refusal: who, when, what, why (B-25)."""
        async with host.sessions() as session:
            if await repo.contract_row(session, contract_id) is None:
                raise _no_contract(contract_id)
            return await repo.contract_history(session, contract_id)

    @router.get("/contracts/{contract_id}/terms/{month}", tags=["contracts"])
    async def contract_terms(contract_id: str, month: str) -> dict[str, Any]:
        """The terms billing uses for `month` (YYYY-MM): package, firm and payer in effect (B-26)."""
        try:
            ym = YearMonth.parse(month)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        async with host.sessions() as session:
            terms = await repo.contract_terms_of(session, contract_id, ym)
        if terms is None:
            raise _no_contract(contract_id)
        return _terms_view(terms)

    @router.post("/contracts/{contract_id}/production-date", response_model=ChangeView, tags=["contracts"])
    async def set_production_date(contract_id: str, body: dict[str, Any]) -> ChangeView:
        """Body: `ProductionStartedV1` fields (`production_date`) (B-01)."""
        return await submit(ProductionStartedV1, contract_id, body, received=None)

    @router.post("/contracts/{contract_id}/package-changes", response_model=ChangeView, tags=["contracts"])
    async def change_package(contract_id: str, body: dict[str, Any]) -> ChangeView:
        """Body: `PackageChangeRequestedV1` fields; `requested_at` defaults to now (B-25, B-26)."""
        return await submit(PackageChangeRequestedV1, contract_id, body, received="requested_at")

    @router.post(
        "/contracts/{contract_id}/accounting-firm-changes", response_model=ChangeView, tags=["contracts"]
    )
    async def change_accounting_firm(contract_id: str, body: dict[str, Any]) -> ChangeView:
        """Body: `AccountingFirmChangeRequestedV1` fields; `requested_at` defaults to now (B-25, B-26)."""
        return await submit(AccountingFirmChangeRequestedV1, contract_id, body, received="requested_at")

    @router.post("/contracts/{contract_id}/termination", response_model=ChangeView, tags=["contracts"])
    async def give_notice(contract_id: str, body: dict[str, Any]) -> ChangeView:
        """Body: `TerminationNoticeGivenV1` fields; `notice_given_at` defaults to now (B-25, B-27)."""
        return await submit(TerminationNoticeGivenV1, contract_id, body, received="notice_given_at")

    @router.post(
        "/contracts/{contract_id}/business-id-changes", response_model=ChangeView, tags=["contracts"]
    )
    async def change_business_id(contract_id: str, body: dict[str, Any]) -> ChangeView:
        """Body: `BusinessIdChangeRequestedV1` fields; `requested_at` defaults to now (B-25, B-28)."""
        return await submit(BusinessIdChangeRequestedV1, contract_id, body, received="requested_at")

    @router.post(
        "/contracts/{contract_id}/tallennus-firm-approvals", response_model=ChangeView, tags=["contracts"]
    )
    async def approve_tallennus_firm_change(contract_id: str, body: dict[str, Any]) -> ChangeView:
        """Body: `TallennusFirmChangeApprovedV1` fields; `approved_at` defaults to now (B-29)."""
        return await submit(TallennusFirmChangeApprovedV1, contract_id, body, received="approved_at")

    @router.post("/contracts/{contract_id}/billing-contact", response_model=ChangeView, tags=["contracts"])
    async def change_billing_contact(contract_id: str, body: dict[str, Any]) -> ChangeView:
        """Body: `BillingContactChangeRequestedV1` fields; `requested_at` defaults to now (B-24, B-25)."""
        return await submit(BillingContactChangeRequestedV1, contract_id, body, received="requested_at")

    @router.post("/contracts/{contract_id}/company-name", response_model=ChangeView, tags=["contracts"])
    async def change_company_name(contract_id: str, body: dict[str, Any]) -> ChangeView:
        """Body: `CompanyNameChangeNoticeGivenV1` fields; `notice_given_at` defaults to now (B-22, B-25)."""
        return await submit(CompanyNameChangeNoticeGivenV1, contract_id, body, received="notice_given_at")

    @router.post("/contracts/{contract_id}/advance-billing", response_model=ChangeView, tags=["contracts"])
    async def request_advance_billing(contract_id: str, body: dict[str, Any]) -> ChangeView:
        """Always refused with 422: billing is in arrears (B-04)."""
        return await submit(AdvanceBillingRequestedV1, contract_id, body, received="requested_at")

    @router.post("/contracts/refresh", response_model=RefreshView, tags=["contracts"])
    async def refresh() -> RefreshView:
        """Bring every contract up to today (production reached, ended, terms now in effect); idempotent."""
        changed = await refresh_contracts(host.sessions, host.clock)
        host.relay.wake()
        return RefreshView(contracts_changed=changed)

    @router.get("/price-lists", response_model=list[PriceListView], tags=["price lists"])
    async def list_price_lists() -> list[PriceListView]:
        """Every price list with its validity, oldest first (B-07)."""
        async with host.sessions.begin() as session:
            await ensure_configured(session)
            stored = await prices.stored_price_lists(session)
        return [_price_list_view(s) for s in stored]

    @router.get("/price-lists/{price_list_id}", tags=["price lists"])
    async def get_price_list(price_list_id: str) -> dict[str, Any]:
        """One price list: its validity and its prices as the one-list price book YAML it is read from."""
        async with host.sessions.begin() as session:
            await ensure_configured(session)
            stored = {s.price_list_id: s for s in await prices.stored_price_lists(session)}
        if price_list_id not in stored:
            raise HTTPException(status_code=404, detail=f"no price list {price_list_id}")
        return dict(stored[price_list_id].__dict__)

    @router.post(
        "/price-lists",
        response_model=list[PriceListView],
        status_code=201,
        tags=["price lists"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/yaml": {"schema": {"type": "string"}}},
                "description": "A price book YAML as in `price_lists/sample.yaml`; money as quoted strings.",
            }
        },
    )
    async def load_price_lists(request: Request) -> list[PriceListView]:
        """Add effective-dated price lists (B-07); 422 with the reason when they do not fit."""
        text = (await request.body()).decode("utf-8", errors="replace")
        try:
            async with host.sessions.begin() as session:
                await ensure_configured(session)
                added = await prices.store_price_book(
                    session,
                    text,
                    source=prices.SOURCE_API,
                    now=host.clock.now(),
                    allow_sample=allow_sample_prices,
                )
        except PriceListError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return [_price_list_view(s) for s in added]

    return router
