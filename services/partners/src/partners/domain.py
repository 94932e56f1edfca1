"""Pure partner-program rules (SPEC P-01…P-09): membership, end customers, experts, tiers, commissions, directory."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from billing_contracts.contracts import PackageCode
from billing_contracts.invoicing import ContractStatus
from billing_contracts.partners import CommissionLineKind, ExamKind, ExpertSoftware, PartnerTier

# ---------------------------------------------------------------- vocabulary

#: P-01, lowest first.
TIER_ORDER: tuple[PartnerTier, ...] = (
    PartnerTier.PARTNER,
    PartnerTier.SILVER,
    PartnerTier.GOLD,
    PartnerTier.PLATINUM,
)

TIER_NAMES: Mapping[PartnerTier, str] = {
    PartnerTier.PARTNER: "Partneri / Partner",
    PartnerTier.SILVER: "Hopea / Silver",
    PartnerTier.GOLD: "Kulta / Gold",
    PartnerTier.PLATINUM: "Platina / Platinum",
}


def rank(tier: PartnerTier | None) -> int:
    """P-01: the position of a tier, -1 for a firm outside the program."""
    return -1 if tier is None else TIER_ORDER.index(tier)


class ProgramRefusedError(Exception):
    """A partner-program input the rules refuse: the rule id and a reason for the sender."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"{reason} ({rule})")
        self.rule = rule
        self.reason = reason


class UnknownFirmError(ProgramRefusedError):
    """An input about a firm that never registered in the program (P-02)."""


def parking_expires_at(parked_at: dt.datetime, parking: dt.timedelta) -> dt.datetime:
    """When an input parked at `parked_at` is given up on (P-02, P-04 inputs that wait for what they need)."""
    return parked_at + parking


def expired_parking_reason(rule: str, reason: str, parked_at: dt.datetime, parking: dt.timedelta) -> str:
    """The dead letter's reason for an input whose parking expired: the rule, why it waited, since when."""
    return (
        f"{rule}: {reason} (parked {parked_at.isoformat()}; nothing it needs arrived within "
        f"{parking.days} days)"
    )


def month_of(day: dt.date) -> str:
    """The calendar month of a day, `YYYY-MM`."""
    return f"{day.year:04d}-{day.month:02d}"


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """First and last day of a `YYYY-MM` month."""
    year, number = int(month[:4]), int(month[5:7])
    first = dt.date(year, number, 1)
    following = dt.date(year + number // 12, number % 12 + 1, 1)
    return first, following - dt.timedelta(days=1)


# ---------------------------------------------------------------- P-03 end customers

#: P-03: environments in production and not terminated count as end customers.
ACTIVE_STATUSES: frozenset[ContractStatus] = frozenset(
    {ContractStatus.ACTIVE, ContractStatus.TERMINATION_NOTICED}
)

#: P-03 decision (seed: "loppuasiakasta sähköisessä taloushallinnossa", customers in electronic
#: financial administration with Procountor or NetTikon): every Procountor financial-management
#: package counts — the Taloushallinto versions, Solo and Tallennus (the firm keeps the client's
#: books in it) — and the e-signature service Allekirjoitus alone does not: it is not financial
#: software. NetTikon environments are not contracted through this system; they would count once
#: invoicing published them with a package of their own.
E_FINANCIAL_PACKAGES: frozenset[PackageCode] = frozenset(PackageCode) - {PackageCode.ALLEKIRJOITUS}


def is_end_customer(
    status: ContractStatus, accounting_firm_id: str | None, own_use: bool, package: PackageCode
) -> bool:
    """P-03: an active e-financial environment the firm serves; the firm's own bookkeeping is not a client."""
    return (
        accounting_firm_id is not None
        and status in ACTIVE_STATUSES
        and not own_use
        and package in E_FINANCIAL_PACKAGES
    )


@dataclass(frozen=True, slots=True)
class EnvironmentState:
    """An environment's contract as invoicing announced it at `changed_at` (`ContractChangedV1`)."""

    environment_id: str
    contract_id: str
    accounting_firm_id: str | None
    status: ContractStatus
    package: PackageCode
    own_use: bool
    changed_at: dt.datetime
    successor_contract_id: str | None = None

    @property
    def is_end_customer(self) -> bool:
        return is_end_customer(self.status, self.accounting_firm_id, self.own_use, self.package)


def newest_states(states: Iterable[EnvironmentState]) -> dict[str, EnvironmentState]:
    """The state of each environment: the one announced last (P-03); a late older state changes nothing.

    Two states announced at the same instant: the one that arrived later wins (invoicing announces
    one environment's states in order, on one partition).
    """
    newest: dict[str, EnvironmentState] = {}
    for s in states:
        seen = newest.get(s.environment_id)
        if seen is None or s.changed_at >= seen.changed_at:
            newest[s.environment_id] = s
    return newest


def counted_for(state: EnvironmentState, by_contract: Mapping[str, EnvironmentState]) -> str | None:
    """P-03: the firm this environment counts as an end customer for, or None. B-28: a company that
    got a new business ID has two contracts for a while (the old one runs to its end); it is one
    client, so the old one stops counting once its successor counts for the same firm."""
    if not state.is_end_customer or state.accounting_firm_id is None:
        return None
    successor = by_contract.get(state.successor_contract_id) if state.successor_contract_id else None
    if (
        successor is not None
        and successor.is_end_customer
        and successor.accounting_firm_id == state.accounting_firm_id
    ):
        return None
    return state.accounting_firm_id


def end_customers_by_firm(states: Mapping[str, EnvironmentState]) -> dict[str, int]:
    """P-03 counts per firm (B-28 as in `counted_for`)."""
    by_contract = {s.contract_id: s for s in states.values()}
    counts: dict[str, int] = defaultdict(int)
    for s in states.values():
        if (firm := counted_for(s, by_contract)) is not None:
            counts[firm] += 1
    return dict(counts)


def count_changes(before: Mapping[str, str | None], after: Mapping[str, str | None]) -> dict[str, int]:
    """P-03: how each firm's end-customer count changes, from what some environments counted for
    before a change and count for after it (`counted_for` per environment id; a missing one counts
    for none). Only firms whose count changes are in it.

    Exact when the environments read are every one whose `counted_for` can change: those changed,
    and (B-28) those whose successor is a contract of one changed, before or after. A firm's count
    is then its count before plus its change, without counting its environments.
    """
    change: defaultdict[str, int] = defaultdict(int)
    for firm in before.values():
        if firm is not None:
            change[firm] -= 1
    for firm in after.values():
        if firm is not None:
            change[firm] += 1
    return {firm: n for firm, n in change.items() if n}


# ---------------------------------------------------------------- P-02 agreement


class AgreementEvent(StrEnum):
    SIGNED = "signed"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class AgreementFact:
    """The cooperation agreement was signed, or ended, on a day (P-02)."""

    kind: AgreementEvent
    on: dt.date
    occurred_at: dt.datetime


def _latest_agreement_fact(facts: Iterable[AgreementFact], on: dt.date) -> AgreementFact | None:
    # By the day it takes effect, then by when it was recorded: the same set of facts gives the
    # same answer in any arrival order.
    known = [f for f in facts if f.on <= on]
    return max(known, key=lambda f: (f.on, f.occurred_at, f.kind == AgreementEvent.ENDED), default=None)


def agreement_in_force(facts: Iterable[AgreementFact], on: dt.date) -> bool:
    """P-02: whether the firm has a signed cooperation agreement on `on`."""
    latest = _latest_agreement_fact(facts, on)
    return latest is not None and latest.kind is AgreementEvent.SIGNED


def in_program_during(facts: Sequence[AgreementFact], month: str) -> bool:
    """Whether the agreement was in force on any day of `month` (P-08: the month's commission is paid)."""
    first, last = month_bounds(month)
    # The answer can only change on a fact's day, so the first day and those days decide.
    days = [first, *(f.on for f in facts if first < f.on <= last)]
    return any(agreement_in_force(facts, day) for day in days)


# ---------------------------------------------------------------- P-04 experts


class ExpertFactKind(StrEnum):
    PASSED = "passed"  # an exam result (`exam`, `software`)
    WITHDRAWN = "withdrawn"  # results of `exam`/`software` passed on or before `on` no longer count
    JOINED = "joined"  # the person works for `firm_id` from `on`
    LEFT = "left"  # the person no longer works for `firm_id` from `on`


@dataclass(frozen=True, slots=True)
class ExpertFact:
    """One fact about a pseudonymous person, as recorded (P-04)."""

    expert_id: str
    firm_id: str
    kind: ExpertFactKind
    on: dt.date
    occurred_at: dt.datetime
    software: ExpertSoftware | None = None
    exam: ExamKind | None = None


def _affiliation_order(f: ExpertFact) -> tuple[dt.date, dt.datetime, int]:
    # Same day: leaving comes before joining or an exam there, so a move on one day ends at the new firm.
    return (f.on, f.occurred_at, 0 if f.kind is ExpertFactKind.LEFT else 1)


def firm_of(facts: Iterable[ExpertFact], on: dt.date) -> str | None:
    """The firm a person works for on `on`, or None.

    **Decision:** exam results belong to the person, and the firm named on each fact says where the
    person was on that day: an exam result or a join places them at its firm, a leave of their firm
    ends that. The latest such fact on or before `on` decides (by day, then by recording time).
    """
    current: str | None = None
    for f in sorted(
        (f for f in facts if f.on <= on and f.kind is not ExpertFactKind.WITHDRAWN), key=_affiliation_order
    ):
        if f.kind is ExpertFactKind.LEFT:
            if current == f.firm_id:
                current = None
        else:
            current = f.firm_id
    return current


@dataclass(frozen=True, slots=True)
class Qualification:
    """What a person holds on a day, per software (P-04)."""

    certified: frozenset[ExpertSoftware] = frozenset()
    authorized: frozenset[ExpertSoftware] = frozenset()

    @property
    def is_certified(self) -> bool:
        """P-04 decision: an authorized expert also counts as certified."""
        return bool(self.certified or self.authorized)

    @property
    def is_authorized(self) -> bool:
        return bool(self.authorized)


def _valid_passes(
    facts: Sequence[ExpertFact], on: dt.date
) -> dict[tuple[ExamKind, ExpertSoftware], list[dt.date]]:
    withdrawn: dict[tuple[ExamKind, ExpertSoftware], dt.date] = {}
    for f in facts:
        if f.kind is ExpertFactKind.WITHDRAWN and f.exam is not None and f.software is not None:
            key = (f.exam, f.software)
            withdrawn[key] = max(withdrawn.get(key, f.on), f.on)
    passes: dict[tuple[ExamKind, ExpertSoftware], list[dt.date]] = defaultdict(list)
    for f in facts:
        if f.kind is not ExpertFactKind.PASSED or f.exam is None or f.software is None or f.on > on:
            continue
        key = (f.exam, f.software)
        # A withdrawal voids every result of its kind passed on or before its day; a retake after it counts.
        if key in withdrawn and f.on <= withdrawn[key]:
            continue
        passes[key].append(f.on)
    return passes


def qualification(facts: Sequence[ExpertFact], on: dt.date) -> Qualification:
    """P-04: certified per software; authorized = the online part, then the in-person part on or after it."""
    passes = _valid_passes(facts, on)
    certified = {s for (exam, s) in passes if exam is ExamKind.CERTIFICATION}
    authorized = set()
    for software in ExpertSoftware:
        online = passes.get((ExamKind.AUTHORIZATION_ONLINE, software), [])
        in_person = passes.get((ExamKind.AUTHORIZATION_IN_PERSON, software), [])
        if online and in_person and max(in_person) >= min(online):
            authorized.add(software)
    return Qualification(frozenset(certified), frozenset(authorized))


def check_expert_fact(new: ExpertFact, person: Sequence[ExpertFact]) -> None:
    """Refuse a fact that contradicts what is known of the person (P-04); `person` excludes `new`.

    - An in-person part of the authorization exam needs a valid online part of the same software
      passed on or before it (the in-person part can be taken only after the online part).
    - An exam result or a leave for a firm the person does not work for on that day is for another
      firm: the person's move (`ExpertJoinedFirmV1` of the new firm) comes first.
    """
    if new.kind is ExpertFactKind.PASSED and new.exam is ExamKind.AUTHORIZATION_IN_PERSON:
        assert new.software is not None
        online = _valid_passes(person, new.on).get((ExamKind.AUTHORIZATION_ONLINE, new.software), [])
        if not online:
            raise ProgramRefusedError(
                "P-04",
                f"{new.expert_id} has no passed online part of the {new.software.value} authorization exam "
                f"on or before {new.on.isoformat()}; the in-person part can be taken only after the online part",
            )
    if new.kind in (ExpertFactKind.PASSED, ExpertFactKind.LEFT):
        at = firm_of(person, new.on)
        if new.kind is ExpertFactKind.LEFT and at != new.firm_id:
            where = f"works for {at}" if at else "works for no partner firm"
            raise ProgramRefusedError(
                "P-04", f"{new.expert_id} {where} on {new.on.isoformat()}, so cannot leave {new.firm_id}"
            )
        if new.kind is ExpertFactKind.PASSED and at is not None and at != new.firm_id:
            raise ProgramRefusedError(
                "P-04",
                f"{new.expert_id} works for {at} on {new.on.isoformat()}: an exam result for {new.firm_id} "
                "is for another firm; record the move (the new firm's expert-joined-firm) first",
            )


@dataclass(frozen=True, slots=True)
class ExpertCounts:
    """P-02 expert counts of one firm on one day; a person counts once however many software they hold."""

    certified: int = 0
    authorized: int = 0
    certified_by_software: Mapping[ExpertSoftware, int] = field(default_factory=dict)
    authorized_by_software: Mapping[ExpertSoftware, int] = field(default_factory=dict)


def expert_counts_by_firm(people: Mapping[str, Sequence[ExpertFact]], on: dt.date) -> dict[str, ExpertCounts]:
    """P-04 decision: each person counts for the firm they work for on `on`, with results from any firm.

    Results belong to the person: someone certified at their previous firm counts for the new one
    from the day they joined it, and no longer for the old one.
    """
    certified: dict[str, int] = defaultdict(int)
    authorized: dict[str, int] = defaultdict(int)
    by_c: dict[str, dict[ExpertSoftware, int]] = defaultdict(lambda: defaultdict(int))
    by_a: dict[str, dict[ExpertSoftware, int]] = defaultdict(lambda: defaultdict(int))
    for facts in people.values():
        firm = firm_of(facts, on)
        if firm is None:
            continue
        q = qualification(facts, on)
        if not q.is_certified:
            continue
        certified[firm] += 1
        authorized[firm] += q.is_authorized
        for s in q.certified | q.authorized:
            by_c[firm][s] += 1
        for s in q.authorized:
            by_a[firm][s] += 1
    return {
        firm: ExpertCounts(certified[firm], authorized[firm], dict(by_c[firm]), dict(by_a[firm]))
        for firm in certified
    }


def expert_counts(firm_id: str, people: Mapping[str, Sequence[ExpertFact]], on: dt.date) -> ExpertCounts:
    """The P-02 expert counts of one firm on `on`."""
    return expert_counts_by_firm(people, on).get(firm_id, ExpertCounts())


# ---------------------------------------------------------------- P-02 table, P-05 tier


@dataclass(frozen=True, slots=True)
class Requirement:
    """One row of the P-02 table (all rows also require a signed cooperation agreement)."""

    tier: PartnerTier
    end_customers: int
    certified: int
    authorized: int


#: P-02, highest first: the tier is the first row whose requirements all hold (P-05).
REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement(PartnerTier.PLATINUM, end_customers=100, certified=3, authorized=1),
    Requirement(PartnerTier.GOLD, end_customers=25, certified=1, authorized=0),
    Requirement(PartnerTier.SILVER, end_customers=5, certified=0, authorized=0),
    Requirement(PartnerTier.PARTNER, end_customers=0, certified=0, authorized=0),
)
_REQUIREMENT_OF = {r.tier: r for r in REQUIREMENTS}


@dataclass(frozen=True, slots=True)
class Counts:
    """What the P-02 requirements are checked against."""

    end_customers: int
    certified: int
    authorized: int


def tier_for(in_program: bool, counts: Counts) -> PartnerTier | None:
    """P-05: the highest tier whose requirements all hold; None without an agreement, whatever the counts."""
    if not in_program:
        return None
    for r in REQUIREMENTS:
        if (
            counts.end_customers >= r.end_customers
            and counts.certified >= r.certified
            and counts.authorized >= r.authorized
        ):
            return r.tier
    raise AssertionError("unreachable: the Partner row has no requirements")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def shortfall(tier: PartnerTier, counts: Counts) -> list[str]:
    """What the firm lacks for `tier`, in words (empty when it qualifies)."""
    r = _REQUIREMENT_OF[tier]
    lacks = []
    if counts.end_customers < r.end_customers:
        lacks.append(
            f"{_n(r.end_customers - counts.end_customers, 'more end customer')} (≥ {r.end_customers})"
        )
    if counts.certified < r.certified:
        lacks.append(f"{_n(r.certified - counts.certified, 'more certified expert')} (≥ {r.certified})")
    if counts.authorized < r.authorized:
        lacks.append(f"{_n(r.authorized - counts.authorized, 'more authorized expert')} (≥ {r.authorized})")
    return lacks


@dataclass(frozen=True, slots=True)
class Standing:
    """A firm's place in the program on one day, computed from the stored facts (P-02, P-05)."""

    in_program: bool
    tier: PartnerTier | None
    counts: Counts
    experts: ExpertCounts = field(default_factory=ExpertCounts)


def standing_of(
    *, agreement: Sequence[AgreementFact], experts: ExpertCounts, end_customers: int, on: dt.date
) -> Standing:
    """P-05: recompute from the facts, never by incrementing, so arrival order and duplicates do not matter."""
    return standing_from(agreement_in_force(agreement, on), experts, end_customers)


def standing_from(in_program: bool, experts: ExpertCounts, end_customers: int) -> Standing:
    """The standing of a firm whose agreement and expert counts are known for the day (P-05)."""
    counts = Counts(end_customers, experts.certified, experts.authorized)
    return Standing(in_program, tier_for(in_program, counts), counts, experts)


@dataclass(frozen=True, slots=True)
class TierChange:
    """One P-05 change, for `PartnerTierChangedV1` and the firm's history."""

    old_tier: PartnerTier | None
    new_tier: PartnerTier
    in_program: bool
    reason: str
    counts: Counts
    effective_month: str


def _counted(counts: Counts) -> str:
    return (
        f"{_n(counts.end_customers, 'end customer')}, {counts.certified} certified and "
        f"{counts.authorized} authorized {'expert' if counts.authorized == 1 else 'experts'}"
    )


def _requirements_text(tier: PartnerTier) -> str:
    r = _REQUIREMENT_OF[tier]
    parts = ["a cooperation agreement"]
    if r.end_customers:
        parts.append(f"≥ {r.end_customers} end customers")
    if r.certified:
        parts.append(f"≥ {_n(r.certified, 'certified expert')}")
    if r.authorized:
        parts.append(f"≥ {_n(r.authorized, 'authorized expert')}")
    return ", ".join(parts)


def tier_change(
    previous_tier: PartnerTier | None, previous_in_program: bool, new: Standing, today: dt.date
) -> TierChange | None:
    """P-05, P-07: the change from the stored tier to the new standing, or None when the tier stays.

    The change takes effect in the month it is recognised (P-07 decision: a change during month M
    applies from M's bill). It is never backdated to the month of a late fact: that month may
    already be invoiced, and an issued invoice is never reopened.
    """
    month = month_of(today)
    if not new.in_program:
        if not previous_in_program:
            return None
        return TierChange(
            old_tier=previous_tier,
            new_tier=PartnerTier.PARTNER,
            in_program=False,
            reason="the cooperation agreement is no longer in force: the firm left the program (P-02)",
            counts=new.counts,
            effective_month=month,
        )
    assert new.tier is not None
    if previous_in_program and previous_tier is new.tier:
        return None
    if not previous_in_program:
        reason = f"cooperation agreement in force: {TIER_NAMES[new.tier]} with {_counted(new.counts)} (P-02)"
        old = None
    elif rank(new.tier) > rank(previous_tier):
        reason = (
            f"rose to {TIER_NAMES[new.tier]}: {_counted(new.counts)} meet its requirements "
            f"({_requirements_text(new.tier)}, P-02)"
        )
        old = previous_tier
    else:
        assert previous_tier is not None
        lacks = "; ".join(shortfall(previous_tier, new.counts))
        reason = (
            f"fell to {TIER_NAMES[new.tier]}: {_counted(new.counts)}; {TIER_NAMES[previous_tier]} "
            f"needs {lacks} (P-02)"
        )
        old = previous_tier
    return TierChange(old, new.tier, True, reason, new.counts, month)


@dataclass(frozen=True, slots=True)
class TierInMonth:
    """One recorded change of a firm's tier, as the history keeps it."""

    effective_month: str
    changed_at: dt.datetime
    tier: PartnerTier
    in_program: bool
    sequence: int = 0  # the order changes were recorded in; decides between equal times


def tier_in_effect(history: Iterable[TierInMonth], month: str) -> TierInMonth | None:
    """P-07: the tier a month is billed with: the latest change effective in or before it.

    **Decision:** when a count crosses a boundary and back within one month, both changes are
    published (each effective that month) and the month is billed with the later one, the tier
    the firm has when the month ends; invoicing keeps the later of two changes for one month too.
    """
    known = [h for h in history if h.effective_month <= month]
    return max(known, key=lambda h: (h.effective_month, h.changed_at, h.sequence), default=None)


# ---------------------------------------------------------------- P-08 commissions

CENT = Decimal("0.01")


def commission_amount(software_net_total: Decimal, rate_percent: Decimal) -> Decimal:
    """P-08: the commission of a statement, rounded once, on the total, half up to cents.

    Half up is away from zero for ties (Python's ROUND_HALF_UP), so a month whose credit notes
    outweigh its invoices owes back exactly what the same positive month would have paid.
    """
    return (software_net_total * rate_percent / Decimal(100)).quantize(CENT, rounding=ROUND_HALF_UP)


def statement_id(month: str, partner_id: str) -> str:
    """One statement per reseller partner and month."""
    return f"CS-{month}-{partner_id}"


def line_label(
    kind: CommissionLineKind, number: str, *, credited_invoice_number: str | None, billing_period: str | None
) -> str:
    """The text of a statement line: invoices plainly, credit notes as their own labelled line (P-08)."""
    if kind is CommissionLineKind.CREDIT_NOTE:
        return f"Hyvityslasku {number} (lasku {credited_invoice_number}) / credit note of invoice {credited_invoice_number}"
    return f"Lasku {number}, kausi {billing_period} / invoice for {billing_period}"


@dataclass(frozen=True, slots=True)
class StatementLine:
    """An invoice or credit note behind a statement (P-08)."""

    document_id: str
    kind: CommissionLineKind
    number: str
    date: dt.date
    payer_business_id: str
    software_net: Decimal
    credited_invoice_number: str | None = None
    billing_period: str | None = None


@dataclass(frozen=True, slots=True)
class Statement:
    """A reseller's commission statement of one month (P-08)."""

    statement_id: str
    partner_id: str
    month: str
    issued_on: dt.date
    rate_percent: Decimal
    lines: Sequence[StatementLine]
    software_net_total: Decimal
    commission: Decimal


def make_statement(
    partner_id: str, month: str, lines: Sequence[StatementLine], *, rate_percent: Decimal, issued_on: dt.date
) -> Statement:
    """The statement of `lines`; their order is kept (the caller sorts)."""
    total = sum((ln.software_net for ln in lines), Decimal("0.00"))
    return Statement(
        statement_id=statement_id(month, partner_id),
        partner_id=partner_id,
        month=month,
        issued_on=issued_on,
        rate_percent=rate_percent,
        lines=lines,
        software_net_total=total,
        commission=commission_amount(total, rate_percent),
    )


def _fi_decimal(value: Decimal) -> str:
    return format(value.quantize(CENT), "f").replace(".", ",")


def _fi_date(day: dt.date) -> str:
    return f"{day.day}.{day.month}.{day.year}"


#: CSV for the finance team, as Finnish spreadsheet software reads it without an import wizard:
#: `;` between fields, decimal comma, dates d.m.yyyy, UTF-8 with a byte-order mark, CRLF lines.
CSV_HEADER = (
    "tilitoimisto",
    "kuukausi",
    "rivilaji",
    "numero",
    "hyvitetty lasku",
    "laskutuskausi",
    "päivämäärä",
    "asiakkaan y-tunnus",
    "ohjelmistot netto (EUR)",
    "selite",
)


def _csv_field(value: str) -> str:
    if any(c in value for c in ';"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def statement_csv(statement: Statement) -> str:
    """The statement as CSV: one row per invoice or credit note, then the total and the commission rows."""
    rows = [CSV_HEADER]
    for ln in statement.lines:
        kind = "hyvityslasku" if ln.kind is CommissionLineKind.CREDIT_NOTE else "lasku"
        rows.append(
            (
                statement.partner_id,
                statement.month,
                kind,
                ln.number,
                ln.credited_invoice_number or "",
                ln.billing_period or "",
                _fi_date(ln.date),
                ln.payer_business_id,
                _fi_decimal(ln.software_net),
                line_label(
                    ln.kind,
                    ln.number,
                    credited_invoice_number=ln.credited_invoice_number,
                    billing_period=ln.billing_period,
                ),
            )
        )
    rate = format(statement.rate_percent.normalize(), "f").replace(".", ",")
    for kind, amount, text in (
        ("yhteensä", statement.software_net_total, "ohjelmistojen nettomyynti yhteensä / software net total"),
        ("palkkio", statement.commission, f"jälleenmyyntipalkkio {rate} % / resale commission (P-08)"),
    ):
        rows.append(
            (
                statement.partner_id,
                statement.month,
                kind,
                "",
                "",
                "",
                _fi_date(statement.issued_on),
                "",
                _fi_decimal(amount),
                text,
            )
        )
    return "\ufeff" + "".join(";".join(_csv_field(v) for v in row) + "\r\n" for row in rows)


# ---------------------------------------------------------------- P-09 directory


class Presentation(StrEnum):
    """How much of a listed firm the public search shows (P-06, P-09)."""

    NONE = "none"
    PRESENTATION = "presentation"
    EXTENDED = "extended"


@dataclass(frozen=True, slots=True)
class TierBenefits:
    """The benefits of one tier (P-06); each tier has all of the lower tiers' benefits."""

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


@dataclass(frozen=True, slots=True)
class BenefitSet:
    """The P-06 table valid from a day (until the next set's day)."""

    valid_from: dt.date
    tiers: Mapping[PartnerTier, TierBenefits]


@dataclass(frozen=True, slots=True)
class BenefitBook:
    """P-06 as effective-dated data, like the price lists (B-07): which table is in force on a day."""

    sets: Sequence[BenefitSet]

    def __post_init__(self) -> None:
        days = [s.valid_from for s in self.sets]
        if not days:
            raise ValueError("a benefit book needs at least one set")
        if days != sorted(days) or len(set(days)) != len(days):
            raise ValueError("benefit sets must have distinct valid_from days, oldest first")
        for s in self.sets:
            if set(s.tiers) != set(TIER_ORDER):
                raise ValueError(f"the set valid from {s.valid_from} must give every tier's benefits")

    def on(self, day: dt.date) -> BenefitSet:
        """The set in force on `day`."""
        valid = [s for s in self.sets if s.valid_from <= day]
        if not valid:
            raise LookupError(f"no partner benefits are defined for {day.isoformat()}")
        return valid[-1]

    def for_month(self, month: str) -> BenefitSet:
        """The set in force on the month's first day (benefits change at month boundaries, as prices do)."""
        return self.on(month_bounds(month)[0])

    def of(self, tier: PartnerTier, day: dt.date) -> TierBenefits:
        return self.on(day).tiers[tier]


def listed_in_directory(in_program: bool, tier: PartnerTier | None, benefits: BenefitSet) -> bool:
    """P-09: the public search lists the firms whose tier has the listing benefit (Silver and up)."""
    return in_program and tier is not None and benefits.tiers[tier].directory_listing
