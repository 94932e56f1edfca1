"""Operators' dead-letter tools end to end over the real broker: a command dead-lettered by a rule, the
rule's data fixed, replayed → applied exactly once; discarded with a reason; audited by the token's
subject; counted on /metrics from the table; the same over the CLI."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import secrets
import uuid
from typing import Any

import pytest

from billing_contracts.contracts import (
    BillingChannel,
    ContractSignedV1,
    PackageChangeKind,
    PackageChangeRequestedV1,
    PackageCode,
    PostalAddress,
    Requester,
)
from billing_contracts.registry import topic_for
from devstack.local_run import business_id
from devstack.testing import metric, serve_http, wait_until
from invoicing.calendar import HELSINKI
from service_runtime.cli import dead_letters_command

from ..conftest import Stack

pytestmark = pytest.mark.integration

TOPIC = topic_for(PackageChangeRequestedV1)
GROUP = "invoicing-contracts"
MAIN_USER = Requester(person_name="Maija Pääkäyttäjä", role="main_user")


def envelope(at: dt.datetime) -> dict[str, Any]:
    return {"event_id": uuid.uuid4(), "occurred_at": at, "producer": "crm"}


def resize(environment_id: str) -> PackageChangeRequestedV1:
    at = dt.datetime(2026, 10, 20, 10, tzinfo=HELSINKI)
    return PackageChangeRequestedV1(
        **envelope(at),
        environment_id=environment_id,
        requested_at=at,
        change_kind=PackageChangeKind.PACKAGE_SIZE,
        new_package=PackageCode.PERUS,
        requested_by=MAIN_USER,
    )


def signed(environment_id: str) -> ContractSignedV1:
    return ContractSignedV1(
        **envelope(dt.datetime(2026, 9, 20, 12, tzinfo=HELSINKI)),
        environment_id=environment_id,
        business_id=business_id(3_000_000 + secrets.randbelow(1_000_000)),
        company_name="Kahvila Aurinko Oy",
        package=PackageCode.KEVYT,
        production_date=dt.date(2026, 9, 15),
        billing_address=PostalAddress(street="Aleksanterinkatu 15", postal_code="00100", city="Helsinki"),
        billing_channel=BillingChannel.PAPER,
    )


async def dead_letter_of(stack: Stack, event_id: uuid.UUID) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        page = (await stack.invoicing.get("/dead-letters", params={"topic": TOPIC, "limit": 500})).json()
        return next((d for d in page["items"] if d["event_id"] == str(event_id)), None)

    return await wait_until(found, what=f"the dead letter of {event_id}")


async def pending(stack: Stack) -> float:
    return (
        await metric(stack.invoicing, "dead_letters_pending", group=GROUP, topic=TOPIC, failure="rejected")
        or 0
    )


async def changes(stack: Stack, environment_id: str, name: str) -> list[dict[str, Any]]:
    (contract,) = (await stack.invoicing.get("/contracts", params={"environment_id": environment_id})).json()
    history = (await stack.invoicing.get(f"/contracts/{contract['contract_id']}/history")).json()
    return [h for h in history if h["change"] == name]


async def test_a_command_refused_for_want_of_its_contract_is_applied_once_when_replayed_after_the_fix(
    stack: Stack,
) -> None:
    env = f"dl-{uuid.uuid4().hex[:10]}"
    operator = stack.issuer.user_auth("olli.operator")
    command = resize(env)
    await stack.publisher.publish(command)

    letter = await dead_letter_of(stack, command.event_id)
    assert (letter["consumer_group"], letter["failure"], letter["status"]) == (GROUP, "rejected", "new")
    assert f"environment {env} has no contract" in letter["reason"]
    await wait_until(lambda: _at_least(pending(stack), 1), what="the letter counted as pending")
    shown = (await stack.invoicing.get(f"/dead-letters/{letter['id']}")).json()
    assert str(command.event_id) in shown["value_preview"]
    assert shown["value_truncated"] is False

    # Replayed before the cause is fixed: refused again with the reason, nothing applied, audited.
    early = await stack.invoicing.post(f"/dead-letters/{letter['id']}/replay", auth=operator)
    assert (early.status_code, early.headers["content-type"]) == (422, "application/problem+json")
    assert "has no contract" in early.json()["detail"]

    # A viewer may read dead letters but not replay them.
    viewer = await stack.invoicing.post(
        f"/dead-letters/{letter['id']}/replay", auth=stack.issuer.user_auth("ville.viewer")
    )
    assert viewer.status_code == 403

    # The fix: the contract the command was about arrives. The replay now applies it.
    await stack.publisher.publish(signed(env))

    async def contract_exists() -> bool:
        return bool((await stack.invoicing.get("/contracts", params={"environment_id": env})).json())

    await wait_until(contract_exists, what=f"the contract of {env}")
    pending_before = await pending(stack)
    replayed = await stack.invoicing.post(f"/dead-letters/{letter['id']}/replay", auth=operator)

    assert replayed.status_code == 200, replayed.text
    after = replayed.json()
    assert (after["status"], after["resolved_by"]) == ("replayed", "olli.operator")
    assert [(a["action"], a["outcome"], a["actor"]) for a in after["actions"]] == [
        ("replay", "refused", "olli.operator"),
        ("replay", "applied", "olli.operator"),
    ]
    (change,) = await changes(stack, env, "package_size_changed")
    assert (change["event_id"], change["asserted_by"]) == (str(command.event_id), f"kafka:{TOPIC}")

    # Exactly once: a second replay is refused, and the command delivered again is a duplicate.
    again = await stack.invoicing.post(f"/dead-letters/{letter['id']}/replay", auth=operator)
    assert again.status_code == 409
    await stack.publisher.publish(command)
    marker = resize(f"dl-marker-{uuid.uuid4().hex[:8]}")  # published after it: once it is handled, so is it
    await stack.publisher.publish(marker)
    await dead_letter_of(stack, marker.event_id)
    assert len(await changes(stack, env, "package_size_changed")) == 1
    await wait_until(
        lambda: _at_most(pending(stack), pending_before), what="the replayed letter no longer pending"
    )


async def test_a_dead_letter_is_discarded_with_a_reason_over_the_cli_and_never_replayed(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    command = resize(f"dl-{uuid.uuid4().hex[:10]}")
    await stack.publisher.publish(command)
    letter = await dead_letter_of(stack, command.event_id)
    token = stack.issuer.user_token("olli.operator")

    async with serve_http(stack.apps["invoicing"]) as url:

        def cli(action: str, **options: Any) -> int:
            args = argparse.Namespace(action=action, url=url, token=token, json=False, **options)
            return dead_letters_command(args, default_url="http://unused")

        listed = await asyncio.to_thread(
            cli, "list", topic=TOPIC, status="new", group=GROUP, failure="rejected", after=None, limit=500
        )
        shown_list = capsys.readouterr().out
        discarded = await asyncio.to_thread(
            cli, "discard", id=letter["id"], reason="a test command, never real"
        )
        discard_out = capsys.readouterr().out
        replay = await asyncio.to_thread(cli, "replay", id=letter["id"])
        replay_err = capsys.readouterr().err

    assert (listed, discarded, replay) == (0, 0, 1)
    assert f"{letter['id']:>8}  new" in shown_list
    assert f"dead letter {letter['id']}: discarded by olli.operator" in discard_out
    assert "HTTP 409" in replay_err
    view = (await stack.invoicing.get(f"/dead-letters/{letter['id']}")).json()
    assert [(a["action"], a["actor"], a["reason"]) for a in view["actions"]] == [
        ("discard", "olli.operator", "a test command, never real")
    ]


async def _at_least(value: Any, floor: float) -> bool:
    return bool(await value >= floor)


async def _at_most(value: Any, ceiling: float) -> bool:
    return bool(await value <= ceiling)
