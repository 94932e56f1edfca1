"""Choosing Kafka and PostgreSQL, and the database, URL and topic helpers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from devstack import infra
from devstack.broker import free_port
from devstack.infra import (
    LOCAL_POSTGRES_URL,
    async_url,
    create_database,
    drop_database,
    postgres_answers,
    provide_kafka,
    provide_postgres,
)


@pytest.fixture
def no_env_no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(infra.KAFKA_BOOTSTRAP_SERVERS_ENV, raising=False)
    monkeypatch.delenv(infra.KAFKA_ENABLE_IDEMPOTENCE_ENV, raising=False)
    monkeypatch.delenv(infra.POSTGRES_ADMIN_URL_ENV, raising=False)
    monkeypatch.setenv(infra.NO_DOCKER_ENV, "1")


def test_kafka_from_the_environment_is_idempotent_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(infra.KAFKA_BOOTSTRAP_SERVERS_ENV, "kafka-0:9092,kafka-1:9092")
    monkeypatch.delenv(infra.KAFKA_ENABLE_IDEMPOTENCE_ENV, raising=False)
    with provide_kafka() as target:
        assert target == infra.KafkaTarget("kafka-0:9092,kafka-1:9092", True, "env")

    monkeypatch.setenv(infra.KAFKA_ENABLE_IDEMPOTENCE_ENV, "false")
    with provide_kafka() as target:
        assert not target.enable_idempotence


def test_a_malformed_idempotence_flag_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(infra.KAFKA_BOOTSTRAP_SERVERS_ENV, "kafka:9092")
    monkeypatch.setenv(infra.KAFKA_ENABLE_IDEMPOTENCE_ENV, "maybe")
    with pytest.raises(ValueError, match="KAFKA_ENABLE_IDEMPOTENCE"), provide_kafka():
        pass


def test_postgres_from_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(infra.POSTGRES_ADMIN_URL_ENV, "postgresql://admin:pw@db:5432/postgres")
    with provide_postgres() as admin_url:
        assert admin_url == "postgresql://admin:pw@db:5432/postgres"


@pytest.mark.integration
@pytest.mark.usefixtures("no_env_no_docker")
def test_without_env_or_docker_kafka_is_the_embedded_broker_without_idempotence() -> None:
    with provide_kafka() as target:
        assert target.kind == "embedded"
        assert not target.enable_idempotence
        assert target.bootstrap_servers.startswith("127.0.0.1:")


@pytest.mark.integration
@pytest.mark.usefixtures("no_env_no_docker")
def test_without_env_or_docker_postgres_is_the_local_server_when_it_answers() -> None:
    if not postgres_answers(LOCAL_POSTGRES_URL):
        pytest.skip("no PostgreSQL accepts postgres on 127.0.0.1:5432 on this machine")
    with provide_postgres() as admin_url:
        assert admin_url == LOCAL_POSTGRES_URL


@pytest.mark.integration
@pytest.mark.usefixtures("no_env_no_docker")
def test_without_any_server_postgres_is_embedded_in_the_given_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        infra, "LOCAL_POSTGRES_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    )
    with provide_postgres(data_dir=tmp_path / "pgdata") as admin_url:
        assert postgres_answers(admin_url)
    assert (tmp_path / "pgdata" / "PG_VERSION").exists()
    assert not postgres_answers(admin_url)


@pytest.mark.integration
def test_create_database_starts_afresh_and_drop_database_removes_it(
    postgres_admin_url: str, unique_name: str
) -> None:
    name = f"devstack_{unique_name}"

    url = create_database(postgres_admin_url, name)
    asyncio.run(_execute(url, "create table leftover (id int)"))
    url_again = create_database(postgres_admin_url, name)
    tables = asyncio.run(_fetch(url_again, "select count(*) from pg_tables where tablename = 'leftover'"))
    drop_database(postgres_admin_url, name)
    drop_database(postgres_admin_url, name)

    assert url == url_again
    assert url.endswith(f"/{name}")
    assert tables == 0
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        asyncio.run(_fetch(url, "select 1"))


@pytest.mark.integration
async def test_the_session_database_url_works_with_sqlalchemy_asyncpg(database_url: str) -> None:
    assert database_url.startswith("postgresql+asyncpg://")
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            name = (await connection.execute(text("select current_database()"))).scalar_one()
    finally:
        await engine.dispose()
    assert name.startswith("test_")


@pytest.mark.parametrize(
    ("libpq_url", "expected"),
    [
        ("postgresql://postgres@127.0.0.1:5432/db", "postgresql+asyncpg://postgres@127.0.0.1:5432/db"),
        ("postgres://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgresql+psycopg2://u:p@h:1/db", "postgresql+asyncpg://u:p@h:1/db"),
    ],
)
def test_async_url_names_the_asyncpg_driver(libpq_url: str, expected: str) -> None:
    assert async_url(libpq_url) == expected


def test_async_url_refuses_what_is_not_postgresql() -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        async_url("mysql://root@localhost/db")


def test_database_names_that_cannot_be_identifiers_are_refused() -> None:
    with pytest.raises(ValueError, match="not a usable database name"):
        create_database("postgresql://postgres@127.0.0.1:1/postgres", "x" * 64)


def test_the_pytest_plugin_imports_no_client_library_until_a_fixture_is_used() -> None:
    probe = "import sys, devstack.pytest_plugin; print('aiokafka' in sys.modules, 'asyncpg' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


async def _execute(url: str, query: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(query)
    finally:
        await connection.close()


async def _fetch(url: str, query: str) -> object:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval(query)
    finally:
        await connection.close()


def test_the_docker_kafka_is_apache_kafka_in_kraft_mode_without_zookeeper() -> None:
    from devstack.kafka_container import KAFKA_IMAGE, kraft_environment

    env = kraft_environment()
    assert KAFKA_IMAGE.startswith("apache/kafka:4.")
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert not [key for key in env if "ZOOKEEPER" in key]


def test_the_docker_kafka_can_add_a_scram_over_tls_listener() -> None:
    from devstack.kafka_container import kraft_environment

    env = kraft_environment(secure=True)
    assert env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].endswith(",SECURE:SASL_SSL")
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert env["KAFKA_LISTENER_NAME_SECURE_SSL_KEYSTORE_TYPE"] == "PEM"


def test_the_docker_kafka_can_add_a_listener_that_requires_client_certificates() -> None:
    from devstack.kafka_container import kraft_environment

    env = kraft_environment(secure=True, mutual_tls=True)
    assert env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].endswith(",SECURE:SASL_SSL,MTLS:SSL")
    assert env["KAFKA_LISTENER_NAME_MTLS_SSL_CLIENT_AUTH"] == "required"
    assert env["KAFKA_LISTENER_NAME_MTLS_SSL_TRUSTSTORE_LOCATION"] == "/certs/ca.crt"


def test_secured_listeners_are_kafka_s_own_with_docker_and_the_gateway_elsewhere(
    kafka: infra.KafkaTarget, secured_kafka: infra.SecuredKafka
) -> None:
    assert secured_kafka.kind == ("testcontainers" if kafka.kind == "testcontainers" else "gateway")
    assert secured_kafka.sasl_ssl_bootstrap != secured_kafka.mutual_tls_bootstrap
    assert kafka.bootstrap_servers not in (
        secured_kafka.sasl_ssl_bootstrap,
        secured_kafka.mutual_tls_bootstrap,
    )


def test_the_gateway_will_not_stand_in_front_of_several_brokers(tmp_path: Path) -> None:
    several = infra.KafkaTarget("127.0.0.1:9092,127.0.0.1:9093", enable_idempotence=True, kind="env")

    with (
        pytest.raises(ValueError, match="names several"),
        infra.provide_secured_kafka(several, folder=tmp_path),
    ):
        pass


def test_installing_devstack_registers_its_pytest_plugin() -> None:
    from importlib.metadata import entry_points

    (plugin,) = [e for e in entry_points(group="pytest11") if e.name == "devstack"]
    assert plugin.value == "devstack.pytest_plugin"
