"""P-06 / P-07: the own-use discount by tier is held twice — as data in partners' benefit book (what
partner managers and the directory read) and in invoicing's charge rules (what the bill applies). The
services never import each other; this cross-service check keeps the two from drifting apart: a new
benefit set with other percentages fails here until invoicing's table follows it (docs/architecture.md,
Known gaps)."""

from __future__ import annotations

from invoicing.billing.charges import OWN_USE_DISCOUNT_PERCENT
from partners.benefits import load_benefit_book


def test_every_benefit_set_gives_each_tier_the_own_use_discount_invoicing_bills() -> None:
    book = load_benefit_book()
    assert book.sets, "the benefit book holds at least one set"
    for benefit_set in book.sets:
        for tier, benefits in benefit_set.tiers.items():
            assert benefits.own_use_discount_percent == OWN_USE_DISCOUNT_PERCENT[tier], (
                f"{benefit_set.valid_from} {tier}: partners {benefits.own_use_discount_percent} %, "
                f"invoicing {OWN_USE_DISCOUNT_PERCENT[tier]} %"
            )
