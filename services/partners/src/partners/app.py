"""Composition root of partners."""

from __future__ import annotations

import datetime as dt

from fastapi import FastAPI

from partners.api import build_router
from partners.benefits import load_benefit_book
from partners.consumers import subscribe_consumers
from partners.policies import ROUTE_POLICIES
from partners.service import keep_parked_inputs_swept, keep_standings_current, measure_parked_inputs
from partners.settings import PartnersSettings
from partners.tables import runtime_tables
from service_runtime.clock import Clock
from service_runtime.host import ServiceHost, create_service_app


def create_app(settings: PartnersSettings, clock: Clock) -> FastAPI:
    host = ServiceHost(name="partners", settings=settings, clock=clock, tables=runtime_tables)
    benefits = load_benefit_book(settings.benefits_file)
    parking = dt.timedelta(days=settings.parking_days)
    program = subscribe_consumers(
        host, clock, benefits, parking=parking, contract_consumers=settings.contract_consumers
    )
    host.run_in_background(
        lambda: keep_standings_current(host.sessions, clock, every_seconds=settings.refresh_every_seconds)
    )
    # Parked inputs whose parking expired become dead letters with their reason (and the gauges).
    host.run_in_background(
        lambda: keep_parked_inputs_swept(
            host.sessions, clock, program, parking=parking, every_seconds=settings.parked_sweep_every_seconds
        ),
        name="parked-inputs-sweep",
    )
    host.measure("parked_inputs", lambda: measure_parked_inputs(host.sessions, clock, host.metrics.partners))
    return create_service_app(
        host,
        title="Partners",
        description=(
            "The accounting-firm partner program (P-01…P-09): tiers computed from contract state, "
            "agreements and exam results; benefits; commission statements; the public directory."
        ),
        routers=[build_router(host, benefits, parking=parking)],
        policies=ROUTE_POLICIES,
    )
