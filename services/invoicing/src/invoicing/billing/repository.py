"""The billing run's persistence: usage in, outcomes, invoices, held lines and corrections out (SQLAlchemy Core)."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import ARRAY, String, any_, func, literal, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_contracts.partners import PartnerTier
from invoicing import tables as t
from invoicing.billing.domain import (
    Adjustment,
    HeldRow,
    InvoiceStatus,
    MonthlyUsage,
    PayerResult,
    SettlementKind,
    TierBook,
)
from invoicing.billing.run import RunPeriod, RunTally
from invoicing.billing.wire import IssuedInvoice, monthly_usage, wire_line
from invoicing.calendar import YearMonth
from invoicing.numbering import InvoiceNumbers
from service_runtime.bulk import insert_rows, jsonb

_U = t.monthly_usage.c
_A = t.usage_adjustments.c
_H = t.held_lines.c
_O = t.billing_outcomes.c


_USAGE_OF = text(
    "SELECT environment_id, (usage->>'vouchers')::int, (usage->>'payees')::int,"
    " (usage->>'einvoices_sent')::int, (usage->>'einvoices_received')::int,"
    " (usage->>'billable_users')::int, (usage->>'signatures')::int,"
    " NULLIF(usage->'billable_hours', '{}'::jsonb)::text"
    " FROM invoicing.monthly_usage WHERE month = :month AND environment_id = ANY(CAST(:envs AS text[]))"
)


class SqlAlchemyBillingRepository:
    """Reads and writes the billing run's tables inside the caller's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    # --- readiness and run records ---

    async def month_ready(self, month: YearMonth) -> bool:
        """Metering closed the month and every final usage it announced has arrived."""
        closed = await self._s.scalar(
            select(t.closed_months.c.environment_count).where(t.closed_months.c.month == str(month))
        )
        if closed is None:
            return False
        received = await self._s.scalar(select(func.count()).where(_U.month == str(month)))
        return int(received or 0) >= int(closed)

    async def month_closed(self, month: YearMonth) -> bool:
        closed = await self._s.scalar(
            select(t.closed_months.c.month).where(t.closed_months.c.month == str(month))
        )
        return closed is not None

    async def start_run(self, run_id: str, month: YearMonth, run_date: dt.date, now: dt.datetime) -> int:
        """Record an attempt of the run of `month`; returns its attempt number."""
        r = t.billing_runs.c
        attempt = await self._s.scalar(
            insert(t.billing_runs)
            .values(
                run_id=run_id,
                run_date=run_date,
                billing_month=str(month),
                status="running",
                started_at=now,
                attempts=1,
                last_run_date=run_date,
                updated_at=now,
            )
            .on_conflict_do_update(
                index_elements=[r.run_id],
                set_={
                    "status": "running",
                    "attempts": t.billing_runs.c.attempts + 1,
                    "last_run_date": run_date,
                    "updated_at": now,
                    "finished_at": None,
                    "payers": 0,  # progress of this attempt; the outcomes are the record
                    "payers_done": 0,
                },
            )
            .returning(r.attempts)
        )
        return int(attempt or 1)

    async def add_progress(self, run_id: str, *, planned: int = 0, done: int = 0, now: dt.datetime) -> None:
        """Count payers planned and done in this attempt (several shards and workers add up)."""
        r = t.billing_runs.c
        await self._s.execute(
            update(t.billing_runs)
            .where(r.run_id == run_id)
            .values(payers=r.payers + planned, payers_done=r.payers_done + done, updated_at=now)
        )

    async def finish_run(
        self, run_id: str, month: YearMonth, *, already_billed: int, now: dt.datetime
    ) -> tuple[RunTally, list[dict[str, Any]]]:
        counts = await self.counts(month)
        failures = await self.failures(month)
        r = t.billing_runs.c
        await self._s.execute(
            update(t.billing_runs)
            .where(r.run_id == run_id)
            .values(
                status="completed_with_failures" if failures else "completed",
                finished_at=now,
                updated_at=now,
                invoices_issued=counts.issued,
                held=counts.held,
                zero=counts.zero,
                nothing_to_bill=counts.nothing,
                already_billed=already_billed,
                failures=failures,
            )
        )
        return counts, failures

    async def credit_notes_dated_in(self, month: YearMonth) -> int:
        """Credit notes dated in `month` (P-08: they reduce that month's commission statements)."""
        c = t.credit_notes.c
        found = await self._s.scalar(
            select(func.count()).where(c.credit_date >= month.first_day, c.credit_date <= month.last_day)
        )
        return int(found or 0)

    async def counts(self, month: YearMonth) -> RunTally:
        rows = await self._s.execute(
            select(_O.outcome, func.count()).where(_O.billing_period == str(month)).group_by(_O.outcome)
        )
        by = {outcome: int(n) for outcome, n in rows.tuples()}
        return RunTally(
            issued=by.get("issue", 0),
            held=by.get("hold", 0),
            zero=by.get("zero", 0),
            nothing=by.get("nothing", 0),
        )

    async def failures(self, month: YearMonth) -> list[dict[str, Any]]:
        f = t.billing_failures.c
        rows = await self._s.execute(
            select(f.payer_id, f.reason, f.attempts, f.failed_at)
            .where(f.billing_period == str(month))
            .order_by(f.payer_id)
        )
        return [
            {"payer_id": p, "reason": reason, "attempts": n, "failed_at": at.isoformat()}
            for p, reason, n, at in rows.tuples()
        ]

    async def record_failures(self, month: YearMonth, failures: Mapping[str, str], now: dt.datetime) -> None:
        if not failures:
            return
        f = t.billing_failures.c
        stmt = insert(t.billing_failures).values(
            [
                {"billing_period": str(month), "payer_id": p, "reason": reason[:4000], "failed_at": now}
                for p, reason in sorted(failures.items())
            ]
        )
        await self._s.execute(
            stmt.on_conflict_do_update(
                index_elements=[f.billing_period, f.payer_id],
                set_={
                    "reason": stmt.excluded.reason,
                    "failed_at": stmt.excluded.failed_at,
                    "attempts": t.billing_failures.c.attempts + 1,
                },
            )
        )

    async def clear_failures(self, month: YearMonth, payers: Sequence[str]) -> None:
        if not payers:
            return
        f = t.billing_failures.c
        await self._s.execute(
            t.billing_failures.delete().where(f.billing_period == str(month), f.payer_id == _any(payers))
        )

    # --- planning reads ---

    async def decided_payers(self, month: YearMonth) -> set[str]:
        rows = await self._s.execute(select(_O.payer_id).where(_O.billing_period == str(month)))
        return set(rows.scalars())

    async def payers_with_held_lines(self) -> set[str]:
        rows = await self._s.execute(select(_H.payer_id).where(_H.released_in_period.is_(None)).distinct())
        return set(rows.scalars())

    async def held_environment_of(self, payers: Sequence[str]) -> dict[str, tuple[str, YearMonth]]:
        """One environment and billing period of each payer's unreleased held lines."""
        if not payers:
            return {}
        rows = await self._s.execute(
            select(_H.payer_id, _H.billing_period, _H.lines)
            .where(_H.payer_id == _any(payers), _H.released_in_period.is_(None))
            .order_by(_H.payer_id, _H.billing_period.desc())
        )
        found: dict[str, tuple[str, YearMonth]] = {}
        for payer, period, lines in rows.tuples():
            if payer not in found and lines:
                found[payer] = (str(lines[0]["environment_id"]), YearMonth.parse(period))
        return found

    async def pending_adjustment_keys(self, before: YearMonth) -> set[tuple[str, YearMonth]]:
        """(environment, month) of unbilled adjustments of months before `before`."""
        rows = await self._s.execute(
            select(_A.environment_id, _A.month)
            .where(_A.billed_in_period.is_(None), _A.month < str(before))
            .distinct()
        )
        return {(env, YearMonth.parse(m)) for env, m in rows.tuples()}

    async def tier_book(self) -> TierBook:
        p = t.partner_tiers.c
        rows = await self._s.execute(select(p.firm_id, p.effective_month, p.tier))
        changes: dict[str, list[tuple[YearMonth, PartnerTier]]] = defaultdict(list)
        for firm, month, tier in rows.tuples():
            changes[firm].append((YearMonth.parse(month), PartnerTier(tier)))
        return TierBook({firm: tuple(c) for firm, c in changes.items()})

    # --- one batch of payers, in its transaction ---

    async def lock_payers(self, month: YearMonth, payers: Sequence[str]) -> None:
        """Serialise billing of these payers' period with any concurrent run (sorted: no deadlocks)."""
        keys = sorted(f"bill:{p}:{month}" for p in payers)
        await self._s.execute(
            text("SELECT count(pg_advisory_xact_lock(hashtext(k))) FROM unnest(CAST(:keys AS text[])) AS k"),
            {"keys": keys},
        )

    async def decided_among(self, month: YearMonth, payers: Sequence[str]) -> set[str]:
        rows = await self._s.execute(
            select(_O.payer_id).where(_O.billing_period == str(month), _O.payer_id == _any(payers))
        )
        return set(rows.scalars())

    async def usage_of(
        self, month: YearMonth, environments: Sequence[str], *, lock: bool
    ) -> tuple[dict[str, MonthlyUsage], list[tuple[str, int]]]:
        """Each environment's usage of `month`: the final figures, or the latest adjustment of them.

        Returns the usage and the (environment, adjustment number) keys folded in.
        """
        if not environments:
            return {}, []
        envs = list(environments)
        # The counts come out of the JSON in the database (as integers): no JSON to parse here.
        rows = await self._s.execute(_USAGE_OF, {"month": str(month), "envs": envs})
        usage: dict[str, MonthlyUsage] = {
            r[0]: MonthlyUsage(
                vouchers=r[1],
                payees=r[2],
                einvoices_sent=r[3],
                einvoices_received=r[4],
                billable_users=r[5],
                signatures=r[6],
                billable_hours={k: Decimal(v) for k, v in json.loads(r[7]).items()} if r[7] else {},
            )
            for r in rows.tuples()
        }
        query = select(_A.environment_id, _A.adjustment_no, _A.usage).where(
            _A.month == str(month), _A.environment_id == _any(envs), _A.billed_in_period.is_(None)
        )
        if lock:
            query = query.with_for_update()
        latest: dict[str, tuple[int, Mapping[str, Any]]] = {}
        folded: list[tuple[str, int]] = []
        for env, number, usage in (await self._s.execute(query)).tuples():
            folded.append((env, number))
            if env not in latest or number > latest[env][0]:
                latest[env] = (number, usage)
        for env, (_, adjusted) in latest.items():
            usage[env] = monthly_usage(adjusted)
        return usage, folded

    async def held_of(self, payers: Sequence[str], *, lock: bool) -> dict[str, list[HeldRow]]:
        if not payers:
            return {}
        query = (
            select(_H.payer_id, _H.billing_period, _H.lines, _H.net)
            .where(_H.payer_id == _any(payers), _H.released_in_period.is_(None))
            .order_by(_H.payer_id, _H.billing_period)
        )
        if lock:
            query = query.with_for_update()
        held: dict[str, list[HeldRow]] = defaultdict(list)
        for payer, period, lines, net in (await self._s.execute(query)).tuples():
            held[payer].append(HeldRow(payer, YearMonth.parse(period), tuple(lines), net))
        return held

    async def pending_adjustments_of(
        self, keys: Iterable[tuple[str, YearMonth]], *, lock: bool
    ) -> list[Adjustment]:
        """Unbilled adjustments of these (environment, month) pairs, oldest first."""
        pairs = sorted({(env, str(m)) for env, m in keys})
        if not pairs:
            return []
        query = (
            select(_A.environment_id, _A.month, _A.adjustment_no, _A.usage, _A.previous)
            .where(tuple_(_A.environment_id, _A.month).in_(pairs), _A.billed_in_period.is_(None))
            .order_by(_A.environment_id, _A.month, _A.adjustment_no)
        )
        if lock:
            query = query.with_for_update()
        return [
            Adjustment(env, YearMonth.parse(m), n, monthly_usage(usage), monthly_usage(previous))
            for env, m, n, usage, previous in (await self._s.execute(query)).tuples()
        ]

    async def billed_environment_months(
        self, keys: Iterable[tuple[str, YearMonth]]
    ) -> set[tuple[str, YearMonth]]:
        pairs = sorted({(env, str(m)) for env, m in keys})
        if not pairs:
            return set()
        b = t.billed_environment_months.c
        rows = await self._s.execute(
            select(b.environment_id, b.month).where(tuple_(b.environment_id, b.month).in_(pairs))
        )
        return {(env, YearMonth.parse(m)) for env, m in rows.tuples()}

    async def mark_adjustments_billed(
        self,
        keys: Sequence[tuple[str, YearMonth, int]],
        month: YearMonth,
        invoice_of: Mapping[str, str | None],
    ) -> None:
        """Adjustments folded into `month`'s billing; `invoice_of` maps environment → invoice id."""
        if not keys:
            return
        await self._s.execute(
            text(
                "UPDATE invoicing.usage_adjustments AS a SET billed_in_period = :period, billed_invoice_id = k.inv"
                " FROM unnest(CAST(:envs AS text[]), CAST(:months AS text[]), CAST(:numbers AS integer[]),"
                " CAST(:invoices AS text[])) AS k(env, month, no, inv)"
                " WHERE a.environment_id = k.env AND a.month = k.month AND a.adjustment_no = k.no"
                " AND a.billed_in_period IS NULL"
            ),
            {
                "period": str(month),
                "envs": [k[0] for k in keys],
                "months": [str(k[1]) for k in keys],
                "numbers": [k[2] for k in keys],
                "invoices": [invoice_of.get(k[0]) for k in keys],
            },
        )

    async def next_invoice_numbers(self, n: int) -> list[int]:
        """`n` numbers of the one unique increasing series of invoices and credit notes (B-18)."""
        return await InvoiceNumbers(self._s).take(n)

    async def record_decisions(
        self,
        period: RunPeriod,
        results: Sequence[PayerResult],
        issued: Sequence[IssuedInvoice],
        failures: Mapping[str, str],
        now: dt.datetime,
    ) -> None:
        """A batch's decisions as rows, all in the caller's transaction: one outcome per payer (the
        primary key refuses a second decision), the invoices, the billed environment-months, lines
        held and released (B-15), adjustments billed (B-04), and the payers that failed."""
        month, run_id = period.month, period.run_id
        billing_period = str(month)
        invoice_of_payer = {i.payer_id: i.invoice_id for i in issued}
        held_rows: list[dict[str, Any]] = []
        released: dict[str, str | None] = {}
        outcomes: list[dict[str, Any]] = []
        env_months: list[dict[str, Any]] = []
        adjustment_keys: list[tuple[str, YearMonth, int]] = []
        adjustment_invoice: dict[str, str | None] = {}
        for result in results:
            settlement = result.settlement
            kind = settlement.kind
            issued_as = invoice_of_payer.get(result.payer_id)
            if kind is SettlementKind.HOLD and settlement.lines:
                held_rows.append(
                    {
                        "payer_id": result.payer_id,
                        "billing_period": billing_period,
                        "lines": jsonb(
                            [
                                wire_line(ln, i).model_dump(mode="json")
                                for i, ln in enumerate(settlement.lines, 1)
                            ]
                        ),
                        "net": settlement.totals.total_net,
                        "reason": str(settlement.reason),
                        "held_at": now,
                    }
                )
            if kind in (SettlementKind.ISSUE, SettlementKind.ZERO):
                released[result.payer_id] = issued_as
            outcomes.append(
                {
                    "payer_id": result.payer_id,
                    "billing_period": billing_period,
                    "outcome": kind.value,
                    "reason": None if settlement.reason is None else settlement.reason.value,
                    "invoice_id": issued_as,
                    "net": settlement.totals.total_net,
                    "run_id": run_id,
                    "decided_at": now,
                }
            )
            env_months += [
                {
                    "environment_id": env,
                    "month": billing_period,
                    "payer_id": result.payer_id,
                    "billing_period": billing_period,
                }
                for env in result.environments
            ]
            adjustment_keys += result.adjustments
            for env, _, _ in result.adjustments:
                adjustment_invoice[env] = issued_as
        invoices = [
            {
                "invoice_id": i.invoice_id,
                "invoice_number": i.number,
                "reference_number": i.fields["reference_number"],
                "payer_id": i.payer_id,
                "billing_period": billing_period,
                "invoice_date": i.fields["invoice_date"],
                "due_date": i.fields["due_date"],
                "total_net": i.fields["total_net"],
                "total_vat": i.fields["total_vat"],
                "total_gross": i.fields["total_gross"],
                "status": InvoiceStatus.OPEN.value,
                "run_id": run_id,
                "document": i.document.decode(),
                "created_at": now,
                "updated_at": now,
            }
            for i in issued
        ]
        await self.save_outcomes(outcomes)
        await self.save_invoices(invoices)
        await self.save_billed_environment_months(env_months)
        await self.save_held(held_rows)
        await self.release_held(released, month)
        await self.mark_adjustments_billed(adjustment_keys, month, adjustment_invoice)
        await self.clear_failures(month, [r.payer_id for r in results])
        await self.record_failures(month, failures, now)

    async def save_outcomes(self, rows: Sequence[Mapping[str, Any]]) -> None:
        # No ON CONFLICT: a second decision of a (payer, period) must fail the transaction.
        await insert_rows(self._s, t.billing_outcomes, rows, conflict="")

    async def save_invoices(self, rows: Sequence[Mapping[str, Any]]) -> None:
        await insert_rows(self._s, t.invoices, rows, conflict="")

    async def save_billed_environment_months(self, rows: Sequence[Mapping[str, Any]]) -> None:
        await insert_rows(self._s, t.billed_environment_months, rows)

    async def save_held(self, rows: Sequence[Mapping[str, Any]]) -> None:
        await insert_rows(self._s, t.held_lines, rows, conflict="")

    async def release_held(self, released: Mapping[str, str | None], month: YearMonth) -> None:
        """Mark every held line of these payers as invoiced (payer → invoice id; None: settled at zero)."""
        if not released:
            return
        payers = sorted(released)
        await self._s.execute(
            text(
                "UPDATE invoicing.held_lines AS h SET released_in_period = :period, released_invoice_id = k.inv"
                " FROM unnest(CAST(:payers AS text[]), CAST(:invoices AS text[])) AS k(payer, inv)"
                " WHERE h.payer_id = k.payer AND h.released_in_period IS NULL"
            ),
            {"period": str(month), "payers": payers, "invoices": [released[p] for p in payers]},
        )


def _any(values: Sequence[str]) -> Any:
    """`= ANY(:array)`: one bound parameter however many values (no parameter limit)."""
    return any_(literal(list(values), ARRAY(String)))
