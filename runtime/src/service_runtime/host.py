"""The running service: database, broker, outbox relay and the HTTP app with probes and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import fastapi_offline
import structlog
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from faststream.kafka import KafkaBroker
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from billing_contracts.base import Message
from service_runtime.auth import (
    PROBE_POLICIES,
    AuthConfig,
    RoutePolicies,
    TokenVerifier,
    document_route_policies,
    enforce_policy,
    install_auth,
    install_route_policies,
)
from service_runtime.clock import Clock
from service_runtime.consumer import BatchUseCase, IdempotentConsumer
from service_runtime.database import check_database, create_engine, session_factory
from service_runtime.dead_letter_api import DEAD_LETTER_POLICIES, build_dead_letter_router
from service_runtime.kafka import KafkaPublisher, make_broker, subscribe
from service_runtime.metrics import ServiceMetrics
from service_runtime.observability import (
    RequestObservation,
    measure_consumer_lag,
    measure_dead_letters,
    measure_outbox,
)
from service_runtime.outbox import OutboxRelay
from service_runtime.problems import install_problem_details
from service_runtime.production import refuse_sample_values
from service_runtime.settings import ServiceSettings
from service_runtime.tables import RuntimeTables
from service_runtime.tracing import configure_tracing

log = structlog.get_logger(__name__)

Hook = Callable[[], Awaitable[None]]


class ServiceHost:
    """Owns one service's connections and background work; built in the service's composition root."""

    def __init__(self, *, name: str, settings: ServiceSettings, clock: Clock, tables: RuntimeTables) -> None:
        # Before anything connects: production never starts on sample values (issue 12, item 7).
        refuse_sample_values(settings, settings.sample_values())
        configure_tracing(name)
        self.name = name
        self.settings = settings
        self.clock = clock
        self.tables = tables
        self.metrics = ServiceMetrics(name)
        self.engine: AsyncEngine = create_engine(
            settings.database_url.get_secret_value(), pool_size=settings.database_pool_size
        )
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(self.engine)
        self.broker: KafkaBroker = make_broker(settings, client_id=name)
        self.publisher = KafkaPublisher(settings, client_id=f"{name}-relay")
        self.relay = OutboxRelay(
            sessions=self.sessions,
            table=tables.outbox,
            publisher=self.publisher,
            metrics=self.metrics,
            clock=clock,
            batch_size=settings.outbox_batch_size,
            idle_seconds=settings.outbox_idle_seconds,
        )
        #: Every subscription, as registered: fuzzers and tools iterate over them.
        self.consumers: list[IdempotentConsumer[Any]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._background: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self._measurements: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self._started = False
        self._subscribers: list[tuple[str, Any]] = []

    def consume(
        self,
        contracts: Mapping[str, type[Message]],
        use_case: BatchUseCase[Any],
        *,
        group: str | None = None,
        max_records: int | None = None,
        instances: int | None = None,
    ) -> IdempotentConsumer[Any]:
        """Subscribe a use case to topics, idempotently, in batches, with dead letters.

        The group is the service's name or starts with it and a dash (`invoicing-usage`): the
        KafkaUser ACLs in deploy/ grant each service the groups with its name as prefix.
        """
        group = group or self.name
        if group != self.name and not group.startswith(f"{self.name}-"):
            raise ValueError(
                f"consumer group {group!r} must be {self.name!r} or start with {self.name + '-'!r}"
            )
        consumer: IdempotentConsumer[Any] = IdempotentConsumer(
            service=self.name,
            group=group,
            contracts=contracts,
            use_case=use_case,
            sessions=self.sessions,
            tables=self.tables,
            clock=self.clock,
            metrics=self.metrics,
            on_outbox_written=self.relay.wake,
            pipeline=self.settings.kafka_consumer_pipeline,
        )
        self.consumers.append(consumer)
        for _ in range(instances or self.settings.kafka_consumer_instances):
            subscriber = subscribe(
                self.broker,
                consumer,
                group=group,
                max_records=max_records or self.settings.kafka_consumer_max_records,
            )
            self._subscribers.append((group, subscriber))
        return consumer

    def run_in_background(self, loop: Callable[[], Awaitable[None]], *, name: str | None = None) -> None:
        """Run a coroutine for the life of the service (e.g. a scheduler); it is cancelled on stop.

        If it ever returns or raises, the service is no longer whole and `/healthz` fails.
        """
        self._background.append((name or f"background-{len(self._background) + 1}", loop))

    def measure(self, what: str, measurement: Callable[[], Awaitable[None]]) -> None:
        """Run `measurement` with the runtime's own (every `metrics_interval_seconds`): gauges a
        service computes from its database, so that every replica reports the same figure."""
        self._measurements.append((what, measurement))

    async def start(self) -> None:
        await self.publisher.start()
        await self._start_broker()
        # Everything alive now (modules, schemas, metadata, connections) lives as long as the
        # process: move it out of the cyclic collector's sight, so that collections caused by
        # the allocations of each batch stay cheap (a full collection would walk all of it).
        gc.collect()
        gc.freeze()
        self._tasks = [asyncio.create_task(self.relay.run(), name="outbox-relay")]
        self._tasks += [asyncio.create_task(_forever(job), name=name) for name, job in self._background]
        self._tasks.append(asyncio.create_task(self._measure_forever(), name="metrics"))
        self._started = True
        self.metrics.info.inc()
        log.info("service_started", service=self.name)

    async def _start_broker(self) -> None:
        """FastStream's `broker.start()`, with the subscribers started together.

        Each subscription is its own consumer group, and each group's join takes the broker's
        rebalance delay (about 5 s on Tansu, 3 s by default on Kafka): started one after the
        other, a service with six subscriptions needed 30 s to start.
        """
        await self.broker.connect()
        await asyncio.gather(*(subscriber.start() for subscriber in self.broker.subscribers))
        for publisher in self.broker.publishers:
            await publisher.start()
        self.broker.running = True

    async def _measure_forever(self) -> None:
        """Consumer lag, the outbox backlog, pending dead letters and the service's own gauges, every
        `metrics_interval_seconds`; a failed measurement waits for the next."""
        while True:
            await self._measure("consumer_lag", measure_consumer_lag(self.broker, self.metrics))
            await self._measure(
                "outbox", measure_outbox(self.sessions, self.tables.outbox, self.clock, self.metrics)
            )
            await self._measure(
                "dead_letters", measure_dead_letters(self.sessions, self.tables, self.metrics)
            )
            for what, measurement in self._measurements:
                await self._measure(what, measurement())
            await asyncio.sleep(self.settings.metrics_interval_seconds)

    @staticmethod
    async def _measure(what: str, measurement: Awaitable[None]) -> None:
        try:
            await asyncio.wait_for(measurement, timeout=10)
        except Exception as exc:
            log.warning("measurement_failed", what=what, error=type(exc).__name__)

    def liveness(self) -> dict[str, str]:
        """Each consumer, the outbox relay and every background loop: `ok`, or why it is dead.

        A consumer is dead when none of its fetch loops runs any more while the broker should be
        running (FastStream restarts a loop that raised; one that ended or was cancelled is gone).
        """
        if not self._started:
            return {}
        checks: dict[str, str] = {}
        for task in self._tasks:
            checks[task.get_name()] = _task_state(task)
        for group, subscriber in self._subscribers:
            key = f"consumer:{group}"
            tasks = list(getattr(subscriber, "tasks", []))
            alive = bool(self.broker.running) and any(not t.done() for t in tasks)
            state = "ok" if alive else "dead: its fetch loop ended"
            # Several instances share a group: the group is alive while every instance is.
            if checks.get(key, "ok") == "ok":
                checks[key] = state
        for name, state in checks.items():
            self.metrics.task_up.labels(task=name).set(1 if state == "ok" else 0)
        return checks

    async def stop(self) -> None:
        self._started = False
        await self.broker.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.relay.publish_pending()
        await self.publisher.stop()
        await self.engine.dispose()
        log.info("service_stopped", service=self.name)

    async def readiness(self) -> dict[str, str]:
        """State of each dependency: `ok` or the error."""
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(check_database(self.engine), timeout=3)
            checks["database"] = "ok"
        except Exception as exc:  # readiness reports, it does not raise
            checks["database"] = f"unavailable: {type(exc).__name__}"
        try:
            checks["kafka"] = "ok" if await self.broker.ping(timeout=3) else "unavailable"
        except Exception as exc:
            checks["kafka"] = f"unavailable: {type(exc).__name__}"
        return checks


async def _forever(job: Callable[[], Awaitable[None]]) -> None:
    await job()
    log.error("background_task_ended")


def _task_state(task: asyncio.Task[None]) -> str:
    if not task.done():
        return "ok"
    if task.cancelled():
        return "dead: cancelled"
    error = task.exception()
    return f"dead: {type(error).__name__}" if error is not None else "dead: returned"


def auth_config(settings: ServiceSettings) -> AuthConfig | None:
    """What the service's API trusts, from its settings; None without an issuer."""
    if settings.auth_issuer is None:
        return None
    return AuthConfig(
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        role_claim=settings.auth_role_claim,
        jwks_url=settings.auth_jwks_url,
        leeway_seconds=settings.auth_leeway_seconds,
    )


class Readiness(BaseModel):
    """What `/readyz` answers: ready or not, and each dependency's check."""

    status: Literal["ok", "unavailable"] = Field(
        description="`ok` when every check is `ok` (then 200, else 503)."
    )
    checks: dict[str, str] = Field(description="Each dependency (database, broker) → `ok` or why it failed.")


class Liveness(BaseModel):
    """What `/healthz` answers: alive or not, and each part's check."""

    status: Literal["ok", "dead"] = Field(description="`ok` when every check is `ok` (then 200, else 503).")
    service: str = Field(description="The service's name.")
    checks: dict[str, str] = Field(
        description="Each consumer, the outbox relay and each loop → `ok` or why not."
    )


def create_service_app(
    host: ServiceHost,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter] = (),
    policies: RoutePolicies,
    version: str = "0.1.0",
) -> FastAPI:
    """The HTTP app of a service: its routers, the dead-letter tools, /healthz, /readyz, /metrics, /docs.

    `policies` says who may call each of the service's routes (`service_runtime.auth`); the app
    is not built while a route has none. Every route runs its policy before anything else.
    """

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await host.start()
        try:
            yield
        finally:
            await host.stop()

    settings = host.settings
    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        dependencies=[Depends(enforce_policy)],
        docs_url=None,
        redoc_url=None,
    )
    app.state.host = host
    config = auth_config(settings)
    install_auth(app, TokenVerifier(config) if config is not None else None)

    @app.get(
        "/healthz",
        tags=["operations"],
        summary="Liveness: the process answers and its consumers, outbox relay and background loops run.",
        response_model=Liveness,
        responses={503: {"model": Liveness, "description": "A consumer, the relay or a loop died."}},
    )
    async def healthz() -> JSONResponse:
        checks = host.liveness()
        alive = all(v == "ok" for v in checks.values())
        if not alive:
            log.error("liveness_failed", checks={k: v for k, v in checks.items() if v != "ok"})
        return JSONResponse(
            {"status": "ok" if alive else "dead", "service": host.name, "checks": checks},
            status_code=200 if alive else 503,
        )

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: the database and the broker answer.",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "A dependency does not answer."}},
    )
    async def readyz() -> JSONResponse:
        checks = await host.readiness()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics.",
        response_class=PlainTextResponse,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> Response:
        return Response(generate_latest(host.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    for router in [*routers, build_dead_letter_router(host)]:
        app.include_router(router)
    # Refusals as RFC 9457 problem details, hostile input refused at the edge (issue 8).
    install_problem_details(app)
    all_policies = {**PROBE_POLICIES, **DEAD_LETTER_POLICIES, **policies}
    install_route_policies(app, all_policies)
    # Added last, so outermost: every answer — the edge guard's and the policy gate's refusals
    # included — is counted, timed and carries a request id.
    app.add_middleware(RequestObservation, metrics=host.metrics)
    _document_policies(app, all_policies, issuer=settings.auth_issuer)
    _serve_docs(app, client_id=settings.auth_docs_client_id)
    return app


def _document_policies(app: FastAPI, policies: RoutePolicies, *, issuer: str | None) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        document_route_policies(schema, policies, issuer=issuer)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


#: Swagger UI's files, served by the service itself (from the `fastapi-offline` wheel): no CDN,
#: so the docs work in a cluster without internet access and load nothing from third parties.
SWAGGER_ASSETS = Path(fastapi_offline.__file__).parent / "static"


def _serve_docs(app: FastAPI, *, client_id: str | None) -> None:
    """Swagger UI at /docs, able to sign in at the issuer (authorization code with PKCE) as `client_id`.

    These are documentation, not API routes: public, outside the OpenAPI and the policy table.
    """
    app.mount("/docs/assets", StaticFiles(directory=SWAGGER_ASSETS), name="docs-assets")
    init_oauth = (
        {"clientId": client_id, "usePkceWithAuthorizationCodeGrant": True, "scopes": "openid"}
        if client_id
        else None
    )

    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
            swagger_js_url=f"{root}/docs/assets/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs/assets/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs/assets/favicon.png",
            init_oauth=init_oauth,
            swagger_ui_parameters={"persistAuthorization": False},
        )

    async def redirect(_: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_route("/docs", docs, include_in_schema=False)
    app.add_route("/docs/oauth2-redirect", redirect, include_in_schema=False)
