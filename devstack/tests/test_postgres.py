"""The embedded PostgreSQL 18: initdb, start, stop, restart with data kept, reuse of a running server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from devstack.infra import postgres_answers
from devstack.postgres import EmbeddedPostgres

pytestmark = pytest.mark.integration


def fetch(url: str, query: str) -> object:
    async def run() -> object:
        connection = await asyncpg.connect(url)
        try:
            return await connection.fetchval(query)
        finally:
            await connection.close()

    return asyncio.run(run())


def execute(url: str, query: str) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(query)
        finally:
            await connection.close()

    asyncio.run(run())


def test_embedded_postgres_runs_version_18_and_keeps_data_across_restarts(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "pgdata"
    server = EmbeddedPostgres(data_dir)

    admin_url = server.start()
    assert admin_url.startswith("postgresql://postgres@127.0.0.1:")
    assert "PostgreSQL 18" in str(fetch(admin_url, "select version()"))
    execute(admin_url, "create table kept (value text); insert into kept values ('still here')")
    server.stop()
    server.stop()
    assert not postgres_answers(admin_url)

    with EmbeddedPostgres(data_dir) as restarted:
        assert fetch(restarted.admin_url, "select value from kept") == "still here"


def test_a_server_already_running_on_the_data_dir_is_reused_and_left_running(
    tmp_path: Path,
) -> None:
    with EmbeddedPostgres(tmp_path / "pgdata") as owner:
        with EmbeddedPostgres(tmp_path / "pgdata", port=1) as reuser:
            assert reuser.admin_url == owner.admin_url

        assert postgres_answers(owner.admin_url)
