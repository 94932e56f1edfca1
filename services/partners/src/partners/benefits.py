"""The P-06 benefit book: read and checked from YAML into the domain's effective-dated `BenefitBook`."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from billing_contracts.partners import PartnerTier
from partners.domain import TIER_ORDER, BenefitBook, BenefitSet, Presentation, TierBenefits

#: Percentages are quoted in the file ("10"): a YAML float never reaches a Decimal.
Percent = Annotated[StrictStr, Field(pattern=r"^\d{1,3}(\.\d{1,2})?$")]


class _TierFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    own_contact_person: bool
    resale_commission_percent: Percent
    training_materials_and_joint_events: bool
    opinahjo_discount_percent: Percent
    club_for_certified_and_authorized: bool
    directory_listing: bool
    presentation: Presentation
    marketing_program: str | None
    free_training_webinars: bool
    own_use_discount_percent: Percent


class _SetFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    valid_from: dt.date
    tiers: dict[PartnerTier, _TierFile]


class _BookFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    benefit_sets: list[_SetFile] = Field(min_length=1)


class BenefitFileError(ValueError):
    """The benefit file is not valid; the message says where."""


def _percent(value: str, where: str) -> Decimal:
    amount = Decimal(value)
    if amount > 100:
        raise BenefitFileError(f"{where}: {value} % is more than 100 %")
    return amount


def parse_benefit_book(text: str) -> BenefitBook:
    """The book from YAML text; each tier must have at least the benefits of the tier below it (P-06)."""
    try:
        raw = _BookFile.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as exc:
        raise BenefitFileError(str(exc)) from None
    sets = []
    for s in raw.benefit_sets:
        tiers = {}
        for tier, b in s.tiers.items():
            where = f"valid_from {s.valid_from} {tier.value}"
            tiers[tier] = TierBenefits(
                own_contact_person=b.own_contact_person,
                resale_commission_percent=_percent(b.resale_commission_percent, where),
                training_materials_and_joint_events=b.training_materials_and_joint_events,
                opinahjo_discount_percent=_percent(b.opinahjo_discount_percent, where),
                club_for_certified_and_authorized=b.club_for_certified_and_authorized,
                directory_listing=b.directory_listing,
                presentation=b.presentation,
                marketing_program=b.marketing_program,
                free_training_webinars=b.free_training_webinars,
                own_use_discount_percent=_percent(b.own_use_discount_percent, where),
            )
        _check_cumulative(s.valid_from, tiers)
        sets.append(BenefitSet(valid_from=s.valid_from, tiers=tiers))
    try:
        return BenefitBook(sets=sets)
    except ValueError as exc:
        raise BenefitFileError(str(exc)) from None


def _check_cumulative(valid_from: dt.date, tiers: dict[PartnerTier, TierBenefits]) -> None:
    """P-06: "each tier has all of the lower tiers' benefits" — no flag lost, no percent lowered going up."""
    order = [t for t in TIER_ORDER if t in tiers]
    presentations = list(Presentation)
    for lower, higher in itertools.pairwise(order):
        a, b = tiers[lower], tiers[higher]
        flags = (
            "own_contact_person",
            "training_materials_and_joint_events",
            "club_for_certified_and_authorized",
            "directory_listing",
            "free_training_webinars",
        )
        lost = [f for f in flags if getattr(a, f) and not getattr(b, f)]
        lowered = [
            f
            for f in ("resale_commission_percent", "opinahjo_discount_percent", "own_use_discount_percent")
            if getattr(b, f) < getattr(a, f)
        ]
        if presentations.index(b.presentation) < presentations.index(a.presentation):
            lowered.append("presentation")
        if lost or lowered:
            raise BenefitFileError(
                f"valid_from {valid_from}: {higher.value} must have all of {lower.value}'s benefits "
                f"(P-06); it lacks {', '.join(lost + lowered)}"
            )


def load_benefit_book(path: Path | None = None) -> BenefitBook:
    """The configured book, or the one shipped with the service (the seed's table)."""
    if path is not None:
        return parse_benefit_book(path.read_text(encoding="utf-8"))
    return parse_benefit_book(resources.files("partners").joinpath("data/benefits.yaml").read_text("utf-8"))
