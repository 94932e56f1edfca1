"""Contract lifecycle rules, pure: who may ask, when changes take effect, termination, terms per month (B-17…B-29)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from billing_contracts.contracts import ApprovingFirm, PackageChangeKind, PayerKind
from billing_contracts.invoicing import ContractStatus as ContractStatus  # the wire vocabulary, re-exported
from invoicing.calendar import HELSINKI, YearMonth
from invoicing.prices.domain import PackageCode

#: The size-based Taloushallinto (Financials) versions; a Tallennus conversion lands on one of these.
TALOUSHALLINTO = frozenset(
    {PackageCode.ALKU, PackageCode.KEVYT, PackageCode.PERUS, PackageCode.LAAJA, PackageCode.JOUSTO}
)
#: Packages resized by a `package_size` change (B-26). Decision: Solo resizes to and from the
#: Taloushallinto versions; Tallennus moves only by its own kinds; Allekirjoitus is not resized.
RESIZABLE = TALOUSHALLINTO | {PackageCode.SOLO}

CUT_OFF_DAY = 15  # B-26
NOTICE_MONTHS = 1  # B-27
DATA_RETENTION_MONTHS = 3  # B-27

#: B-25: roles whose users may ask for changes (Pääkäyttäjä; Muokattu only with the rights).
MAIN_USER = "main_user"
CUSTOM = "custom"


class ChangeRefusedError(Exception):
    """A contract or change request the rules refuse: the rule id and a reason for the requester."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"{reason} ({rule})")
        self.rule = rule
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ContractTerms:
    """What billing needs of one contract for one billed month (B-26: no proration).

    `package`, the accounting firm and the payer are those in effect for the month; the invoice
    name, addresses, channel and contact are the contract's current ones (B-22).
    """

    contract_id: str
    environment_id: str
    business_id: str
    invoice_name: str  # B-22: changes only by a change notice
    package: PackageCode
    production_date: dt.date  # B-01
    end_date: dt.date | None  # B-27: last billable day
    payer_kind: PayerKind  # B-17
    payer_id: str  # business ID of the payer
    accounting_firm_id: str | None
    accounting_firm_business_id: str | None
    reseller_partner_id: str | None  # P-08
    own_use: bool  # P-07
    billing_address: Mapping[str, Any]
    billing_channel: str  # B-21
    einvoice_address: Mapping[str, Any] | None  # B-20
    billing_email: str | None
    billing_contact: Mapping[str, Any] | None  # B-24
    status: ContractStatus


@dataclass(frozen=True, slots=True)
class Requester:
    """The person behind a change request, as far as B-25 needs."""

    person_name: str
    role: str | None = None
    has_basic_info_and_user_rights: bool = False
    is_signatory: bool = False


def check_requester(requester: Requester) -> None:
    """B-25: only a main user, a custom-role user with basic-info and user-management rights, or a signatory."""
    role = (requester.role or "").strip().lower()
    if requester.is_signatory or role == MAIN_USER:
        return
    if role == CUSTOM and requester.has_basic_info_and_user_rights:
        return
    if role == CUSTOM:
        why = "has the custom role without rights to company basic info and user management"
    elif role:
        why = f"has the role {requester.role!r}"
    else:
        why = "has no role in the environment"
    raise ChangeRefusedError(
        "B-25",
        f"{requester.person_name} {why} and is not a registered signatory; only a main user "
        "(Pääkäyttäjä), a custom-role (Muokattu) user with rights to company basic info and user "
        "management, or a signatory may request contract changes",
    )


def helsinki_date(at: dt.datetime) -> dt.date:
    """The Helsinki calendar day of an instant; naive datetimes are refused."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("naive datetime: an aware timestamp is required")
    return at.astimezone(HELSINKI).date()


def effective_month(received_at: dt.datetime) -> YearMonth:
    """B-26: received on day 1–15 (Helsinki) → from the start of that month, else from the next."""
    day = helsinki_date(received_at)
    month = YearMonth.of(day)
    return month if day.day <= CUT_OFF_DAY else month.next()


def _add_months(month: YearMonth, n: int) -> YearMonth:
    for _ in range(n):
        month = month.next()
    return month


@dataclass(frozen=True, slots=True)
class Termination:
    """B-27: the last day of the contract and the day until which its data is kept."""

    notice_given_on: dt.date
    end_date: dt.date
    data_retained_until: dt.date


def termination(notice_given_at: dt.datetime) -> Termination:
    """B-27: one month's notice, ending on the last day of the month in which it runs out.

    Notice on 10 March runs out on 10 April, so the contract ends on 30 April. A notice period
    always runs out in the month after the notice (a month from the 31st is clamped to that
    month's last day). Decision: data is kept until the last day of the third month after the end
    (30 April → 31 July), because the contract is counted in whole months. No B-26 cut-off.
    """
    day = helsinki_date(notice_given_at)
    end_month = _add_months(YearMonth.of(day), NOTICE_MONTHS)
    return Termination(
        notice_given_on=day,
        end_date=end_month.last_day,
        data_retained_until=_add_months(end_month, DATA_RETENTION_MONTHS).last_day,
    )


def status_on(today: dt.date, *, production_date: dt.date, end_date: dt.date | None) -> ContractStatus:
    """The lifecycle state on a day: signed → active on the production date → noticed → terminated after the end."""
    if end_date is not None:
        return ContractStatus.TERMINATED if today > end_date else ContractStatus.TERMINATION_NOTICED
    return ContractStatus.ACTIVE if production_date <= today else ContractStatus.SIGNED


@dataclass(frozen=True, slots=True)
class EffectiveTerms:
    """The effective-dated part of a contract: package, accounting firm, payer (B-17, B-26)."""

    package: PackageCode
    accounting_firm_id: str | None
    accounting_firm_business_id: str | None
    payer_kind: PayerKind
    payer_id: str


@dataclass(frozen=True, slots=True)
class TermChange:
    """A change of some effective-dated terms from the start of a month (None: from the contract's start).

    Each group (package; accounting firm; payer) is changed only when its `sets_…` flag is on.
    """

    effective_from: YearMonth | None
    requested_at: dt.datetime
    seq: int = 0
    package: PackageCode | None = None
    sets_accounting_firm: bool = False
    accounting_firm_id: str | None = None
    accounting_firm_business_id: str | None = None
    payer_kind: PayerKind | None = None
    payer_id: str | None = None

    def __post_init__(self) -> None:
        if (self.payer_kind is None) != (self.payer_id is None):
            raise ValueError("a payer change names both the payer kind and the payer id")

    @property
    def order(self) -> tuple[int, YearMonth, dt.datetime, int]:
        # The contract's own terms first, then by month, then by when asked: a later request wins.
        start = self.effective_from or YearMonth(dt.MINYEAR, 1)
        return (0 if self.effective_from is None else 1, start, self.requested_at, self.seq)

    def applies_in(self, month: YearMonth) -> bool:
        return self.effective_from is None or self.effective_from <= month

    def apply_to(self, terms: EffectiveTerms) -> EffectiveTerms:
        if self.package is not None:
            terms = replace(terms, package=self.package)
        if self.sets_accounting_firm:
            terms = replace(
                terms,
                accounting_firm_id=self.accounting_firm_id,
                accounting_firm_business_id=self.accounting_firm_business_id,
            )
        if self.payer_kind is not None and self.payer_id is not None:
            terms = replace(terms, payer_kind=self.payer_kind, payer_id=self.payer_id)
        return terms


def initial_change(terms: EffectiveTerms, *, signed_at: dt.datetime) -> TermChange:
    """The terms a contract is signed with, in effect from its start."""
    return TermChange(
        effective_from=None,
        requested_at=signed_at,
        package=terms.package,
        sets_accounting_firm=True,
        accounting_firm_id=terms.accounting_firm_id,
        accounting_firm_business_id=terms.accounting_firm_business_id,
        payer_kind=terms.payer_kind,
        payer_id=terms.payer_id,
    )


def terms_in_effect(changes: Iterable[TermChange], month: YearMonth) -> EffectiveTerms:
    """B-26: the package, firm and payer of `month`: every change from before or in it, in order.

    For each group the change with the latest (month, request time) wins, so a request that
    arrives late never overrides a later one, and a month is billed with one set of terms.
    """
    ordered = sorted((c for c in changes if c.applies_in(month)), key=lambda c: c.order)
    if not ordered or ordered[0].effective_from is not None:
        raise ValueError("a contract's terms start with the terms it was signed with")
    first = ordered[0]
    if first.package is None or first.payer_kind is None or first.payer_id is None:
        raise ValueError("the signed terms name the package and the payer")
    terms = EffectiveTerms(
        package=first.package,
        accounting_firm_id=first.accounting_firm_id,
        accounting_firm_business_id=first.accounting_firm_business_id,
        payer_kind=first.payer_kind,
        payer_id=first.payer_id,
    )
    for change in ordered[1:]:
        terms = change.apply_to(terms)
    return terms


def check_payer(terms: EffectiveTerms, *, business_id: str) -> None:
    """B-17: Tallennus is paid by its accounting firm; a firm-paid contract names the firm's business ID."""
    if terms.package is PackageCode.TALLENNUS and terms.payer_kind is not PayerKind.ACCOUNTING_FIRM:
        raise ChangeRefusedError("B-17", "a Tallennus environment is paid by its accounting firm")
    if terms.payer_kind is PayerKind.ACCOUNTING_FIRM:
        if terms.accounting_firm_business_id is None:
            raise ChangeRefusedError(
                "B-17", "the payer is the accounting firm but the firm's business ID is not known"
            )
        if terms.payer_id != terms.accounting_firm_business_id:
            raise ValueError("a firm-paid contract is paid by its accounting firm's business ID")
    elif terms.payer_id != business_id:
        raise ValueError("a company-paid contract is paid by its own business ID")


def _check_open(month: YearMonth, *, end_date: dt.date | None, what: str) -> None:
    if end_date is not None and month.first_day > end_date:
        raise ChangeRefusedError(
            "B-27",
            f"the contract ends on {end_date.isoformat()}, before the {what} would take effect in {month}",
        )


def package_change(
    current: EffectiveTerms,
    *,
    kind: PackageChangeKind,
    new_package: PackageCode,
    requested_at: dt.datetime,
    business_id: str,
    end_date: dt.date | None,
) -> TermChange:
    """B-26: a package-size change, a Tallennus package change or a Tallennus→Taloushallinto conversion.

    `current` is the terms in effect for the month the change takes effect. Converting Tallennus
    to Taloushallinto moves the payer to the company itself, because a Taloushallinto environment
    is the company's own (B-17); moving into Tallennus moves it to the accounting firm.
    """
    month = effective_month(requested_at)
    _check_open(month, end_date=end_date, what="package change")
    old = current.package
    if new_package == old:
        raise ChangeRefusedError("B-26", f"the package in effect for {month} is already {old}")
    payer_kind: PayerKind | None = None
    payer_id: str | None = None
    match kind:
        case PackageChangeKind.PACKAGE_SIZE:
            if old not in RESIZABLE or new_package not in RESIZABLE:
                raise ChangeRefusedError(
                    "B-26",
                    f"a package-size change is between Taloushallinto versions and Solo, not {old} → {new_package}",
                )
        case PackageChangeKind.TALLENNUS_PACKAGE:
            if new_package is not PackageCode.TALLENNUS:
                raise ChangeRefusedError(
                    "B-26", f"a Tallennus package change leads to Tallennus, not to {new_package}"
                )
            if current.accounting_firm_id is None or current.accounting_firm_business_id is None:
                raise ChangeRefusedError(
                    "B-17",
                    "a Tallennus environment is paid by its accounting firm; the contract names no firm with a business ID",
                )
            payer_kind, payer_id = PayerKind.ACCOUNTING_FIRM, current.accounting_firm_business_id
        case PackageChangeKind.TALLENNUS_TO_TALOUSHALLINTO:
            if old is not PackageCode.TALLENNUS:
                raise ChangeRefusedError(
                    "B-26", f"only a Tallennus environment converts to Taloushallinto; this one is {old}"
                )
            if new_package not in TALOUSHALLINTO:
                raise ChangeRefusedError(
                    "B-26", f"a Tallennus conversion leads to a Taloushallinto version, not to {new_package}"
                )
            payer_kind, payer_id = PayerKind.COMPANY, business_id
    return TermChange(
        effective_from=month,
        requested_at=requested_at,
        package=new_package,
        payer_kind=payer_kind,
        payer_id=payer_id,
    )


def accounting_firm_change(
    current: EffectiveTerms,
    *,
    new_firm_id: str,
    new_firm_business_id: str | None,
    requested_at: dt.datetime,
    end_date: dt.date | None,
) -> TermChange:
    """B-26: another accounting firm from this or the next month; a firm-paid contract's payer follows.

    A Tallennus environment moves only with both firms' approvals (B-29), never by a plain request.
    """
    month = effective_month(requested_at)
    _check_open(month, end_date=end_date, what="accounting-firm change")
    if current.package is PackageCode.TALLENNUS:
        raise ChangeRefusedError(
            "B-29",
            "a Tallennus environment moves to another accounting firm only with written approvals "
            "of both the old and the new firm (TallennusFirmChangeApprovedV1)",
        )
    if new_firm_id == current.accounting_firm_id:
        raise ChangeRefusedError(
            "B-26", f"{new_firm_id} is already the accounting firm in effect for {month}"
        )
    payer_kind: PayerKind | None = None
    payer_id: str | None = None
    if current.payer_kind is PayerKind.ACCOUNTING_FIRM:
        if new_firm_business_id is None:
            raise ChangeRefusedError(
                "B-17", "the accounting firm pays this contract; the new firm's business ID is needed"
            )
        payer_kind, payer_id = PayerKind.ACCOUNTING_FIRM, new_firm_business_id
    return TermChange(
        effective_from=month,
        requested_at=requested_at,
        sets_accounting_firm=True,
        accounting_firm_id=new_firm_id,
        accounting_firm_business_id=new_firm_business_id,
        payer_kind=payer_kind,
        payer_id=payer_id,
    )


@dataclass(frozen=True, slots=True)
class FirmApproval:
    """One firm's written approval of a Tallennus firm change (B-29)."""

    side: ApprovingFirm
    approved_at: dt.datetime
    approved_by: str
    new_package: PackageCode | None = None
    new_firm_business_id: str | None = None


@dataclass(frozen=True, slots=True)
class PendingFirmChange:
    """A Tallennus firm change waiting for both approvals (B-29)."""

    old_firm_id: str
    new_firm_id: str
    old_approval: FirmApproval | None = None
    new_approval: FirmApproval | None = None

    @property
    def is_complete(self) -> bool:
        return self.old_approval is not None and self.new_approval is not None


def record_firm_approval(
    pending: PendingFirmChange | None,
    current: EffectiveTerms,
    *,
    old_firm_id: str,
    new_firm_id: str,
    approval: FirmApproval,
) -> PendingFirmChange:
    """B-29: record one side's approval; a repeated approval from the same side replaces the earlier one."""
    if current.package is not PackageCode.TALLENNUS:
        raise ChangeRefusedError(
            "B-29", f"only a Tallennus environment changes firm by approvals; this one is {current.package}"
        )
    if old_firm_id == new_firm_id:
        raise ChangeRefusedError("B-29", "the old and the new accounting firm are the same")
    if current.accounting_firm_id != old_firm_id:
        raise ChangeRefusedError(
            "B-29",
            f"the environment's accounting firm is {current.accounting_firm_id}, not {old_firm_id}",
        )
    if approval.side is ApprovingFirm.NEW and approval.new_package is None:
        raise ChangeRefusedError("B-29", "the new firm's approval must name the package it wants")
    if pending is None or pending.new_firm_id != new_firm_id or pending.old_firm_id != old_firm_id:
        pending = PendingFirmChange(old_firm_id=old_firm_id, new_firm_id=new_firm_id)
    if approval.side is ApprovingFirm.OLD:
        return replace(pending, old_approval=approval)
    return replace(pending, new_approval=approval)


def completed_firm_change(
    pending: PendingFirmChange, *, end_date: dt.date | None, new_firm_business_id: str | None
) -> TermChange:
    """B-29 then B-26: both approvals recorded; the move takes effect by the cut-off of the later one.

    The new firm becomes the accounting firm and the payer (B-17), with the package it asked for.
    """
    if pending.old_approval is None or pending.new_approval is None:
        raise ValueError("a firm change completes only with both approvals")
    later = max(pending.old_approval.approved_at, pending.new_approval.approved_at)
    month = effective_month(later)
    _check_open(month, end_date=end_date, what="accounting-firm change")
    if new_firm_business_id is None:
        raise ChangeRefusedError(
            "B-17",
            f"the new firm {pending.new_firm_id} pays the Tallennus environment; its business ID is needed",
        )
    return TermChange(
        effective_from=month,
        requested_at=later,
        package=pending.new_approval.new_package,
        sets_accounting_firm=True,
        accounting_firm_id=pending.new_firm_id,
        accounting_firm_business_id=new_firm_business_id,
        payer_kind=PayerKind.ACCOUNTING_FIRM,
        payer_id=new_firm_business_id,
    )


def check_name_change(*, current_name: str, old_name: str, new_name: str) -> None:
    """B-22: a change notice names the old and the new name; the old one must be the name on invoices."""
    if old_name.strip() != current_name.strip():
        raise ChangeRefusedError(
            "B-22", f"the notice names {old_name!r} as the old name, but invoices carry {current_name!r}"
        )
    if new_name.strip() == current_name.strip():
        raise ChangeRefusedError("B-22", f"the company name on invoices is already {current_name!r}")


# --- who asked, and who vouches for it (issue 12) ---


@dataclass(frozen=True)
class Source:
    """Where a change came from, and who vouches for the requester it names (the audit's two actors).

    `channel` is `http`, `kafka`, `procountor` or `schedule`. `asserted_by` is the system that
    asserts the command: over HTTP the calling system's token subject; over Kafka, where commands
    carry no token, the topic (`kafka:<topic>`), which only that system's KafkaUser may write.
    """

    channel: str
    asserted_by: str


def from_http(subject: str) -> Source:
    """A command sent over HTTP by the caller with this token subject."""
    return Source("http", subject)


def from_kafka(topic: str) -> Source:
    """A command read from `topic`: the topic ACL says who wrote it (docs/architecture.md)."""
    return Source("kafka", f"kafka:{topic}")


#: Changes Procountor reported (procountor-sync's topic) and those the passing of time makes.
SOURCE_PROCOUNTOR = Source("procountor", "kafka:procountor.customer-changed.v1")
SOURCE_SCHEDULE = Source("schedule", "invoicing")
