"""Partners' persistence: facts, environments, firms and their standing, tier history, commissions."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, func, literal_column, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_contracts.base import Message
from billing_contracts.partners import CommissionLineKind, ExamKind, ExpertSoftware, PartnerTier
from billing_contracts.registry import TOPICS
from partners import tables as t
from partners.domain import (
    AgreementEvent,
    AgreementFact,
    ExpertFact,
    ExpertFactKind,
    StatementLine,
    TierInMonth,
)
from service_runtime.bulk import insert_rows

_F = t.firms.c
_E = t.environments.c
_X = t.expert_facts.c
_A = t.agreement_facts.c
_T = t.tier_changes.c
_L = t.commission_lines.c
_R = t.billing_runs.c
_S = t.commission_statements.c
_D = t.billing_documents.c

#: Key space of the transaction-scoped advisory locks (the first of the two int4 keys).
_LOCK_FIRM = 0x70617274  # "part"
_LOCK_COMMISSIONS = 0x636F6D6D  # "comm"


async def claim_event(session: AsyncSession, event_id: UUID, topic: str, now: dt.datetime) -> bool:
    """Mark an event id processed, as the Kafka consumer does; False when it was already."""
    p = t.runtime_tables.processed_events
    claimed = await session.scalar(
        insert(p)
        .values(event_id=event_id, topic=topic, processed_at=now)
        .on_conflict_do_nothing()
        .returning(p.c.event_id)
    )
    return claimed is not None


@dataclass(frozen=True, slots=True)
class FirmRow:
    firm_id: str
    business_id: str
    firm_name: str
    in_program: bool
    tier: PartnerTier | None
    end_customers: int
    certified_experts: int
    authorized_experts: int
    tier_reason: str | None
    standing_on: dt.date | None
    city: str | None
    website: str | None
    presentation: str | None
    extended_presentation: str | None
    software: tuple[ExpertSoftware, ...]
    details_changed_at: dt.datetime | None


def _firm_row(r: Any) -> FirmRow:
    return FirmRow(
        firm_id=r.firm_id,
        business_id=r.business_id,
        firm_name=r.firm_name,
        in_program=r.in_program,
        tier=PartnerTier(r.tier) if r.tier else None,
        end_customers=r.end_customers,
        certified_experts=r.certified_experts,
        authorized_experts=r.authorized_experts,
        tier_reason=r.tier_reason,
        standing_on=r.standing_on,
        city=r.city,
        website=r.website,
        presentation=r.presentation,
        extended_presentation=r.extended_presentation,
        software=tuple(ExpertSoftware(s) for s in r.software.split(",") if s),
        details_changed_at=r.details_changed_at,
    )


@dataclass(frozen=True, slots=True)
class StoredStanding:
    """A firm's standing as last stored: the tier last announced and the counts it was computed from."""

    in_program: bool
    tier: PartnerTier | None
    end_customers: int
    certified_experts: int
    authorized_experts: int
    standing_on: dt.date | None


class FirmRepository:
    """Registered firms: master data and the standing last computed."""

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def lock(self, firm_ids: Iterable[str]) -> None:
        """Serialise recomputations of the same firms across transactions (sorted: no deadlock)."""
        ids = sorted(set(firm_ids))
        if ids:
            await self._s.execute(
                text(
                    "SELECT pg_advisory_xact_lock(:space, hashtext(f)) FROM unnest(CAST(:ids AS text[])) AS f "
                    "ORDER BY f"
                ),
                {"space": _LOCK_FIRM, "ids": ids},
            )

    async def get(self, firm_id: str) -> FirmRow | None:
        row = (await self._s.execute(select(t.firms).where(_F.firm_id == firm_id))).first()
        return _firm_row(row) if row else None

    async def get_many(self, firm_ids: Iterable[str]) -> dict[str, FirmRow]:
        ids = sorted(set(firm_ids))
        if not ids:
            return {}
        rows = await self._s.execute(select(t.firms).where(_F.firm_id.in_(ids)))
        return {r.firm_id: _firm_row(r) for r in rows}

    async def standings_of(self, firm_ids: Iterable[str]) -> dict[str, StoredStanding]:
        """The standing last stored for each registered firm among `firm_ids` (what a recomputation needs)."""
        ids = sorted(set(firm_ids))
        if not ids:
            return {}
        rows = await self._s.execute(
            text(
                "SELECT firm_id, in_program, tier, end_customers, certified_experts, authorized_experts, "
                "standing_on FROM partners.firms WHERE firm_id = ANY(CAST(:ids AS text[]))"
            ),
            {"ids": ids},
        )
        return {
            firm: StoredStanding(in_program, PartnerTier(tier) if tier else None, n, c, a, on)
            for firm, in_program, tier, n, c, a, on in rows.tuples()
        }

    async def registered_among(self, firm_ids: Iterable[str]) -> set[str]:
        ids = sorted(set(firm_ids))
        if not ids:
            return set()
        return set((await self._s.execute(select(_F.firm_id).where(_F.firm_id.in_(ids)))).scalars())

    async def register_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add firms, or take the name and business ID of a later registration; one statement per batch.

        Rows: firm_id, business_id, firm_name, registered_at, updated_at; one row per firm (the
        batch's latest registration), since one statement cannot update a row twice.
        """
        await insert_rows(
            self._s,
            t.firms,
            rows,
            conflict=(
                "ON CONFLICT (firm_id) DO UPDATE SET business_id = EXCLUDED.business_id, "
                "firm_name = EXCLUDED.firm_name "
                # The directory's master data, once given, is the firm's name and business ID.
                "WHERE partners.firms.details_changed_at IS NULL"
            ),
        )

    async def change_details(self, firm_id: str, values: Mapping[str, Any], at: dt.datetime) -> None:
        """P-09 master data; an older event arriving late changes nothing."""
        software = ",".join(sorted(s.value for s in values["software"]))
        await self._s.execute(
            update(t.firms)
            .where(
                _F.firm_id == firm_id,
                or_(_F.details_changed_at.is_(None), _F.details_changed_at <= at),
            )
            .values({**values, "software": software, "details_changed_at": at, "updated_at": at})
        )

    async def due_for_refresh(self, today: dt.date, limit: int) -> list[str]:
        """Firms whose standing was computed for an earlier day than `today` (dated facts may apply now)."""
        rows = await self._s.execute(
            select(_F.firm_id)
            .where(or_(_F.standing_on.is_(None), _F.standing_on < today))
            .order_by(_F.firm_id)
            .limit(limit)
        )
        return list(rows.scalars())

    async def save_standings(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store computed standings: firm_id, in_program, tier, counts, tier_reason, standing_on, updated_at."""
        if not rows:
            return
        await self._s.execute(
            text(
                "UPDATE partners.firms AS f SET in_program = u.in_program, tier = NULLIF(u.tier, ''), "
                "end_customers = u.end_customers, certified_experts = u.certified, "
                "authorized_experts = u.authorized, tier_reason = COALESCE(u.reason, f.tier_reason), "
                "standing_on = u.standing_on, updated_at = u.updated_at "
                "FROM unnest(CAST(:ids AS text[]), CAST(:in_program AS boolean[]), CAST(:tier AS text[]), "
                "CAST(:end_customers AS integer[]), CAST(:certified AS integer[]), "
                "CAST(:authorized AS integer[]), CAST(:reason AS text[]), CAST(:standing_on AS date[]), "
                "CAST(:updated_at AS timestamptz[])) "
                "AS u(firm_id, in_program, tier, end_customers, certified, authorized, reason, standing_on, "
                "updated_at) WHERE f.firm_id = u.firm_id"
            ),
            {
                "ids": [r["firm_id"] for r in rows],
                "in_program": [r["in_program"] for r in rows],
                "tier": [r["tier"] or "" for r in rows],
                "end_customers": [r["end_customers"] for r in rows],
                "certified": [r["certified"] for r in rows],
                "authorized": [r["authorized"] for r in rows],
                "reason": [r["reason"] for r in rows],
                "standing_on": [r["standing_on"] for r in rows],
                "updated_at": [r["updated_at"] for r in rows],
            },
        )

    async def directory(
        self,
        *,
        tiers: Sequence[PartnerTier],
        name: str | None,
        city: str | None,
        software: ExpertSoftware | None,
        offset: int,
        limit: int,
    ) -> tuple[int, list[FirmRow]]:
        """P-09: listed firms matching the search, highest tier first, then by name; and how many match."""
        conditions: list[ColumnElement[bool]] = [
            _F.in_program.is_(True),
            _F.tier.in_([x.value for x in tiers]),
        ]
        if name:
            conditions.append(_F.firm_name.ilike(f"%{_like(name)}%", escape="\\"))
        if city:
            conditions.append(func.lower(_F.city) == city.strip().lower())
        if software is not None:
            conditions.append(
                func.strpos(
                    literal_column("','") + _F.software + literal_column("','"), f",{software.value},"
                )
                > 0
            )
        total = int(await self._s.scalar(select(func.count()).select_from(t.firms).where(*conditions)) or 0)
        order = func.array_position(
            literal_column("ARRAY['platinum','gold','silver','partner']::text[]"), _F.tier
        )
        rows = await self._s.execute(
            select(t.firms)
            .where(*conditions)
            .order_by(order, _F.firm_name, _F.firm_id)
            .offset(offset)
            .limit(limit)
        )
        return total, [_firm_row(r) for r in rows]


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class FactRepository:
    """The P-02 and P-04 facts, as recorded."""

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def add_agreement_facts(self, rows: Sequence[Mapping[str, Any]]) -> None:
        await insert_rows(self._s, t.agreement_facts, rows)

    async def add_expert_facts(self, rows: Sequence[Mapping[str, Any]]) -> None:
        await insert_rows(self._s, t.expert_facts, rows)

    async def agreements_of(self, firm_ids: Iterable[str]) -> dict[str, list[AgreementFact]]:
        ids = sorted(set(firm_ids))
        found: dict[str, list[AgreementFact]] = defaultdict(list)
        if not ids:
            return found
        rows = await self._s.execute(
            select(_A.firm_id, _A.kind, _A.on_date, _A.occurred_at).where(_A.firm_id.in_(ids))
        )
        for firm_id, kind, on, at in rows.tuples():
            found[firm_id].append(AgreementFact(AgreementEvent(kind), on, at))
        return found

    async def people_of_firms(self, firm_ids: Iterable[str]) -> dict[str, list[ExpertFact]]:
        """Every fact of every person who ever had a fact with one of the firms."""
        ids = sorted(set(firm_ids))
        if not ids:
            return {}
        persons = select(_X.expert_id).where(_X.firm_id.in_(ids)).distinct().scalar_subquery()
        return await self._facts(select(t.expert_facts).where(_X.expert_id.in_(persons)))

    async def people(self, expert_ids: Iterable[str]) -> dict[str, list[ExpertFact]]:
        ids = sorted(set(expert_ids))
        if not ids:
            return {}
        return await self._facts(select(t.expert_facts).where(_X.expert_id.in_(ids)))

    async def _facts(self, query: Any) -> dict[str, list[ExpertFact]]:
        found: dict[str, list[ExpertFact]] = defaultdict(list)
        for r in await self._s.execute(query):
            found[r.expert_id].append(
                ExpertFact(
                    expert_id=r.expert_id,
                    firm_id=r.firm_id,
                    kind=ExpertFactKind(r.kind),
                    on=r.on_date,
                    occurred_at=r.occurred_at,
                    software=ExpertSoftware(r.software) if r.software else None,
                    exam=ExamKind(r.exam) if r.exam else None,
                )
            )
        return found


class EnvironmentRepository:
    """P-03: the latest contract state of each environment."""

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def lock_states(self, environment_ids: Iterable[str]) -> list[tuple[str | None, str | None]]:
        """Lock the known environments among these until the transaction ends: (firm, contract id) of each now."""
        ids = sorted(set(environment_ids))
        if not ids:
            return []
        rows = await self._s.execute(
            text(
                "SELECT accounting_firm_id, contract_id FROM partners.environments "
                "WHERE environment_id = ANY(CAST(:ids AS text[])) ORDER BY environment_id FOR UPDATE"
            ),
            {"ids": ids},
        )
        return list(rows.tuples())

    async def counted(
        self, environment_ids: Iterable[str], *, successors_of: Iterable[str] = ()
    ) -> dict[str, str | None]:
        """P-03 with B-28 per known environment: the firm each one counts for now, or None.

        For `environment_ids` and every environment whose B-28 successor is one of the contracts
        `successors_of` (its count depends on that contract's state). The difference of two such
        readings around a change is the change of each firm's count, without counting the firms.
        """
        ids = sorted(set(environment_ids))
        contracts = sorted(set(successors_of))
        rows = await self._s.execute(
            text(
                "SELECT e.environment_id, CASE WHEN e.is_end_customer AND (e.successor_contract_id IS NULL "
                "OR NOT EXISTS (SELECT 1 FROM partners.environments AS s WHERE s.contract_id = e.successor_contract_id "
                "AND s.is_end_customer AND s.accounting_firm_id = e.accounting_firm_id)) "
                "THEN e.accounting_firm_id END "
                "FROM partners.environments AS e WHERE e.environment_id = ANY(CAST(:ids AS text[])) "
                "OR e.successor_contract_id = ANY(CAST(:contracts AS text[]))"
            ),
            {"ids": ids, "contracts": contracts},
        )
        return dict(rows.tuples().all())

    async def keep_latest(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Upsert each environment's state unless a later one is stored (late events change nothing)."""
        excluded = ", ".join(f"{c} = EXCLUDED.{c}" for c in rows[0] if c != "environment_id") if rows else ""
        await insert_rows(
            self._s,
            t.environments,
            rows,
            conflict=(
                f"ON CONFLICT (environment_id) DO UPDATE SET {excluded} "
                "WHERE EXCLUDED.changed_at >= partners.environments.changed_at"
            ),
        )

    async def end_customer_counts(self, firm_ids: Iterable[str]) -> dict[str, int]:
        """P-03 for each firm; B-28: a contract whose successor already counts for the firm is one client."""
        ids = sorted(set(firm_ids))
        if not ids:
            return {}
        rows = await self._s.execute(
            text(
                "SELECT firm, sum(n) FROM ("
                "SELECT accounting_firm_id AS firm, count(*) AS n FROM partners.environments "
                "WHERE accounting_firm_id = ANY(CAST(:ids AS text[])) AND is_end_customer "
                "AND successor_contract_id IS NULL GROUP BY 1 "
                "UNION ALL "
                "SELECT e.accounting_firm_id, count(*) FROM partners.environments AS e "
                "WHERE e.accounting_firm_id = ANY(CAST(:ids AS text[])) AND e.is_end_customer "
                "AND e.successor_contract_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM partners.environments AS s "
                "WHERE s.contract_id = e.successor_contract_id AND s.is_end_customer "
                "AND s.accounting_firm_id = e.accounting_firm_id) GROUP BY 1"
                ") AS counted GROUP BY firm"
            ),
            {"ids": ids},
        )
        return {firm: int(n) for firm, n in rows.tuples()}


class TierRepository:
    """P-05, P-07: the published tier changes of each firm."""

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        await insert_rows(self._s, t.tier_changes, rows)

    async def history(self, firm_id: str) -> list[Any]:
        rows = await self._s.execute(
            select(t.tier_changes).where(_T.firm_id == firm_id).order_by(_T.changed_at, _T.id)
        )
        return list(rows)

    async def in_effect(self, firm_ids: Iterable[str], month: str) -> dict[str, TierInMonth]:
        """The tier each firm is billed with for `month` (P-07), for firms that have one."""
        ids = sorted(set(firm_ids))
        if not ids:
            return {}
        rows = await self._s.execute(
            select(_T.firm_id, _T.effective_month, _T.changed_at, _T.new_tier, _T.in_program, _T.id)
            .where(_T.firm_id.in_(ids), _T.effective_month <= month)
            .distinct(_T.firm_id)
            .order_by(_T.firm_id, _T.effective_month.desc(), _T.changed_at.desc(), _T.id.desc())
        )
        return {
            firm: TierInMonth(m, at, PartnerTier(tier), in_program, n)
            for firm, m, at, tier, in_program, n in rows.tuples()
        }


#: The lines a month's statements take: its own, and late ones of earlier months whose statements
#: are already made (or that never had a run); not those of an earlier month still waiting for its
#: documents, which go on that month's own statements. Over the pending lines `p`. Static SQL, the
#: month is bound.
_BELONGS_TO_MONTH = (
    "(p.month = :month OR (p.month < :month AND NOT EXISTS ("
    "SELECT 1 FROM partners.billing_runs AS r WHERE r.month = p.month AND r.statements_issued_at IS NULL)))"
)


#: A line's kind by its stored value: a dictionary lookup, where calling the enum costs microseconds
#: per line (a hundred thousand lines a month).
_LINE_KINDS = {kind.value: kind for kind in CommissionLineKind}


class CommissionRepository:
    """P-08: invoices and credit notes per reseller, billing runs, statements."""

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def lock(self) -> None:
        """One statement maker at a time: the completeness check must see every committed document."""
        await self._s.execute(text("SELECT pg_advisory_xact_lock(:space, 0)"), {"space": _LOCK_COMMISSIONS})

    async def add_documents(self, rows: Sequence[Mapping[str, Any]]) -> None:
        await insert_rows(self._s, t.billing_documents, rows)

    async def add_lines(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store lines; the new ones (a document seen before adds nothing) wait for a statement."""
        new = await insert_rows(self._s, t.commission_lines, rows, returning="month, partner_id, document_id")
        await insert_rows(
            self._s,
            t.commission_lines_pending,
            [{"month": m, "partner_id": p, "document_id": d} for m, p, d in new],
        )

    async def record_runs(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """The latest totals of each month's run (a rerun only raises them)."""
        await insert_rows(
            self._s,
            t.billing_runs,
            rows,
            conflict=(
                "ON CONFLICT (month) DO UPDATE SET run_finished = partners.billing_runs.run_finished "
                "OR EXCLUDED.run_finished, invoices_issued = GREATEST(partners.billing_runs.invoices_issued, EXCLUDED.invoices_issued), "
                "credit_notes_issued = GREATEST(partners.billing_runs.credit_notes_issued, "
                "EXCLUDED.credit_notes_issued), finished_at = GREATEST(partners.billing_runs.finished_at, "
                "EXCLUDED.finished_at)"
            ),
        )

    async def months_waiting(self) -> list[tuple[str, int, int, int, int]]:
        """Months whose run finished and whose statements are not made: (month, expected and received
        invoices, expected and received credit notes), oldest first."""
        rows = await self._s.execute(
            text(
                "SELECT r.month, r.invoices_issued, "
                "(SELECT count(*) FROM partners.billing_documents d WHERE d.kind = 'invoice' AND d.month = r.month), "
                "r.credit_notes_issued, "
                "(SELECT count(*) FROM partners.billing_documents d WHERE d.kind = 'credit_note' "
                "AND d.month = r.month) "
                "FROM partners.billing_runs r WHERE r.statements_issued_at IS NULL ORDER BY r.month"
            )
        )
        return [(m, int(a), int(b), int(c), int(d)) for m, a, b, c, d in rows.tuples()]

    async def run_of(self, month: str) -> Any:
        return (await self._s.execute(select(t.billing_runs).where(_R.month == month))).first()

    async def pending_partners(self, month: str) -> list[str]:
        """Resellers with lines `assign` would put on `month`'s statements."""
        rows = await self._s.execute(
            text(
                "SELECT DISTINCT p.partner_id FROM partners.commission_lines_pending AS p "  # noqa: S608
                f"WHERE {_BELONGS_TO_MONTH} ORDER BY p.partner_id"
            ),
            {"month": month},
        )
        return list(rows.scalars())

    async def assign(self, month: str, statement_ids: Mapping[str, str]) -> list[tuple[str, StatementLine]]:
        """Put the month's lines of these partners on their statements; the lines.

        One statement: the lines' pending rows are deleted (a delete writes no new row version and
        no index entry), each line's statement is written beside it as a narrow row, and the lines
        are read; the wide lines themselves are not rewritten.
        """
        if not statement_ids:
            return []
        rows = await self._s.execute(
            text(
                "WITH taken AS (DELETE FROM partners.commission_lines_pending AS p "  # noqa: S608
                "USING unnest(CAST(:partners AS text[]), CAST(:ids AS text[])) AS s(partner_id, statement_id) "
                f"WHERE {_BELONGS_TO_MONTH} AND p.partner_id = s.partner_id "
                "RETURNING p.partner_id, p.document_id, s.statement_id), "
                "marked AS (INSERT INTO partners.commission_line_statements (partner_id, statement_id, document_id) "
                "SELECT partner_id, statement_id, document_id FROM taken) "
                "SELECT l.partner_id, l.document_id, l.kind, l.number, l.document_date, "
                "l.payer_business_id, l.software_net, l.credited_invoice_number, l.billing_period "
                "FROM taken JOIN partners.commission_lines AS l USING (document_id, partner_id)"
            ),
            {"partners": list(statement_ids), "ids": list(statement_ids.values()), "month": month},
        )
        return [
            (
                partner,
                StatementLine(
                    document_id=document_id,
                    kind=_LINE_KINDS[kind],
                    number=number,
                    date=day,
                    payer_business_id=payer,
                    software_net=net,
                    credited_invoice_number=credited,
                    billing_period=period,
                ),
            )
            # One fetch of every row (iterating the result would fetch them one by one).
            for partner, document_id, kind, number, day, payer, net, credited, period in rows.all()
        ]

    async def add_statements(self, rows: Sequence[Mapping[str, Any]]) -> None:
        await insert_rows(self._s, t.commission_statements, rows, conflict="")

    async def mark_month_issued(self, month: str, *, statements: int, at: dt.datetime, by: str) -> None:
        await self._s.execute(
            update(t.billing_runs)
            .where(_R.month == month, _R.statements_issued_at.is_(None))
            .values(statements_issued_at=at, statements=statements, issued_by=by)
        )

    async def statements(self, *, month: str | None, partner_id: str | None, limit: int) -> list[Any]:
        query = select(t.commission_statements).order_by(_S.month.desc(), _S.partner_id).limit(limit)
        if month:
            query = query.where(_S.month == month)
        if partner_id:
            query = query.where(_S.partner_id == partner_id)
        return list(await self._s.execute(query))

    async def statement(self, statement_id: str) -> tuple[Any, list[StatementLine]] | None:
        head = (
            await self._s.execute(select(t.commission_statements).where(_S.statement_id == statement_id))
        ).first()
        if head is None:
            return None
        on = t.commission_line_statements.c
        rows = await self._s.execute(
            select(t.commission_lines)
            .join(
                t.commission_line_statements,
                (on.partner_id == _L.partner_id) & (on.document_id == _L.document_id),
            )
            .where(on.partner_id == head.partner_id, on.statement_id == statement_id)
        )
        lines = [
            StatementLine(
                document_id=r.document_id,
                kind=CommissionLineKind(r.kind),
                number=r.number,
                date=r.document_date,
                payer_business_id=r.payer_business_id,
                software_net=Decimal(r.software_net),
                credited_invoice_number=r.credited_invoice_number,
                billing_period=r.billing_period,
            )
            for r in rows
        ]
        return head, lines


@dataclass(frozen=True, slots=True)
class ParkedInput:
    """A parked input as stored: what it is, why it waits, and the record it came in."""

    event_id: UUID
    topic: str
    firm_id: str
    expert_id: str | None
    rule: str
    reason: str
    parked_at: dt.datetime
    message: bytes
    consumer_group: str | None
    partition: int | None
    offset: int | None
    key: bytes | None


_PARKED_COLUMNS = (
    "event_id, topic, firm_id, expert_id, rule, reason, parked_at, message, consumer_group, partition, "
    '"offset", key'
)


class ParkedInputRepository:
    """Program inputs waiting for what they need (their firm's registration, a person's earlier fact)."""

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def park(self, rows: Sequence[Mapping[str, Any]]) -> set[UUID]:
        """Park inputs; the event ids parked now (an input parked before — its parking expired, and
        it came again through a dead letter's replay — is not parked twice)."""
        written = await insert_rows(
            self._s, t.parked_inputs, rows, conflict="ON CONFLICT (event_id) DO NOTHING", returning="event_id"
        )
        return {event_id for (event_id,) in written}

    async def waiting(
        self, *, firms: Iterable[str], experts: Iterable[str], since: dt.datetime
    ) -> list[tuple[UUID, Message]]:
        """Inputs of these firms or people still waiting, parked since `since`, in the order they came.

        Locked until the transaction ends, so that the expiry sweep cannot dead-letter one this
        transaction applies (the sweep skips locked rows; one it expired first is not returned).
        """
        firm_ids, expert_ids = sorted(set(firms)), sorted(set(experts))
        if not firm_ids and not expert_ids:
            return []
        p = t.parked_inputs.c
        rows = await self._s.execute(
            select(p.event_id, p.topic, p.message)
            .where(
                p.applied_at.is_(None),
                p.expired_at.is_(None),
                p.parked_at >= since,
                or_(p.firm_id.in_(firm_ids), p.expert_id.in_(expert_ids)),
            )
            .order_by(p.seq)
            .with_for_update()
        )
        return [
            (event_id, _CONTRACTS[topic].model_validate_json(message))
            for event_id, topic, message in rows.tuples()
        ]

    async def mark_applied(self, event_ids: Sequence[UUID], at: dt.datetime) -> None:
        if event_ids:
            p = t.parked_inputs.c
            await self._s.execute(
                update(t.parked_inputs)
                .where(p.event_id.in_(event_ids), p.expired_at.is_(None))
                .values(applied_at=at)
            )

    async def expired(self, *, parked_before: dt.datetime, limit: int) -> list[ParkedInput]:
        """Waiting inputs parked before `parked_before`, oldest first, locked (others' locked ones skipped)."""
        rows = await self._s.execute(
            text(
                f"SELECT {_PARKED_COLUMNS} FROM partners.parked_inputs "  # noqa: S608  # static columns
                "WHERE applied_at IS NULL AND expired_at IS NULL AND parked_at < :before "
                "ORDER BY parked_at, seq LIMIT :limit FOR UPDATE SKIP LOCKED"
            ),
            {"before": parked_before, "limit": limit},
        )
        return [ParkedInput(*r) for r in rows.tuples()]

    async def mark_expired(self, event_ids: Sequence[UUID], at: dt.datetime) -> None:
        if event_ids:
            p = t.parked_inputs.c
            await self._s.execute(
                update(t.parked_inputs)
                .where(p.event_id.in_(event_ids), p.applied_at.is_(None), p.expired_at.is_(None))
                .values(expired_at=at)
            )

    async def listing(self, *, limit: int) -> list[ParkedInput]:
        """The inputs waiting now, oldest first (the next to expire first)."""
        rows = await self._s.execute(
            text(
                f"SELECT {_PARKED_COLUMNS} FROM partners.parked_inputs "  # noqa: S608  # static columns
                "WHERE applied_at IS NULL AND expired_at IS NULL ORDER BY parked_at, seq LIMIT :limit"
            ),
            {"limit": limit},
        )
        return [ParkedInput(*r) for r in rows.tuples()]

    async def waiting_summary(self) -> tuple[int, dt.datetime | None]:
        """How many inputs wait now, and when the oldest was parked (the gauge's query)."""
        count, oldest = (
            await self._s.execute(
                text(
                    "SELECT count(*), min(parked_at) FROM partners.parked_inputs "
                    "WHERE applied_at IS NULL AND expired_at IS NULL"
                )
            )
        ).one()
        return int(count), oldest


_CONTRACTS: dict[str, type[Message]] = {spec.name: spec.contract for spec in TOPICS}
