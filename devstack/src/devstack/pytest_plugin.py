"""Pytest fixtures for a real Kafka-protocol broker and a real PostgreSQL, started on first use."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, TypeVar

import pytest

if TYPE_CHECKING:
    from devstack.infra import KafkaTarget, SecuredKafka
    from devstack.issuer import DevIssuer

T = TypeVar("T")

# devstack.infra (aiokafka, asyncpg) is imported inside the fixtures, so that a
# unit-test run that asks for none of them pays nothing for this plugin.


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaTarget]:
    """A running broker for the whole session; see `devstack.infra.provide_kafka`."""
    from devstack.infra import provide_kafka

    with contextlib.ExitStack() as stack:
        yield _enter(stack, "Kafka-protocol broker", provide_kafka())


@pytest.fixture(scope="session")
def secured_kafka(kafka: KafkaTarget, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    """SASL_SSL (SCRAM-SHA-512) and mutual-TLS listeners of the session's broker kind; see
    `devstack.infra.provide_secured_kafka` (Apache Kafka's own with Docker, else the test gateway)."""
    from devstack.infra import provide_secured_kafka

    folder = tmp_path_factory.mktemp("kafka-pki")
    with contextlib.ExitStack() as stack:
        yield _enter(stack, "secured Kafka listener", provide_secured_kafka(kafka, folder=folder))


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """The libpq superuser URL of a running PostgreSQL; see `devstack.infra.provide_postgres`."""
    from devstack.infra import provide_postgres

    with contextlib.ExitStack() as stack:
        yield _enter(stack, "PostgreSQL server", provide_postgres())


@pytest.fixture(scope="session")
def database_url(postgres_admin_url: str) -> Iterator[str]:
    """A throwaway database for this session, as a `postgresql+asyncpg://` URL."""
    from devstack.infra import async_url, create_database, drop_database

    name = f"test_{uuid.uuid4().hex[:12]}"
    try:
        libpq_url = create_database(postgres_admin_url, name)
    except Exception as error:
        pytest.fail(f"could not create test database {name}: {error!r}", pytrace=False)
    try:
        yield async_url(libpq_url)
    finally:
        drop_database(postgres_admin_url, name)


@pytest.fixture(scope="session")
def oidc_issuer() -> Iterator[DevIssuer]:
    """The dev OpenID Connect issuer as its own process; `.url`, `.user_token(sub)`, `.service_token(id, secret)`."""
    from devstack.issuer import DevIssuer

    with contextlib.ExitStack() as stack:
        yield _enter(stack, "OpenID Connect issuer", DevIssuer())


@pytest.fixture
def unique_name() -> str:
    """A short random lowercase name, for topics and consumer groups no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}"


def _enter(stack: contextlib.ExitStack, what: str, provider: AbstractContextManager[T]) -> T:
    # Integration tests must not quietly turn into skips: no server is a failure.
    try:
        return stack.enter_context(provider)
    except Exception as error:
        pytest.fail(f"no {what} could be provided: {error}", pytrace=False)
