"""Composition root of invoicing."""

from __future__ import annotations

import structlog
from fastapi import FastAPI

from billing_contracts.contracts import ContractSignedV1
from billing_contracts.metering import MonthClosedV1, UsageAdjustedV1, UsageFinalizedV1
from billing_contracts.registry import topic_for
from invoicing.api import build_router
from invoicing.contract_service import ContractIntake
from invoicing.contracts_api import build_contracts_router
from invoicing.price_list_loader import load_price_book, sample_price_book
from invoicing.pricing import PriceBook
from invoicing.service import UsageIntake
from invoicing.settings import InvoicingSettings
from invoicing.tables import runtime_tables
from service_runtime.clock import Clock
from service_runtime.host import ServiceHost, create_service_app

log = structlog.get_logger(__name__)


def load_prices(settings: InvoicingSettings) -> PriceBook:
    book = load_price_book(settings.price_list_file) if settings.price_list_file else sample_price_book()
    if book.is_sample:
        if not settings.allow_sample_prices:
            raise RuntimeError(
                "the price book holds SAMPLE prices and INVOICING_ALLOW_SAMPLE_PRICES is false"
            )
        log.warning("sample_prices_in_use")
    return book


def create_app(settings: InvoicingSettings, clock: Clock) -> FastAPI:
    host = ServiceHost(name="invoicing", settings=settings, clock=clock, tables=runtime_tables)
    price_book = load_prices(settings)
    host.consume(
        {topic_for(ContractSignedV1): ContractSignedV1}, ContractIntake(clock), group="invoicing-contracts"
    )
    host.consume(
        {topic_for(c): c for c in (UsageFinalizedV1, UsageAdjustedV1, MonthClosedV1)},
        UsageIntake(clock),
        group="invoicing-usage",
    )
    return create_service_app(
        host,
        title="Invoicing",
        description="Contracts, effective-dated price lists and the monthly billing run.",
        routers=[build_router(host, price_book), build_contracts_router(host)],
    )
