"""Tiers over the real broker and PostgreSQL: partner-program and contract events in, tier changes out (P-02…P-07)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

from billing_contracts.base import wire_json
from billing_contracts.invoicing import ContractStatus
from billing_contracts.partners import (
    AccountingFirmRegisteredV1,
    AuthorizationPart,
    CooperationAgreementEndedV1,
    ExpertJoinedFirmV1,
)
from billing_contracts.registry import topic_for
from devstack.testing import read_topic, wait_until

from ..conftest import (
    NOW,
    Partners,
    authorization,
    certified,
    contract_state,
    envelope,
    registered,
    unique,
)

pytestmark = pytest.mark.integration

TIER_TOPIC = "partners.tier-changed.v1"


async def changes_of(partners: Partners, firm: str, count: int) -> list[dict[str, Any]]:
    """The firm's `PartnerTierChangedV1` as published on Kafka, once `count` of them are there."""
    messages = await read_topic(
        partners.kafka,
        TIER_TOPIC,
        until=lambda found: sum(m["firm_id"] == firm for m in found) >= count,
    )
    return [m for m in messages if m["firm_id"] == firm]


async def test_the_25th_end_customer_and_a_certified_expert_make_a_firm_gold_with_the_reason(
    partners: Partners,
) -> None:
    firm = unique("firm")
    await partners.publisher.publish(registered(firm))
    await partners.wait_for_tier(firm, "partner")

    # P-02: 24 end customers and a certified expert are Silver; the 25th customer makes it Gold.
    await partners.publisher.publish(
        *(contract_state(f"{firm}-env-{n}", firm) for n in range(24)), certified(firm, f"{firm}-anna")
    )
    await partners.wait_for_tier(firm, "silver", end_customers=24)
    await partners.publisher.publish(contract_state(f"{firm}-env-24", firm))
    gold = await partners.wait_for_tier(firm, "gold", end_customers=25)

    assert gold["counts"] == {"end_customers": 25, "certified_experts": 1, "authorized_experts": 0}
    assert gold["next_tier"]["tier"] == "platinum"
    assert gold["benefits"]["own_use_discount_percent"] == "50"
    published = await changes_of(partners, firm, 3)
    assert [(m["old_tier"], m["new_tier"]) for m in published] == [
        (None, "partner"),
        ("partner", "silver"),
        ("silver", "gold"),
    ]
    last = published[-1]
    assert (last["end_customers"], last["certified_experts"], last["authorized_experts"]) == (25, 1, 0)
    assert last["effective_month"] == "2026-11"  # P-07: from this month's bill
    assert last["reason"].startswith("rose to Kulta / Gold: 25 end customers, 1 certified and 0 authorized")
    in_month = (await partners.http.get(f"/firms/{firm}/tiers/2026-11")).json()
    assert (in_month["tier"], in_month["effective_month"]) == ("gold", "2026-11")
    assert (await partners.http.get(f"/firms/{firm}/tiers/2026-10")).json()["tier"] is None


async def test_duplicates_and_a_late_older_contract_state_change_nothing(partners: Partners) -> None:
    firm = unique("firm")
    registration = registered(firm)
    envs = [contract_state(f"{firm}-env-{n}", firm) for n in range(5)]
    await partners.publisher.publish(registration, *envs)
    await partners.wait_for_tier(firm, "silver", end_customers=5)

    # The same events again (a producer retry), and an older state of env-0 after a newer one.
    ended = contract_state(
        f"{firm}-env-0", firm, status=ContractStatus.TERMINATED, at=NOW - dt.timedelta(days=1)
    )
    late = contract_state(f"{firm}-env-0", firm, status=ContractStatus.ACTIVE, at=NOW - dt.timedelta(days=10))
    await partners.publisher.publish(registration, *envs, ended)
    await partners.wait_for_tier(firm, "partner", end_customers=4)
    await partners.publisher.publish(late, *envs)
    marker = unique("marker-firm")
    await partners.publisher.publish(registered(marker))  # processed after them on the program topic
    await partners.wait_for_tier(marker, "partner")

    view = await partners.firm(firm)
    assert view["end_customers"] == 4
    history = (await partners.http.get(f"/firms/{firm}/tiers")).json()["changes"]
    assert [(c["old_tier"], c["new_tier"]) for c in history] == [
        (None, "partner"),
        ("partner", "silver"),
        ("silver", "partner"),
    ] or [(c["old_tier"], c["new_tier"]) for c in history] == [(None, "silver"), ("silver", "partner")]
    assert history[-1]["reason"].startswith("fell to Partneri / Partner: 4 end customers")


async def test_bad_input_is_dead_lettered_with_the_reason_and_the_rest_goes_on(partners: Partners) -> None:
    firm, other = unique("firm"), unique("firm")
    await partners.publisher.publish(registered(firm), registered(other))
    await partners.wait_for_tier(other, "partner")
    unknown = certified(unique("nobody"), "p-1")
    in_person_first = authorization(firm, f"{firm}-p2", AuthorizationPart.IN_PERSON, dt.date(2026, 9, 1))
    cert = certified(firm, f"{firm}-p3")
    elsewhere = certified(other, f"{firm}-p3", on=dt.date(2026, 10, 1))  # p3 works for `firm`
    bad_id = json.loads(wire_json(registered(unique("firm")))) | {"business_id": "1234567-8"}
    bad_event_id = uuid.uuid4()
    bad_id["event_id"] = str(bad_event_id)
    await partners.publisher.publish(cert)
    await wait_until(lambda: _certified(partners, firm), what="p3 certified at the firm")
    await partners.publisher.publish(unknown, in_person_first, elsewhere)
    await partners.publisher.publish_raw(topic_for(AccountingFirmRegisteredV1), b"{not json", key=b"x")
    await partners.publisher.publish_raw(
        topic_for(AccountingFirmRegisteredV1), json.dumps(bad_id).encode(), key=bad_id["firm_id"].encode()
    )
    # ...and the rest goes on: a valid fact after the bad ones is applied.
    await partners.publisher.publish(*(contract_state(f"{firm}-env-{n}", firm) for n in range(25)))
    await partners.wait_for_tier(firm, "gold", end_customers=25)

    # What can never become valid is dead-lettered at once (an invalid business ID, not JSON)...
    letters = await wait_until(
        lambda: _all(partners, bad_event_id), what="the invalid business ID dead-lettered"
    )
    assert letters[str(bad_event_id)] == ("schema_violation", letters[str(bad_event_id)][1])
    assert "invalid check digit" in letters[str(bad_event_id)][1]
    malformed = await partners.scalar(
        "SELECT count(*) FROM partners.dead_letters WHERE failure = 'malformed' AND value = :v",
        v=b"{not json",
    )
    assert malformed >= 1
    # ...what waits for something not known yet is parked with its reason, not a dead letter (P-02, P-04).
    waiting = await wait_until(
        lambda: _parked(partners, unknown.event_id, in_person_first.event_id, elsewhere.event_id),
        what="three inputs parked",
    )
    assert waiting[str(unknown.event_id)]["rule"] == "P-02"
    assert "is not registered in the partner program" in waiting[str(unknown.event_id)]["reason"]
    assert waiting[str(in_person_first.event_id)]["rule"] == "P-04"
    assert "only after the online part" in waiting[str(in_person_first.event_id)]["reason"]
    assert "is for another firm" in waiting[str(elsewhere.event_id)]["reason"]
    assert await partners.dead_letters(unknown.event_id, in_person_first.event_id, elsewhere.event_id) == {}
    assert (await partners.firm(other))["counts"]["certified_experts"] == 0


async def _parked(partners: Partners, *ids: uuid.UUID) -> dict[str, dict[str, Any]] | None:
    waiting = await partners.parked()
    return waiting if all(str(i) in waiting for i in ids) else None


async def _certified(partners: Partners, firm: str) -> bool:
    return bool((await partners.firm(firm))["counts"]["certified_experts"] == 1)


async def _all(partners: Partners, *ids: uuid.UUID) -> dict[str, tuple[str, str]] | None:
    found = await partners.dead_letters(*ids)
    return found if len(found) == len(ids) else None


async def test_a_person_who_moves_takes_the_certification_to_the_new_firm(partners: Partners) -> None:
    old, new = unique("firm"), unique("firm")
    person = f"{old}-mover"
    await partners.publisher.publish(
        registered(old),
        registered(new),
        *(contract_state(f"{old}-env-{n}", old) for n in range(25)),
        *(contract_state(f"{new}-env-{n}", new) for n in range(25)),
        certified(old, person, on=dt.date(2026, 3, 1)),
    )
    await partners.wait_for_tier(old, "gold", end_customers=25)
    await partners.wait_for_tier(new, "silver", end_customers=25)
    move = ExpertJoinedFirmV1(**envelope(), firm_id=new, expert_id=person, joined_on=dt.date(2026, 11, 1))
    await partners.publisher.publish(move)
    await partners.wait_for_tier(new, "gold")
    await partners.wait_for_tier(old, "silver")
    history = (await partners.http.get(f"/firms/{old}/tiers")).json()["changes"]
    assert "Kulta / Gold needs 1 more certified expert (≥ 1)" in history[-1]["reason"]


async def test_an_ended_agreement_takes_the_firm_out_of_the_program_whatever_its_counts(
    partners: Partners,
) -> None:
    firm = unique("firm")
    await partners.publisher.publish(
        registered(firm), *(contract_state(f"{firm}-env-{n}", firm) for n in range(6))
    )
    await partners.wait_for_tier(firm, "silver", end_customers=6)
    await partners.publisher.publish(
        CooperationAgreementEndedV1(
            **envelope(), firm_id=firm, ended_on=dt.date(2026, 11, 15), reason="notice"
        )
    )
    await partners.wait_for_tier(firm, None)
    messages = await read_topic(
        partners.kafka,
        TIER_TOPIC,
        until=lambda found: any(m["firm_id"] == firm and not m["in_program"] for m in found),
    )
    out = [m for m in messages if m["firm_id"] == firm][-1]
    assert (out["old_tier"], out["new_tier"], out["in_program"]) == ("silver", "partner", False)
    assert out["reason"].startswith("the cooperation agreement is no longer in force")
    view = await partners.firm(firm)
    assert (view["in_program"], view["tier"], view["end_customers"]) == (False, None, 6)
    assert (await partners.http.get(f"/firms/{firm}/tiers/2026-11")).json() == {
        "firm_id": firm,
        "month": "2026-11",
        "tier": None,
        "in_program": False,
        "effective_month": "2026-11",
    }


async def test_an_agreement_ending_on_a_later_day_takes_effect_on_that_day_without_a_new_input(
    partners: Partners,
) -> None:
    firm = unique("firm")
    await partners.publisher.publish(
        registered(firm),
        CooperationAgreementEndedV1(
            **envelope(), firm_id=firm, ended_on=dt.date(2026, 12, 1), reason="notice"
        ),
    )
    await partners.wait_for_tier(firm, "partner")
    from partners.service import refresh_standings

    partners.clock.set(dt.datetime(2026, 12, 1, 0, 5, tzinfo=NOW.tzinfo))
    try:
        await refresh_standings(partners.sessions, partners.clock)
    finally:
        partners.clock.set(NOW)
    await partners.wait_for_tier(firm, None)
    history = (await partners.http.get(f"/firms/{firm}/tiers")).json()["changes"]
    assert (history[-1]["effective_month"], history[-1]["in_program"]) == ("2026-12", False)


async def test_an_exam_that_arrives_before_its_firms_registration_counts_once_the_firm_registers(
    partners: Partners,
) -> None:
    # Registration and exam results travel on different topics: they can be read in either order.
    firm = unique("firm")
    early = certified(firm, f"{firm}-early")
    await partners.publisher.publish(early, *(contract_state(f"{firm}-env-{n}", firm) for n in range(25)))
    waiting = await wait_until(lambda: _parked(partners, early.event_id), what="the early exam parked")
    parked = waiting[str(early.event_id)]
    assert "is not registered in the partner program" in parked["reason"]
    assert dt.datetime.fromisoformat(parked["expires_at"]) - dt.datetime.fromisoformat(
        parked["parked_at"]
    ) == dt.timedelta(days=14)
    assert parked["partition"] is not None
    assert parked["offset"] is not None
    assert await partners.dead_letters(early.event_id) == {}

    await partners.publisher.publish(registered(firm))
    gold = await partners.wait_for_tier(firm, "gold", end_customers=25)
    assert gold["counts"]["certified_experts"] == 1
    assert str(early.event_id) not in await partners.parked()
    assert await partners.dead_letters(early.event_id) == {}, "applied after waiting: never a dead letter"


async def test_a_parked_input_becomes_a_dead_letter_with_its_reason_only_when_its_parking_expires(
    partners: Partners,
) -> None:
    firm = unique("firm")
    early = certified(firm, f"{firm}-waits")
    await partners.publisher.publish(early)
    await wait_until(lambda: _parked(partners, early.event_id), what="the exam parked")
    gauge = await wait_until(lambda: _gauge(partners, "partners_parked_inputs"), what="the parked gauge")
    assert gauge >= 1
    assert await _gauge(partners, "partners_parked_inputs_oldest_age_seconds") is not None
    assert await partners.dead_letters(early.event_id) == {}

    # 14 days later nothing it needs has come: the sweep dead-letters it, with the reason (P-02).
    partners.clock.set(NOW + dt.timedelta(days=14, minutes=1))
    try:
        letters = await wait_until(
            lambda: _all(partners, early.event_id), what="the expired exam dead-lettered"
        )
    finally:
        partners.clock.set(NOW)
    failure, reason = letters[str(early.event_id)]
    assert failure == "rejected"
    assert reason.startswith("P-02: ")
    assert "is not registered in the partner program" in reason
    assert "nothing it needs arrived within 14 days" in reason
    assert str(early.event_id) not in await partners.parked()
    letter_id = await partners.scalar(
        "SELECT id FROM partners.dead_letters WHERE event_id = :e", e=str(early.event_id)
    )
    # Once: the next sweeps find nothing more, and a firm registering later does not apply it.
    await partners.publisher.publish(registered(firm))
    await partners.wait_for_tier(firm, "partner")
    assert (await partners.firm(firm))["counts"]["certified_experts"] == 0
    assert (
        await partners.scalar(
            "SELECT count(*) FROM partners.dead_letters WHERE event_id = :e", e=str(early.event_id)
        )
        == 1
    )

    # An operator replays the letter now that the firm is known: applied, like any dead letter.
    replayed = await partners.http.post(f"/dead-letters/{letter_id}/replay")
    assert replayed.status_code == 200, replayed.text
    assert (await partners.firm(firm))["counts"]["certified_experts"] == 1


async def test_a_replayed_expired_input_still_waiting_is_refused_not_parked_again(partners: Partners) -> None:
    early = certified(unique("firm"), "p-never")
    await partners.publisher.publish(early)
    await wait_until(lambda: _parked(partners, early.event_id), what="the exam parked")
    partners.clock.set(NOW + dt.timedelta(days=15))
    try:
        await wait_until(lambda: _all(partners, early.event_id), what="the expired exam dead-lettered")
    finally:
        partners.clock.set(NOW)
    letter_id = await partners.scalar(
        "SELECT id FROM partners.dead_letters WHERE event_id = :e", e=str(early.event_id)
    )
    replayed = await partners.http.post(f"/dead-letters/{letter_id}/replay")
    assert replayed.status_code == 422, replayed.text
    assert "its parking expired" in replayed.text
    assert str(early.event_id) not in await partners.parked()


async def _gauge(partners: Partners, name: str) -> float | None:
    body = (await partners.http.get("/metrics")).text
    for line in body.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return None
