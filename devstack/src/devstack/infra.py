"""Which Kafka and PostgreSQL a test session or local run gets, and small helpers to use them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import secrets
import tempfile
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]  # no stubs in the workspace
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from pydantic import SecretStr

from devstack.broker import EmbeddedBroker
from devstack.postgres import EmbeddedPostgres
from devstack.tls import Pki, make_test_pki

KAFKA_BOOTSTRAP_SERVERS_ENV = "KAFKA_BOOTSTRAP_SERVERS"
KAFKA_ENABLE_IDEMPOTENCE_ENV = "KAFKA_ENABLE_IDEMPOTENCE"
POSTGRES_ADMIN_URL_ENV = "POSTGRES_ADMIN_URL"
# Set to 1 to skip testcontainers even when a Docker engine answers.
NO_DOCKER_ENV = "DEVSTACK_NO_DOCKER"

LOCAL_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
#: The SCRAM user of the secured listeners (its password is made afresh for every session).
SCRAM_TEST_USER = "billing-test"
POSTGRES_IMAGE = "postgres:18-alpine"

_T = TypeVar("_T")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class KafkaTarget:
    """A Kafka-protocol broker to talk to, and how producers must be set up for it."""

    bootstrap_servers: str
    """Comma-separated `host:port` list for `bootstrap_servers=`."""
    enable_idempotence: bool
    """Pass to producers as `enable_idempotence=`; the embedded broker rejects idempotence."""
    kind: str
    """Where it came from: "env", "testcontainers" or "embedded"."""


@contextlib.contextmanager
def provide_kafka() -> Iterator[KafkaTarget]:
    """Give a running broker: from the environment, a Docker container, or embedded."""
    bootstrap = os.environ.get(KAFKA_BOOTSTRAP_SERVERS_ENV, "").strip()
    if bootstrap:
        idempotence = _env_flag(KAFKA_ENABLE_IDEMPOTENCE_ENV, default=True)
        yield KafkaTarget(bootstrap, enable_idempotence=idempotence, kind="env")
    elif docker_available():
        # Apache Kafka in KRaft mode (current Kafka has no ZooKeeper).
        from devstack.kafka_container import KraftKafkaContainer

        with KraftKafkaContainer() as container:
            yield KafkaTarget(
                container.get_bootstrap_server(), enable_idempotence=True, kind="testcontainers"
            )
    else:
        with EmbeddedBroker() as broker:
            yield KafkaTarget(broker.bootstrap, enable_idempotence=False, kind="embedded")


@dataclass(frozen=True)
class SecuredKafka:
    """A broker's secured listeners, and what a client needs to pass them."""

    sasl_ssl_bootstrap: str
    """SASL SCRAM-SHA-512 over TLS, for `username` and `password`."""
    mutual_tls_bootstrap: str
    """TLS that requires a client certificate signed by `pki.ca` (`pki.client_cert`, `pki.client_key`)."""
    username: str
    password: SecretStr
    pki: Pki
    """`pki.ca` signed both listeners' certificates (for `localhost` and `127.0.0.1`) and the client's."""
    enable_idempotence: bool
    """Pass to producers, as with `KafkaTarget`."""
    kind: str
    """"testcontainers" (Apache Kafka's own listeners) or "gateway" (`devstack.kafka_gateway`)."""


@contextlib.contextmanager
def provide_secured_kafka(kafka: KafkaTarget, *, folder: Path) -> Iterator[SecuredKafka]:
    """Give secured listeners of the same kind of broker as `kafka`; certificates go into `folder`.

    Where the session's broker is Apache Kafka in a container, a second container with its own
    SASL_SSL and mutual-TLS listeners (Kafka's own authentication). Elsewhere (the embedded Tansu,
    whose SASL/TLS flags do not work, or a broker from the environment) two test gateways in front
    of `kafka`: one SASL SCRAM-SHA-512 over TLS, one mutual TLS.
    """
    if kafka.kind == "testcontainers":
        from devstack.kafka_container import KraftKafkaContainer

        with KraftKafkaContainer(pki_dir=folder).with_sasl_ssl().with_mutual_tls() as container:
            listener = container.secure_listener
            assert listener is not None
            assert listener.mutual_tls_bootstrap_servers is not None
            yield SecuredKafka(
                sasl_ssl_bootstrap=listener.bootstrap_servers,
                mutual_tls_bootstrap=listener.mutual_tls_bootstrap_servers,
                username=listener.username,
                password=SecretStr(listener.password),
                pki=listener.pki,
                enable_idempotence=True,
                kind="testcontainers",
            )
        return
    from devstack.kafka_gateway import KafkaGateway, server_ssl_context

    if "," in kafka.bootstrap_servers:
        raise ValueError(
            f"the test gateway relays to one broker; {kafka.bootstrap_servers!r} names several "
            f"(point {KAFKA_BOOTSTRAP_SERVERS_ENV} at one node of a single-node cluster)"
        )
    pki = make_test_pki(folder, hostnames=("localhost", "127.0.0.1"))
    password = SecretStr(secrets.token_urlsafe(16))
    with (
        KafkaGateway(
            kafka.bootstrap_servers,
            ssl_context=server_ssl_context(pki),
            scram_users={SCRAM_TEST_USER: password},
        ) as sasl_ssl,
        KafkaGateway(kafka.bootstrap_servers, ssl_context=server_ssl_context(pki, mutual=True)) as mutual_tls,
    ):
        yield SecuredKafka(
            sasl_ssl_bootstrap=sasl_ssl.bootstrap,
            mutual_tls_bootstrap=mutual_tls.bootstrap,
            username=SCRAM_TEST_USER,
            password=password,
            pki=pki,
            enable_idempotence=kafka.enable_idempotence,
            kind="gateway",
        )


@contextlib.contextmanager
def provide_postgres(*, data_dir: Path | None = None) -> Iterator[str]:
    """Give the libpq admin URL of a running PostgreSQL.

    From the environment, a Docker container, the server on 127.0.0.1:5432, or
    an embedded server in `data_dir` (kept) or a temporary directory (removed).
    """
    admin_url = os.environ.get(POSTGRES_ADMIN_URL_ENV, "").strip()
    if admin_url:
        yield admin_url
    elif docker_available():
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer(POSTGRES_IMAGE, driver=None) as container:
            yield container.get_connection_url()
    elif postgres_answers(LOCAL_POSTGRES_URL):
        yield LOCAL_POSTGRES_URL
    elif data_dir is not None:
        with EmbeddedPostgres(data_dir) as server:
            yield server.admin_url
    else:
        with (
            tempfile.TemporaryDirectory(prefix="devstack-pg-") as temp_dir,
            EmbeddedPostgres(Path(temp_dir) / "data") as server,
        ):
            yield server.admin_url


def docker_available() -> bool:
    """Tell whether testcontainers can be used: a Docker engine answers and is not opted out of."""
    return not _env_flag(NO_DOCKER_ENV, default=False) and _docker_engine_answers()


@functools.cache
def _docker_engine_answers() -> bool:
    # Asked once per process: without an engine the probe costs up to its timeout.
    try:
        import docker  # type: ignore[import-untyped]  # no stubs in the workspace

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        # No SDK, no socket, a refused or slow engine: all mean "no Docker here".
        return False


def postgres_answers(url: str, *, timeout: float = 2.0) -> bool:
    """Tell whether PostgreSQL at the libpq `url` accepts a connection."""

    async def probe() -> None:
        connection = await asyncpg.connect(url, timeout=timeout)
        await connection.close()

    try:
        _run_sync(probe())
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    return True


def create_database(admin_url: str, name: str) -> str:
    """Create database `name` afresh (dropping an old one) and return its libpq URL."""
    quoted = _quote_identifier(name)

    async def create() -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
            await connection.execute(f"CREATE DATABASE {quoted}")
        finally:
            await connection.close()

    _run_sync(create())
    return database_url(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop database `name` if it exists, disconnecting whoever is still on it."""
    quoted = _quote_identifier(name)

    async def drop() -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        finally:
            await connection.close()

    _run_sync(drop())


def database_url(admin_url: str, name: str) -> str:
    """The libpq URL of database `name` on the server of `admin_url`."""
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def async_url(libpq_url: str) -> str:
    """Turn a libpq URL (`postgresql://…`) into SQLAlchemy's asyncpg form."""
    scheme, separator, rest = libpq_url.partition("://")
    if not separator or scheme.split("+")[0] not in {"postgresql", "postgres"}:
        raise ValueError(f"not a PostgreSQL URL: {libpq_url!r}")
    return f"postgresql+asyncpg://{rest}"


async def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    *,
    replication_factor: int = 1,
    client_options: Mapping[str, Any] | None = None,
) -> None:
    """Create each topic with its partition count; topics that exist are left as they are.

    `client_options`: aiokafka's security options for a secured listener
    (`service_runtime.kafka.kafka_client_options(settings)`).
    """
    if not topics:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(client_options or {}))
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)
                for name, partitions in topics.items()
            ]
        )
    finally:
        await admin.close()
    for topic_error in response.topic_errors:
        topic, code = topic_error[0], topic_error[1]
        if code not in (0, TopicAlreadyExistsError.errno):
            error_class = for_code(code)
            raise error_class(f"could not create topic {topic!r}")


def _quote_identifier(name: str) -> str:
    if not name or len(name.encode()) > 63 or "\x00" in name:
        raise ValueError(f"not a usable database name: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def _env_flag(name: str, *, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r}: expected one of {sorted(_TRUE | _FALSE)}")


def _run_sync(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to the end from sync code, even when this thread runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, coroutine).result()
