"""Partners consumes every topic the registry says it consumes, and publishes what the registry says it produces."""

from __future__ import annotations

from billing_contracts.base import Message
from billing_contracts.invoicing import ContractChangedV1
from billing_contracts.partners import CommissionStatementIssuedV1, PartnerTierChangedV1
from billing_contracts.registry import TOPICS, consumed_by, topic_for
from partners.service import BILLING_INPUTS, PROGRAM_INPUTS


def test_the_three_intakes_cover_every_topic_the_registry_gives_partners() -> None:
    contracts: list[type[Message]] = [*PROGRAM_INPUTS, ContractChangedV1, *BILLING_INPUTS]
    subscribed = {topic_for(c) for c in contracts}
    assert subscribed == {t.name for t in consumed_by("partners")}


def test_partners_produces_the_tier_changes_and_the_commission_statements() -> None:
    produced = {t.contract for t in TOPICS if "partners" in t.producers}
    assert produced == {PartnerTierChangedV1, CommissionStatementIssuedV1}
