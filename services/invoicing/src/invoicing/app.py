"""Composition root of invoicing."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import structlog
from fastapi import FastAPI

from billing_contracts.contracts import DueDateChangeRequestedV1
from billing_contracts.metering import MonthClosedV1, UsageAdjustedV1, UsageFinalizedV1
from billing_contracts.partners import PartnerTierChangedV1
from billing_contracts.procountor import (
    CustomerChangedInProcountorV1,
    InvoiceDeliveredV1,
    InvoiceDeliveryFailedV1,
    InvoicePaymentStatusChangedV1,
    PaymentReceivedV1,
)
from billing_contracts.registry import topic_for
from invoicing.billing.api import build_billing_router
from invoicing.billing.consumers import PartnerTierIntake, UsageIntake
from invoicing.billing.monitoring import measure_billing_run
from invoicing.contracts.api import build_contracts_router
from invoicing.contracts.consumers import ContractIntake, ProcountorCustomerIntake
from invoicing.contracts.service import CONTRACT_COMMANDS
from invoicing.contracts.upkeep import keep_contracts_current
from invoicing.policies import ROUTE_POLICIES
from invoicing.prices.api import build_prices_router
from invoicing.prices.domain import PriceBook
from invoicing.prices.loader import (
    configured_price_book_text,
    load_price_book,
    load_vat_rates,
    sample_price_book,
    shipped_vat_rates,
)
from invoicing.prices.vat import VatRateTable
from invoicing.receivables.api import build_receivables_router
from invoicing.receivables.consumers import DueDateIntake, ReceivablesIntake
from invoicing.settings import InvoicingSettings
from invoicing.tables import runtime_tables
from service_runtime.clock import Clock
from service_runtime.host import ServiceHost, create_service_app
from service_runtime.production import SampleValue, refuse_sample_values
from service_runtime.token_client import client_credentials_auth
from service_runtime.tracing import inject_headers

log = structlog.get_logger(__name__)


def load_prices(settings: InvoicingSettings) -> PriceBook:
    book = load_price_book(settings.price_list_file) if settings.price_list_file else sample_price_book()
    # Issue 12: production refuses the sample price list unless ALLOW_IN_PRODUCTION names it.
    refuse_sample_values(
        settings,
        [SampleValue("sample-prices", "the price book is the bundled SAMPLE")] if book.is_sample else [],
    )
    if book.is_sample:
        if not settings.allow_sample_prices:
            raise RuntimeError(
                "the price book holds SAMPLE prices and INVOICING_ALLOW_SAMPLE_PRICES is false"
            )
        log.warning("sample_prices_in_use")
    return book


def load_vat_rates_of(settings: InvoicingSettings) -> VatRateTable:
    """The VAT rates a run uses: the configured file, else the shipped Finnish rates (validated either way)."""
    return load_vat_rates(settings.vat_rates_file) if settings.vat_rates_file else shipped_vat_rates()


def metering_client(settings: InvoicingSettings) -> Callable[[], httpx.AsyncClient] | None:
    """Clients of metering's API for invoice specifications (B-19); None when no URL is set."""
    url = settings.metering_url
    if url is None:
        return None
    # Issue 12: a client-credentials token (role usage-reader) when INVOICING_OAUTH_TOKEN_URL is set.
    auth = client_credentials_auth(settings)

    async def traced(request: httpx.Request) -> None:
        inject_headers(request.headers)

    return lambda: httpx.AsyncClient(
        base_url=url, timeout=httpx.Timeout(30.0), auth=auth, event_hooks={"request": [traced]}
    )


def create_app(settings: InvoicingSettings, clock: Clock) -> FastAPI:
    host = ServiceHost(name="invoicing", settings=settings, clock=clock, tables=runtime_tables)
    price_book = load_prices(settings)
    host.consume(
        {topic_for(c): c for c in CONTRACT_COMMANDS}, ContractIntake(clock), group="invoicing-contracts"
    )
    host.consume(
        {topic_for(CustomerChangedInProcountorV1): CustomerChangedInProcountorV1},
        ProcountorCustomerIntake(clock),
        group="invoicing-procountor-customers",
    )
    host.run_in_background(lambda: keep_contracts_current(host.sessions, clock))
    host.consume(
        {topic_for(c): c for c in (UsageFinalizedV1, UsageAdjustedV1, MonthClosedV1)},
        UsageIntake(clock),
        group="invoicing-usage",
    )
    # P-07: partner tiers for the own-use discount.
    host.consume(
        {topic_for(PartnerTierChangedV1): PartnerTierChangedV1}, PartnerTierIntake(), group="invoicing-tiers"
    )
    # I-01, I-03, B-06: delivery state and payments of issued invoices; B-23 due-date moves.
    host.consume(
        {
            topic_for(c): c
            for c in (
                PaymentReceivedV1,
                InvoiceDeliveredV1,
                InvoiceDeliveryFailedV1,
                InvoicePaymentStatusChangedV1,
            )
        },
        ReceivablesIntake(clock),
        group="invoicing-receivables",
    )
    host.consume(
        {topic_for(DueDateChangeRequestedV1): DueDateChangeRequestedV1},
        DueDateIntake(clock),
        group="invoicing-due-dates",
    )
    # The run's progress, deadline and last completion from the database: every replica agrees.
    host.measure("billing_run", lambda: measure_billing_run(host.sessions, clock, host.metrics.billing_run))
    return create_service_app(
        host,
        title="Invoicing",
        description="Contracts, effective-dated price lists and the monthly billing run.",
        policies=ROUTE_POLICIES,
        routers=[
            build_billing_router(
                host,
                price_book,
                metering=metering_client(settings),
                batch_size=settings.billing_batch_size,
                workers=settings.billing_workers,
                vat_rates=load_vat_rates_of(settings),
            ),
            build_receivables_router(host),
            build_contracts_router(host),
            build_prices_router(
                host,
                configured_price_book=configured_price_book_text(settings.price_list_file),
                allow_sample_prices=settings.allow_sample_prices,
            ),
        ],
    )
