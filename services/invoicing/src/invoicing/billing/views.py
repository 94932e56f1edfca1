"""Read models of invoicing for the API and rehearsals: invoices, held amounts, runs, dry-run plans."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing_contracts.invoicing import InvoiceIssuedV1
from invoicing import tables as t
from invoicing.billing.domain import InvoiceStatus, due_date
from invoicing.billing.service import PlannedInvoice
from invoicing.billing.wire import wire_line
from invoicing.calendar import YearMonth
from invoicing.money import ZERO
from invoicing.prices.domain import PriceBook

_I = t.invoices.c
_H = t.held_lines.c


def _money(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.01")), "f")


def _maybe_money(value: Decimal | None) -> str | None:
    return None if value is None else _money(value)


def _time(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _invoice(row: Any) -> dict[str, Any]:
    document: dict[str, Any] = dict(row.document)
    open_amount = row.total_gross - row.credited_gross - row.paid_amount
    return document | {
        # The document is what was published; these follow the invoice's life.
        "due_date": row.due_date.isoformat(),
        "status": row.status,
        "paid_amount": _money(row.paid_amount),
        "credited_net": _money(row.credited_net),
        "credited_gross": _money(row.credited_gross),
        "open_amount": _money(max(open_amount, ZERO)),
        # Two reports of procountor-sync, each its own field (I-01, I-03).
        "delivery_status": row.delivery_status,
        "delivery_error": row.delivery_error,
        "delivery_status_at": _time(row.delivery_status_at),
        "payment_status": row.payment_status,
        "procountor_paid_amount": _maybe_money(row.procountor_paid_amount),
        "procountor_open_amount": _maybe_money(row.procountor_open_amount),
        "payment_status_at": _time(row.payment_status_at),
        "procountor_invoice_id": row.procountor_invoice_id,
    }


_COLUMNS = (
    _I.invoice_id,
    _I.invoice_number,
    _I.document,
    _I.due_date,
    _I.status,
    _I.total_gross,
    _I.paid_amount,
    _I.credited_net,
    _I.credited_gross,
    _I.delivery_status,
    _I.delivery_error,
    _I.delivery_status_at,
    _I.payment_status,
    _I.procountor_paid_amount,
    _I.procountor_open_amount,
    _I.payment_status_at,
    _I.procountor_invoice_id,
)


async def list_invoice_views(
    session: AsyncSession,
    *,
    payer_id: str | None = None,
    period: str | None = None,
    status: InvoiceStatus | None = None,
    limit: int = 100,
    after_number: int | None = None,
) -> list[dict[str, Any]]:
    query = select(*_COLUMNS).order_by(_I.invoice_number).limit(limit)
    if payer_id:
        query = query.where(_I.payer_id == payer_id)
    if period:
        query = query.where(_I.billing_period == period)
    if status:
        query = query.where(_I.status == status.value)
    if after_number is not None:
        query = query.where(_I.invoice_number > after_number)
    return [_invoice(r) for r in await session.execute(query)]


async def invoice_view(session: AsyncSession, invoice_id: str) -> dict[str, Any] | None:
    row = (await session.execute(select(*_COLUMNS).where(_I.invoice_id == invoice_id))).first()
    return None if row is None else _invoice(row)


async def invoice_document(session: AsyncSession, invoice_id: str) -> InvoiceIssuedV1 | None:
    """The invoice as it was published, if it exists."""
    document = await session.scalar(select(_I.document).where(_I.invoice_id == invoice_id))
    return None if document is None else InvoiceIssuedV1.model_validate(document)


async def held_of_payer(session: AsyncSession, payer_id: str) -> dict[str, Any]:
    """B-15: every held batch of lines of the payer, and the sum still held."""
    rows = (
        await session.execute(
            select(
                _H.billing_period, _H.net, _H.reason, _H.lines, _H.released_in_period, _H.released_invoice_id
            )
            .where(_H.payer_id == payer_id)
            .order_by(_H.billing_period)
        )
    ).all()
    held = sum((r.net for r in rows if r.released_in_period is None), ZERO)
    return {
        "payer_id": payer_id,
        "held_net": _money(held),
        "held": [
            {
                "billing_period": r.billing_period,
                "net": _money(r.net),
                "reason": r.reason,
                "lines": r.lines,
                "released_in_period": r.released_in_period,
                "released_invoice_id": r.released_invoice_id,
            }
            for r in rows
        ],
    }


async def held_totals(session: AsyncSession) -> dict[str, str]:
    """Payer → net still held, for every payer with something held."""
    rows = await session.execute(
        select(_H.payer_id, func.sum(_H.net))
        .where(_H.released_in_period.is_(None))
        .group_by(_H.payer_id)
        .order_by(_H.payer_id)
    )
    return {payer: _money(net) for payer, net in rows.tuples()}


async def billing_run_status(session: AsyncSession, month: YearMonth) -> dict[str, Any] | None:
    r = t.billing_runs.c
    row = (
        (await session.execute(select(t.billing_runs).where(r.billing_month == str(month))))
        .mappings()
        .first()
    )
    if row is None:
        return None
    o = t.billing_outcomes.c
    counts = {
        outcome: int(n)
        for outcome, n in (
            await session.execute(
                select(o.outcome, func.count()).where(o.billing_period == str(month)).group_by(o.outcome)
            )
        ).tuples()
    }
    f = t.billing_failures.c
    failures = [
        {"payer_id": p, "reason": reason, "attempts": n, "failed_at": at.isoformat()}
        for p, reason, n, at in (
            await session.execute(
                select(f.payer_id, f.reason, f.attempts, f.failed_at)
                .where(f.billing_period == str(month))
                .order_by(f.payer_id)
            )
        ).tuples()
    ]
    return {
        "run_id": row["run_id"],
        "billing_month": row["billing_month"],
        "status": row["status"],
        "first_run_date": row["run_date"].isoformat(),
        "last_run_date": None if row["last_run_date"] is None else row["last_run_date"].isoformat(),
        "attempts": row["attempts"],
        "started_at": row["started_at"].isoformat(),
        "finished_at": None if row["finished_at"] is None else row["finished_at"].isoformat(),
        "progress": {"payers": row["payers"], "done": row["payers_done"]},
        "outcomes": {
            "issued": counts.get("issue", 0),
            "held": counts.get("hold", 0),
            "zero": counts.get("zero", 0),
            "nothing_to_bill": counts.get("nothing", 0),
        },
        "failures": failures,
    }


def planned_view(plan: PlannedInvoice, *, run_date: dt.date, price_book: PriceBook) -> dict[str, Any]:
    """One payer of a dry run: the decision and the lines it covers, with totals (no number yet)."""
    settlement = plan.settlement
    totals = settlement.totals
    month = YearMonth.of(run_date).prev()
    term = price_book.price_list_for(month).payment_term_days
    return {
        "payer_id": plan.payer_id,
        "payer_name": None if plan.payer_terms is None else plan.payer_terms.invoice_name,
        "action": settlement.kind.value,
        "reason": None if settlement.reason is None else settlement.reason.value,
        "final_invoice": plan.is_final,
        "invoice_date": run_date.isoformat(),
        "due_date": due_date(run_date, term).isoformat(),
        "lines": [wire_line(ln, i).model_dump(mode="json") for i, ln in enumerate(settlement.lines, 1)],
        "vat_totals": [
            {"vat_rate": format(v.vat_rate, "f"), "net": _money(v.net), "vat": _money(v.vat)}
            for v in totals.vat_totals
        ],
        "total_net": _money(totals.total_net),
        "total_vat": _money(totals.total_vat),
        "total_gross": _money(totals.total_gross),
        "accumulated_held_net": _money(settlement.accumulated_held_net),
    }


async def latest_run_progress(session: AsyncSession) -> dict[str, int] | None:
    """Payers of the latest billing period's run by state, for `/metrics` (every replica reads the same)."""
    r = t.billing_runs.c
    row = (
        (await session.execute(select(t.billing_runs).order_by(r.billing_month.desc()).limit(1)))
        .mappings()
        .first()
    )
    if row is None:
        return None
    period = row["billing_month"]
    o = t.billing_outcomes.c
    counted = await session.execute(
        select(o.outcome, func.count()).where(o.billing_period == period).group_by(o.outcome)
    )
    decided = dict(counted.tuples().all())
    failed = await session.scalar(
        select(func.count())
        .select_from(t.billing_failures)
        .where(t.billing_failures.c.billing_period == period)
    )
    return {
        "pending": max(0, int(row["payers"]) - int(row["payers_done"])) if row["status"] == "running" else 0,
        "issued": int(decided.get("issue", 0)),
        "held": int(decided.get("hold", 0)),
        "zero": int(decided.get("zero", 0)),
        "nothing_to_bill": int(decided.get("nothing", 0)),
        "failed": int(failed or 0),
    }


async def last_run_finished_at(session: AsyncSession) -> dt.datetime | None:
    """When the latest billing run attempt that went through every payer finished (failures or not)."""
    r = t.billing_runs.c
    finished: dt.datetime | None = await session.scalar(
        select(func.max(r.finished_at)).where(r.status.in_(("completed", "completed_with_failures")))
    )
    return finished
