"""What a billing run knows up front (B-01, B-04, B-15, B-17, B-26): every payer of the month with
the contract terms in effect, held lines and pending corrections, read through the repositories;
and metering's item lists of production months. Shared by the run and the dry run."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from invoicing.billing.domain import (
    PRODUCTION_MONTH_ITEM_KINDS,
    Correction,
    PayerWork,
    counts_from_production_date,
    environment_contract,
)
from invoicing.billing.repository import SqlAlchemyBillingRepository
from invoicing.billing.specification import ItemSource
from invoicing.calendar import YearMonth
from invoicing.contracts.domain import ContractTerms
from invoicing.contracts.repository import ContractRepository
from invoicing.contracts.terms_repository import ContractTermsRepository
from service_runtime.database import DatabaseError, Session, Sessions

LOOKUPS = 4  # sessions looking up the terms of corrected months at once


def failure_reason(exc: BaseException) -> str:
    """A payer's failure for the operator: the error's first line, without SQL or parameters."""
    # A database error: the driver's message, never the statement or its parameters.
    error = exc.orig if isinstance(exc, DatabaseError) and exc.orig is not None else exc
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line}"[:1000]


async def plan_month(
    session: Session, month: YearMonth, sessions: Sessions | None = None
) -> tuple[dict[str, PayerWork], set[tuple[str, YearMonth]]]:
    """Every payer with something for `month`: contracts billable in it, held lines, corrections.

    Also returns the pending adjustments of environment-months that have no contract (nothing
    was or will be billed for them), which the run marks as seen.
    """
    repo = SqlAlchemyBillingRepository(session)
    work: dict[str, PayerWork] = {}
    for terms in await ContractTermsRepository(session).for_month(month):
        work.setdefault(terms.payer_id, PayerWork(terms.payer_id)).terms.append(terms)
    held_payers = await repo.payers_with_held_lines()
    for payer in held_payers:
        work.setdefault(payer, PayerWork(payer))
    pending = await repo.pending_adjustment_keys(before=month)
    unbillable: set[tuple[str, YearMonth]] = set()
    # Late usage is rare: the terms of each corrected environment-month, one contract at a time,
    # in a few sessions at once when there are many.
    keys = sorted(pending, key=lambda k: (k[0], k[1]))
    parts = [keys[i::LOOKUPS] for i in range(LOOKUPS)] if sessions is not None else [keys]

    async def look_up(part: list[tuple[str, YearMonth]]) -> list[ContractTerms | None]:
        if sessions is None:
            return [await terms_of_environment(session, env, m) for env, m in part]
        async with sessions() as own:
            return [await terms_of_environment(own, env, m) for env, m in part]

    found = await asyncio.gather(*(look_up(part) for part in parts if part))
    for part, terms_of in zip([p for p in parts if p], found, strict=True):
        for (env, corrected), of_month in zip(part, terms_of, strict=True):
            if of_month is None:
                unbillable.add((env, corrected))
                continue
            work.setdefault(of_month.payer_id, PayerWork(of_month.payer_id)).corrections.append(
                Correction(of_month, corrected)
            )
    for w in work.values():
        w.corrections.sort(key=lambda c: (c.terms.environment_id, c.month))
    # A payer with held lines but no contract now (its environments moved to another payer):
    # its final invoice (B-15) goes to the name and address of a month it was billed for.
    for payer, (env, period) in (
        await repo.held_environment_of([p for p in held_payers if not work[p].terms])
    ).items():
        if not work[payer].corrections:
            work[payer].last_known = await terms_of_environment(session, env, period)
    return work, unbillable


async def terms_of_environment(
    session: Session, environment_id: str, month: YearMonth
) -> ContractTerms | None:
    """The terms of an environment's contract for `month`, if the contract was billable in it."""
    contract = await ContractRepository(session).of_environment(environment_id)
    if contract is None:
        return None
    terms = await ContractTermsRepository(session).of(contract.contract_id, month)
    if terms is None or not environment_contract(terms).is_billable_in(month):
        return None
    return terms


async def production_month_items(
    month: YearMonth, items: ItemSource | None, batch: Sequence[PayerWork]
) -> tuple[dict[str, Any], dict[str, str]]:
    """B-01: metering's items of each environment whose production date falls inside the month.

    Read before the batch's transaction (metering's closed month does not change under it in a
    way the run could see anyway; a late change comes as an adjustment). Errors by environment.
    """
    found: dict[str, Any] = {}
    errors: dict[str, str] = {}
    period = str(month)
    for work in batch:
        for terms in work.terms:
            if not counts_from_production_date(environment_contract(terms), month):
                continue
            env = terms.environment_id
            if items is None:
                errors[env] = (
                    f"B-01: {env} went into production on {terms.production_date}; counting its usage from "
                    "that day needs metering's item lists (set INVOICING_METERING_URL)"
                )
                continue
            try:
                found[env] = {
                    kind: await items.items(env, period, kind) for kind in PRODUCTION_MONTH_ITEM_KINDS
                }
            except Exception as exc:  # metering down: this payer waits for the rerun, the others go on
                errors[env] = f"B-01: metering's item lists of {env} could not be read: {failure_reason(exc)}"
    return found, errors
