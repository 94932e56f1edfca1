"""Partners' HTTP API: partner managers' inputs, firms and tiers, benefits, commission statements, the directory."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field

from billing_contracts.base import BusinessId, Date, Message
from billing_contracts.partners import (
    AccountingFirmDetailsChangedV1,
    AccountingFirmRegisteredV1,
    AuthorizationPart,
    CommissionLineKind,
    CooperationAgreementEndedV1,
    ExamKind,
    ExamResultWithdrawnV1,
    ExpertAuthorizationPassedV1,
    ExpertCertifiedV1,
    ExpertJoinedFirmV1,
    ExpertLeftFirmV1,
    ExpertSoftware,
    PartnerTier,
)
from billing_contracts.registry import topic_for
from partners.domain import (
    TIER_NAMES,
    TIER_ORDER,
    BenefitBook,
    Presentation,
    ProgramRefusedError,
    Statement,
    StatementLine,
    TierBenefits,
    TierInMonth,
    UnknownFirmError,
    line_label,
    month_bounds,
    month_of,
    parking_expires_at,
    rank,
    shortfall,
    statement_csv,
    tier_in_effect,
)
from partners.repository import (
    CommissionRepository,
    FirmRepository,
    ParkedInputRepository,
    TierRepository,
)
from partners.service import (
    DEFAULT_PARKING,
    InputOutcome,
    apply_program_input,
    firm_overview,
    issue_month_now,
)
from service_runtime.auth import Caller, authenticated
from service_runtime.clock import today_in_helsinki
from service_runtime.host import ServiceHost
from service_runtime.problems import RuleRefusedError

FirmId = Annotated[str, Path(min_length=1, max_length=64, description="Id of the accounting firm.")]
ExpertId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=100,
        description="Pseudonymous id of the person (never a personal identity code).",
    ),
]
Month = Annotated[
    str, Path(pattern=r"^20\d{2}-(0[1-9]|1[0-2])$", description="A month, YYYY-MM (2000-01 to 2099-12).")
]
MonthQuery = Annotated[
    str | None,
    Query(pattern=r"^20\d{2}-(0[1-9]|1[0-2])$", description="A month, YYYY-MM (2000-01 to 2099-12)."),
]

#: How long the public directory may be cached (P-09); tier changes reach it within this time.
DIRECTORY_MAX_AGE_SECONDS = 300


# ---------------------------------------------------------------- request and response models


class _Input(BaseModel):
    request_id: uuid.UUID | None = Field(
        default=None,
        description="Idempotency key chosen by the client: the same id applies once (it becomes the event id).",
    )


class RegisterFirmRequest(_Input):
    firm_id: str = Field(min_length=1, max_length=64, description="Id of the accounting firm in the program.")
    business_id: BusinessId
    firm_name: str = Field(min_length=1, max_length=100)
    agreement_signed_on: Date = Field(description="Day the cooperation agreement was signed (P-02).")


class EndAgreementRequest(_Input):
    ended_on: Date = Field(description="First day without an agreement (P-02).")
    reason: str | None = Field(default=None, max_length=500)


class FirmDetailsRequest(_Input):
    firm_name: str = Field(min_length=1, max_length=100)
    business_id: BusinessId
    city: str = Field(min_length=1, max_length=60)
    website: str | None = Field(default=None, max_length=200, pattern=r"^https?://\S+$")
    presentation: str | None = Field(default=None, max_length=1000, description="Shown from Gold (P-06).")
    extended_presentation: str | None = Field(
        default=None, max_length=5000, description="Shown for Platinum (P-06)."
    )
    software: list[ExpertSoftware] = Field(default_factory=list, max_length=2)


class ExamResultRequest(_Input):
    exam: ExamKind = Field(description="The certification, or a part of the authorization exam (P-04).")
    software: ExpertSoftware
    passed_on: Date


class WithdrawalRequest(_Input):
    exam: ExamKind
    software: ExpertSoftware
    withdrawn_on: Date
    reason: str = Field(min_length=1, max_length=500)


class JoinedRequest(_Input):
    joined_on: Date


class LeftRequest(_Input):
    left_on: Date


class Counts(BaseModel):
    end_customers: int = Field(description="Active e-financial environments the firm serves (P-03).")
    certified_experts: int = Field(description="Persons certified, authorized ones included (P-04).")
    authorized_experts: int = Field(description="Persons authorized (P-04).")


class NextTier(BaseModel):
    tier: PartnerTier
    lacks: list[str] = Field(description="What the firm lacks for it, in words.")


class TierBenefitsView(BaseModel):
    """P-06, for one tier."""

    tier: PartnerTier
    own_contact_person: bool
    resale_commission_percent: Decimal
    training_materials_and_joint_events: bool
    opinahjo_discount_percent: Decimal
    club_for_certified_and_authorized: bool
    directory_listing: bool
    presentation: Presentation
    marketing_program: str | None
    free_training_webinars: bool
    own_use_discount_percent: Decimal


class FirmView(BaseModel):
    firm_id: str
    registered: bool = Field(description="Whether the firm ever registered in the program.")
    firm_name: str | None
    business_id: str | None
    in_program: bool = Field(description="A cooperation agreement is in force today (P-02).")
    tier: PartnerTier | None = Field(description="The tier today (P-05); null outside the program.")
    tier_name: str | None
    tier_reason: str | None = Field(description="The reason of the last tier change announced.")
    end_customers: int = Field(description="Active environments the firm serves as accounting firm (P-03).")
    counts: Counts
    certified_by_software: dict[ExpertSoftware, int]
    authorized_by_software: dict[ExpertSoftware, int]
    next_tier: NextTier | None
    benefits: TierBenefitsView | None = Field(description="P-06 benefits of today's tier.")
    as_of: dt.date = Field(description="The Helsinki day the standing is computed for.")


class InputResult(BaseModel):
    event_id: uuid.UUID = Field(description="The input's event id (the request id when given).")
    outcome: str = Field(description="`applied`, or `already_applied` for a repeated request id.")
    firm: FirmView = Field(description="The firm after the input.")


class TierChangeView(BaseModel):
    event_id: uuid.UUID
    changed_at: dt.datetime
    effective_month: str = Field(description="First month billed with it (P-07).")
    old_tier: PartnerTier | None
    new_tier: PartnerTier
    in_program: bool
    reason: str
    end_customers: int
    certified_experts: int
    authorized_experts: int


class TierHistoryView(BaseModel):
    firm_id: str
    changes: list[TierChangeView]


class TierInMonthView(BaseModel):
    firm_id: str
    month: str
    tier: PartnerTier | None = Field(description="The tier the month is billed with (P-07); null if none.")
    in_program: bool
    effective_month: str | None = Field(description="The month of the change that set it.")


class BenefitTableView(BaseModel):
    valid_from: dt.date = Field(description="The P-06 table in force for the month took effect on this day.")
    tiers: list[TierBenefitsView]


class ParkedInputView(BaseModel):
    """A partner-program input waiting for what it needs (P-02, P-04); not a dead letter while it waits."""

    event_id: uuid.UUID
    topic: str
    firm_id: str
    expert_id: str | None = Field(
        description="The person it is about, for an exam result, withdrawal or move."
    )
    rule: str = Field(description="The rule it waits on, e.g. P-02 (its firm is not registered yet).")
    reason: str = Field(description="What it waits for, in words.")
    parked_at: dt.datetime
    expires_at: dt.datetime = Field(
        description="When it is dead-lettered with its reason if nothing it needs has arrived by then."
    )
    partition: int | None = Field(description="The Kafka record it came in (partition, offset).")
    offset: int | None


class StatementSummary(BaseModel):
    statement_id: str
    partner_id: str
    month: str
    lines: int
    software_net_total: Decimal
    commission_rate_percent: Decimal
    commission_amount: Decimal
    issued_on: dt.date


class StatementLineView(BaseModel):
    document_id: str = Field(description="Invoice or credit note id.")
    kind: CommissionLineKind
    number: str
    date: dt.date
    payer_business_id: str
    credited_invoice_number: str | None
    billing_period: str | None
    software_net: Decimal = Field(description="Negative for a credit note.")
    label: str


class StatementView(StatementSummary):
    invoices: list[StatementLineView]


class CommissionMonthView(BaseModel):
    month: str
    run_finished: bool = Field(description="Invoicing said the month's billing run finished.")
    invoices_expected: int | None
    credit_notes_expected: int | None
    statements_issued_at: dt.datetime | None
    statements: int | None
    issued_by: str | None


class DirectoryEntry(BaseModel):
    """Public fields only (P-09)."""

    firm_name: str
    business_id: str
    city: str | None
    website: str | None
    software: list[ExpertSoftware]
    tier: PartnerTier
    tier_name: str
    presentation_level: Presentation = Field(
        description="none (Silver), presentation (Gold), extended (Platinum)."
    )
    presentation: str | None = Field(description="Shown from the Gold level.")
    extended_presentation: str | None = Field(description="Shown at the Platinum level.")


class DirectoryPage(BaseModel):
    items: list[DirectoryEntry]
    page: int
    page_size: int
    total: int = Field(description="Firms matching the search.")


# ---------------------------------------------------------------- mapping


def _benefits_view(tier: PartnerTier, b: TierBenefits) -> TierBenefitsView:
    return TierBenefitsView(
        tier=tier,
        own_contact_person=b.own_contact_person,
        resale_commission_percent=b.resale_commission_percent,
        training_materials_and_joint_events=b.training_materials_and_joint_events,
        opinahjo_discount_percent=b.opinahjo_discount_percent,
        club_for_certified_and_authorized=b.club_for_certified_and_authorized,
        directory_listing=b.directory_listing,
        presentation=b.presentation,
        marketing_program=b.marketing_program,
        free_training_webinars=b.free_training_webinars,
        own_use_discount_percent=b.own_use_discount_percent,
    )


def _summary(r: object) -> StatementSummary:
    return StatementSummary(
        statement_id=r.statement_id,  # type: ignore[attr-defined]
        partner_id=r.partner_id,  # type: ignore[attr-defined]
        month=r.month,  # type: ignore[attr-defined]
        lines=r.lines,  # type: ignore[attr-defined]
        software_net_total=r.software_net_total,  # type: ignore[attr-defined]
        commission_rate_percent=r.rate_percent,  # type: ignore[attr-defined]
        commission_amount=r.commission_amount,  # type: ignore[attr-defined]
        issued_on=r.issued_on,  # type: ignore[attr-defined]
    )


def _line_view(ln: StatementLine) -> StatementLineView:
    return StatementLineView(
        document_id=ln.document_id,
        kind=ln.kind,
        number=ln.number,
        date=ln.date,
        payer_business_id=ln.payer_business_id,
        credited_invoice_number=ln.credited_invoice_number,
        billing_period=ln.billing_period,
        software_net=ln.software_net,
        label=line_label(
            ln.kind,
            ln.number,
            credited_invoice_number=ln.credited_invoice_number,
            billing_period=ln.billing_period,
        ),
    )


def _refusal(exc: ProgramRefusedError, *, status: int = 422) -> RuleRefusedError:
    """A refused input as a problem detail with its rule: 404 for a firm never registered."""
    return RuleRefusedError(exc.rule, exc.reason, status=404 if isinstance(exc, UnknownFirmError) else status)


# ---------------------------------------------------------------- routes


def build_router(
    host: ServiceHost, benefits: BenefitBook, *, parking: dt.timedelta = DEFAULT_PARKING
) -> APIRouter:
    router = APIRouter()
    clock = host.clock

    async def firm_view(firm_id: str) -> FirmView:
        async with host.sessions() as session:
            o = await firm_overview(session, firm_id, clock)
        s = o.standing
        next_tier = None
        if s.in_program and s.tier is not PartnerTier.PLATINUM:
            higher = TIER_ORDER[rank(s.tier) + 1]
            next_tier = NextTier(tier=higher, lacks=shortfall(higher, s.counts))
        return FirmView(
            firm_id=firm_id,
            registered=o.firm is not None,
            firm_name=o.firm.firm_name if o.firm else None,
            business_id=o.firm.business_id if o.firm else None,
            in_program=s.in_program,
            tier=s.tier,
            tier_name=TIER_NAMES[s.tier] if s.tier else None,
            tier_reason=o.firm.tier_reason if o.firm else None,
            end_customers=s.counts.end_customers,
            counts=Counts(
                end_customers=s.counts.end_customers,
                certified_experts=s.counts.certified,
                authorized_experts=s.counts.authorized,
            ),
            certified_by_software=dict(s.experts.certified_by_software),
            authorized_by_software=dict(s.experts.authorized_by_software),
            next_tier=next_tier,
            benefits=_benefits_view(s.tier, benefits.of(s.tier, o.today)) if s.tier else None,
            as_of=o.today,
        )

    async def apply(message: Message, firm_id: str) -> InputResult:
        try:
            outcome = await apply_program_input(host.sessions, message, clock, topic=topic_for(type(message)))
        except ProgramRefusedError as exc:
            raise _refusal(exc) from exc
        if outcome == InputOutcome.APPLIED:
            host.relay.wake()
        return InputResult(event_id=message.event_id, outcome=outcome, firm=await firm_view(firm_id))

    def envelope(caller: Caller, body: _Input) -> dict[str, object]:
        # Attributed to the caller's token subject, never to a name in the body.
        return {
            "event_id": body.request_id or uuid.uuid4(),
            "occurred_at": clock.now(),
            "producer": f"partner-manager:{caller.subject}"[:100],
        }

    inputs = "partner managers' inputs"

    @router.post(
        "/firms",
        response_model=InputResult,
        tags=[inputs],
        summary="Register a firm: its cooperation agreement is signed (P-02).",
    )
    async def register_firm(
        body: RegisterFirmRequest, caller: Annotated[Caller, authenticated]
    ) -> InputResult:
        message = AccountingFirmRegisteredV1(
            **envelope(caller, body),  # type: ignore[arg-type]
            firm_id=body.firm_id,
            business_id=body.business_id,
            firm_name=body.firm_name,
            agreement_signed_on=body.agreement_signed_on,
        )
        return await apply(message, body.firm_id)

    @router.post(
        "/firms/{firm_id}/agreement-end",
        response_model=InputResult,
        tags=[inputs],
        summary="The firm's cooperation agreement ended: it leaves the program (P-02).",
    )
    async def end_agreement(
        firm_id: FirmId, body: EndAgreementRequest, caller: Annotated[Caller, authenticated]
    ) -> InputResult:
        message = CooperationAgreementEndedV1(
            **envelope(caller, body),  # type: ignore[arg-type]
            firm_id=firm_id,
            ended_on=body.ended_on,
            reason=body.reason,
        )
        return await apply(message, firm_id)

    @router.put(
        "/firms/{firm_id}/details",
        response_model=InputResult,
        tags=[inputs],
        summary="The firm's master data for the public directory (P-09).",
    )
    async def change_details(
        firm_id: FirmId, body: FirmDetailsRequest, caller: Annotated[Caller, authenticated]
    ) -> InputResult:
        message = AccountingFirmDetailsChangedV1(
            **envelope(caller, body),  # type: ignore[arg-type]
            firm_id=firm_id,
            **body.model_dump(exclude={"request_id"}),
        )
        return await apply(message, firm_id)

    @router.post(
        "/firms/{firm_id}/experts/{expert_id}/exam-results",
        response_model=InputResult,
        tags=[inputs],
        summary="A person of the firm passed an exam (P-04); an in-person part needs the online part first.",
    )
    async def exam_result(
        firm_id: FirmId,
        expert_id: ExpertId,
        body: ExamResultRequest,
        caller: Annotated[Caller, authenticated],
    ) -> InputResult:
        common = envelope(caller, body) | {
            "firm_id": firm_id,
            "expert_id": expert_id,
            "software": body.software,
        }
        message: Message
        if body.exam is ExamKind.CERTIFICATION:
            message = ExpertCertifiedV1(**common, passed_on=body.passed_on)  # type: ignore[arg-type]
        else:
            part = (
                AuthorizationPart.ONLINE
                if body.exam is ExamKind.AUTHORIZATION_ONLINE
                else AuthorizationPart.IN_PERSON
            )
            message = ExpertAuthorizationPassedV1(**common, part=part, passed_on=body.passed_on)  # type: ignore[arg-type]
        return await apply(message, firm_id)

    @router.post(
        "/firms/{firm_id}/experts/{expert_id}/withdrawals",
        response_model=InputResult,
        tags=[inputs],
        summary="An exam result is withdrawn: it no longer counts (P-04).",
    )
    async def withdraw(
        firm_id: FirmId,
        expert_id: ExpertId,
        body: WithdrawalRequest,
        caller: Annotated[Caller, authenticated],
    ) -> InputResult:
        message = ExamResultWithdrawnV1(
            **envelope(caller, body),  # type: ignore[arg-type]
            firm_id=firm_id,
            expert_id=expert_id,
            software=body.software,
            exam=body.exam,
            withdrawn_on=body.withdrawn_on,
            reason=body.reason,
        )
        return await apply(message, firm_id)

    @router.post(
        "/firms/{firm_id}/experts/{expert_id}/joined",
        response_model=InputResult,
        tags=[inputs],
        summary="A person starts at the firm (from another firm, too): their results count here from that day.",
    )
    async def joined(
        firm_id: FirmId, expert_id: ExpertId, body: JoinedRequest, caller: Annotated[Caller, authenticated]
    ) -> InputResult:
        message = ExpertJoinedFirmV1(
            **envelope(caller, body),  # type: ignore[arg-type]
            firm_id=firm_id,
            expert_id=expert_id,
            joined_on=body.joined_on,
        )
        return await apply(message, firm_id)

    @router.post(
        "/firms/{firm_id}/experts/{expert_id}/left",
        response_model=InputResult,
        tags=[inputs],
        summary="A person left the firm: their results no longer count for it.",
    )
    async def left(
        firm_id: FirmId, expert_id: ExpertId, body: LeftRequest, caller: Annotated[Caller, authenticated]
    ) -> InputResult:
        message = ExpertLeftFirmV1(
            **envelope(caller, body),  # type: ignore[arg-type]
            firm_id=firm_id,
            expert_id=expert_id,
            left_on=body.left_on,
        )
        return await apply(message, firm_id)

    @router.get(
        "/firms/{firm_id}",
        response_model=FirmView,
        tags=["firms and tiers"],
        summary="A firm's standing today: tier and reason, counts, what the next tier needs, benefits.",
    )
    async def get_firm(firm_id: FirmId) -> FirmView:
        return await firm_view(firm_id)

    @router.get(
        "/firms/{firm_id}/tiers",
        response_model=TierHistoryView,
        tags=["firms and tiers"],
        summary="Every tier change of a firm, as published (P-05).",
    )
    async def tier_history(firm_id: FirmId) -> TierHistoryView:
        async with host.sessions() as session:
            rows = await TierRepository(session).history(firm_id)
        return TierHistoryView(
            firm_id=firm_id,
            changes=[
                TierChangeView(
                    event_id=r.event_id,
                    changed_at=r.changed_at,
                    effective_month=r.effective_month,
                    old_tier=PartnerTier(r.old_tier) if r.old_tier else None,
                    new_tier=PartnerTier(r.new_tier),
                    in_program=r.in_program,
                    reason=r.reason,
                    end_customers=r.end_customers,
                    certified_experts=r.certified_experts,
                    authorized_experts=r.authorized_experts,
                )
                for r in rows
            ],
        )

    @router.get(
        "/firms/{firm_id}/tiers/{month}",
        response_model=TierInMonthView,
        tags=["firms and tiers"],
        summary="The tier a month is billed with (P-07): the latest change effective in or before it.",
    )
    async def tier_in_month(firm_id: FirmId, month: Month) -> TierInMonthView:
        async with host.sessions() as session:
            rows = await TierRepository(session).history(firm_id)
        found = tier_in_effect(
            (
                TierInMonth(r.effective_month, r.changed_at, PartnerTier(r.new_tier), r.in_program, r.id)
                for r in rows
            ),
            month,
        )
        in_program = found is not None and found.in_program
        return TierInMonthView(
            firm_id=firm_id,
            month=month,
            tier=found.tier if in_program and found is not None else None,
            in_program=in_program,
            effective_month=found.effective_month if found else None,
        )

    @router.get(
        "/firms/{firm_id}/benefits",
        response_model=TierBenefitsView | None,
        tags=["firms and tiers"],
        summary="The P-06 benefits of the firm's tier in a month (default: this month); null outside the program.",
    )
    async def firm_benefits(firm_id: FirmId, month: MonthQuery = None) -> TierBenefitsView | None:
        month = month or month_of(today_in_helsinki(clock))
        view = await tier_in_month(firm_id, month)
        if view.tier is None:
            return None
        return _benefits_view(view.tier, benefits.for_month(month).tiers[view.tier])

    @router.get(
        "/benefits",
        response_model=BenefitTableView,
        tags=["firms and tiers"],
        summary="The P-06 benefit table in force for a month (default: this month).",
    )
    async def benefit_table(month: MonthQuery = None) -> BenefitTableView:
        try:
            rules = benefits.for_month(month or month_of(today_in_helsinki(clock)))
        except LookupError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        return BenefitTableView(
            valid_from=rules.valid_from,
            tiers=[_benefits_view(tier, rules.tiers[tier]) for tier in TIER_ORDER],
        )

    @router.get(
        "/parked-inputs",
        response_model=list[ParkedInputView],
        tags=["operations"],
        summary="Partner-program inputs waiting for what they need, oldest (next to expire) first.",
        description="An input about a firm not registered yet, an in-person exam part before its online "
        "part, an exam at a firm before the person's move: parked, and applied when what it needs "
        "arrives. Dead-lettered with its reason only when its parking expires (`expires_at`). "
        "The gauges: `partners_parked_inputs`, `partners_parked_inputs_oldest_age_seconds`.",
    )
    async def list_parked_inputs(
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> list[ParkedInputView]:
        async with host.sessions() as session:
            rows = await ParkedInputRepository(session).listing(limit=limit)
        return [
            ParkedInputView(
                event_id=p.event_id,
                topic=p.topic,
                firm_id=p.firm_id,
                expert_id=p.expert_id,
                rule=p.rule,
                reason=p.reason,
                parked_at=p.parked_at,
                expires_at=parking_expires_at(p.parked_at, parking),
                partition=p.partition,
                offset=p.offset,
            )
            for p in rows
        ]

    commissions = "commission statements"

    @router.get(
        "/commission-statements",
        response_model=list[StatementSummary],
        tags=[commissions],
        summary="Published commission statements (P-08), newest month first.",
    )
    async def list_statements(
        month: MonthQuery = None,
        partner_id: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> list[StatementSummary]:
        async with host.sessions() as session:
            rows = await CommissionRepository(session).statements(
                month=month, partner_id=partner_id, limit=limit
            )
        return [_summary(r) for r in rows]

    async def load_statement(statement_id: str) -> tuple[StatementSummary, list[StatementLine]]:
        async with host.sessions() as session:
            found = await CommissionRepository(session).statement(statement_id)
        if found is None:
            raise HTTPException(status_code=404, detail=f"no commission statement {statement_id}")
        head, lines = found
        lines.sort(key=lambda ln: (ln.kind is CommissionLineKind.CREDIT_NOTE, ln.date, ln.number))
        return _summary(head), lines

    @router.get(
        "/commission-statements/{statement_id}",
        response_model=StatementView,
        tags=[commissions],
        summary="One statement with every invoice and credit note behind it (P-08).",
    )
    async def get_statement(statement_id: Annotated[str, Path(max_length=100)]) -> StatementView:
        head, lines = await load_statement(statement_id)
        return StatementView(**head.model_dump(), invoices=[_line_view(ln) for ln in lines])

    @router.get(
        "/commission-statements/{statement_id}/csv",
        tags=[commissions],
        summary="The statement for the finance team: CSV with `;`, decimal comma, UTF-8 with BOM.",
        response_class=Response,
        responses={
            200: {
                "content": {"text/csv": {}},
                "description": "One row per invoice, then total and commission.",
            }
        },
    )
    async def get_statement_csv(statement_id: Annotated[str, Path(max_length=100)]) -> Response:
        head, lines = await load_statement(statement_id)
        statement = Statement(
            statement_id=head.statement_id,
            partner_id=head.partner_id,
            month=head.month,
            issued_on=head.issued_on,
            rate_percent=head.commission_rate_percent,
            lines=lines,
            software_net_total=head.software_net_total,
            commission=head.commission_amount,
        )
        return Response(
            content=statement_csv(statement).encode("utf-8"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{head.statement_id}.csv"'},
        )

    @router.get(
        "/commission-months/{month}",
        response_model=CommissionMonthView,
        tags=[commissions],
        summary="Whether a month's statements are made, or what they wait for.",
    )
    async def commission_month(month: Month) -> CommissionMonthView:
        async with host.sessions() as session:
            run = await CommissionRepository(session).run_of(month)
        return CommissionMonthView(
            month=month,
            run_finished=run is not None and run.run_finished,
            invoices_expected=run.invoices_issued if run else None,
            credit_notes_expected=run.credit_notes_issued if run else None,
            statements_issued_at=run.statements_issued_at if run else None,
            statements=run.statements if run else None,
            issued_by=run.issued_by if run else None,
        )

    @router.post(
        "/commission-months/{month}/issue",
        response_model=list[StatementSummary],
        tags=[commissions],
        summary="Operator: make a month's statements now with what has arrived (late documents go on the next).",
    )
    async def issue_now(month: Month, caller: Annotated[Caller, authenticated]) -> list[StatementSummary]:
        if month_bounds(month)[1] >= today_in_helsinki(clock):
            raise RuleRefusedError("P-08", f"{month} has not ended; its statements wait for its run")
        try:
            made = await issue_month_now(
                host.sessions, month, clock, benefits, by=f"operator:{caller.subject}"
            )
        except ProgramRefusedError as exc:
            raise _refusal(exc, status=409) from exc
        host.relay.wake()
        return [
            StatementSummary(
                statement_id=s.statement_id,
                partner_id=s.partner_id,
                month=s.month,
                lines=len(s.lines),
                software_net_total=s.software_net_total,
                commission_rate_percent=s.rate_percent,
                commission_amount=s.commission,
                issued_on=s.issued_on,
            )
            for s in made
        ]

    @router.get(
        "/directory",
        response_model=DirectoryPage,
        tags=["public directory"],
        summary="Public accounting-firm search (P-09): Silver and up, highest tier first; cacheable.",
        responses={304: {"description": "Not modified (If-None-Match matched the ETag)."}},
    )
    async def directory(
        request: Request,
        name: Annotated[str | None, Query(max_length=100, description="Part of the firm's name.")] = None,
        city: Annotated[str | None, Query(max_length=60, description="The city, any case.")] = None,
        software: ExpertSoftware | None = None,
        page: Annotated[int, Query(ge=1, le=10_000)] = 1,
        page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> Response:
        rules = benefits.on(today_in_helsinki(clock))
        listed = [tier for tier in TIER_ORDER if rules.tiers[tier].directory_listing]
        async with host.sessions() as session:
            total, rows = await FirmRepository(session).directory(
                tiers=listed,
                name=name,
                city=city,
                software=software,
                offset=(page - 1) * page_size,
                limit=page_size,
            )
        items = []
        for r in rows:
            assert r.tier is not None
            level = rules.tiers[r.tier].presentation
            items.append(
                DirectoryEntry(
                    firm_name=r.firm_name,
                    business_id=r.business_id,
                    city=r.city,
                    website=r.website,
                    software=list(r.software),
                    tier=r.tier,
                    tier_name=TIER_NAMES[r.tier],
                    presentation_level=level,
                    presentation=r.presentation if level is not Presentation.NONE else None,
                    extended_presentation=r.extended_presentation if level is Presentation.EXTENDED else None,
                )
            )
        body = (
            DirectoryPage(items=items, page=page, page_size=page_size, total=total).model_dump_json().encode()
        )
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        headers = {
            "ETag": etag,
            "Cache-Control": f"public, max-age={DIRECTORY_MAX_AGE_SECONDS}",
            "Vary": "Accept-Encoding",
        }
        if etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
            return Response(status_code=304, headers=headers)
        return Response(content=body, media_type="application/json", headers=headers)

    return router
