"""Metering's pure rules: Helsinki months, what counts, who is billed, when a month closes (B-09…B-16)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from itertools import combinations

import pytest

from billing_contracts.usage import DocumentKind, InvoiceChannel, UserRole
from metering.domain import (
    HELSINKI,
    Usage,
    carries_message_fee,
    close_is_due,
    counts_as_voucher,
    is_billable_user,
    is_implausible_future,
    month_end,
    month_of,
    month_start,
    next_month,
    previous_month,
)

# --- B-09: the Helsinki creation month -------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "month"),
    [
        # Last second of a month and first second of the next, in Helsinki local time.
        (datetime(2026, 1, 31, 23, 59, 59, tzinfo=HELSINKI), "2026-01"),
        (datetime(2026, 2, 1, 0, 0, 0, tzinfo=HELSINKI), "2026-02"),
        (datetime(2026, 2, 28, 23, 59, 59, tzinfo=HELSINKI), "2026-02"),
        (datetime(2026, 3, 1, 0, 0, 0, tzinfo=HELSINKI), "2026-03"),
        (datetime(2026, 6, 30, 23, 59, 59, 999999, tzinfo=HELSINKI), "2026-06"),
        (datetime(2026, 7, 1, 0, 0, 0, tzinfo=HELSINKI), "2026-07"),
        (datetime(2026, 12, 31, 23, 59, 59, tzinfo=HELSINKI), "2026-12"),
        (datetime(2027, 1, 1, 0, 0, 0, tzinfo=HELSINKI), "2027-01"),
        (datetime(2028, 2, 29, 23, 59, 59, tzinfo=HELSINKI), "2028-02"),
    ],
)
def test_b09_the_last_local_second_of_a_month_belongs_to_it_and_the_first_to_the_next(
    at: datetime, month: str
) -> None:
    assert month_of(at) == month


@pytest.mark.parametrize(
    ("at", "month"),
    [
        # Winter (EET, +02:00): midnight in Helsinki is 22:00 UTC the evening before.
        (datetime(2026, 1, 31, 21, 59, 59, tzinfo=UTC), "2026-01"),
        (datetime(2026, 1, 31, 22, 0, 0, tzinfo=UTC), "2026-02"),
        (datetime(2026, 12, 31, 21, 59, 59, tzinfo=UTC), "2026-12"),
        (datetime(2026, 12, 31, 22, 0, 0, tzinfo=UTC), "2027-01"),
        # Summer (EEST, +03:00): midnight in Helsinki is 21:00 UTC.
        (datetime(2026, 6, 30, 20, 59, 59, tzinfo=UTC), "2026-06"),
        (datetime(2026, 6, 30, 21, 0, 0, tzinfo=UTC), "2026-07"),
        # An offset that is neither Helsinki nor UTC is converted too.
        (datetime(2026, 5, 31, 16, 0, 0, tzinfo=timezone(timedelta(hours=-5))), "2026-06"),
        (datetime(2026, 5, 31, 15, 59, 59, tzinfo=timezone(timedelta(hours=-5))), "2026-05"),
    ],
)
def test_b09_a_utc_timestamp_counts_in_its_helsinki_month_not_its_utc_month(at: datetime, month: str) -> None:
    assert month_of(at) == month


@pytest.mark.parametrize(
    ("at", "month"),
    [
        # Spring forward on Sunday 2026-03-29: 03:00 EET becomes 04:00 EEST at 01:00 UTC.
        (datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC), "2026-03"),
        (datetime(2026, 3, 29, 1, 0, 0, tzinfo=UTC), "2026-03"),
        (datetime(2026, 3, 29, 2, 59, 59, tzinfo=HELSINKI), "2026-03"),
        (datetime(2026, 3, 29, 4, 0, 0, tzinfo=HELSINKI), "2026-03"),
        # End of March is in summer time (+03:00): 21:30 UTC on the 31st is already April in Helsinki,
        # though a winter offset would still say 23:30 March.
        (datetime(2026, 3, 31, 20, 59, 59, tzinfo=UTC), "2026-03"),
        (datetime(2026, 3, 31, 21, 0, 0, tzinfo=UTC), "2026-04"),
        (datetime(2026, 3, 31, 21, 30, 0, tzinfo=UTC), "2026-04"),
        (datetime(2026, 3, 31, 23, 59, 59, tzinfo=HELSINKI), "2026-03"),
        (datetime(2026, 4, 1, 0, 0, 0, tzinfo=HELSINKI), "2026-04"),
        # Fall back on Sunday 2026-10-25: 04:00 EEST becomes 03:00 EET at 01:00 UTC; 03:30 happens twice.
        (datetime(2026, 10, 25, 0, 30, 0, tzinfo=UTC), "2026-10"),
        (datetime(2026, 10, 25, 1, 30, 0, tzinfo=UTC), "2026-10"),
        (datetime(2026, 10, 25, 3, 30, 0, fold=0, tzinfo=HELSINKI), "2026-10"),
        (datetime(2026, 10, 25, 3, 30, 0, fold=1, tzinfo=HELSINKI), "2026-10"),
        # End of October is in winter time (+02:00): 21:30 UTC on the 31st is still October in Helsinki,
        # though a summer offset would say 00:30 November.
        (datetime(2026, 10, 31, 21, 30, 0, tzinfo=UTC), "2026-10"),
        (datetime(2026, 10, 31, 21, 59, 59, tzinfo=UTC), "2026-10"),
        (datetime(2026, 10, 31, 22, 0, 0, tzinfo=UTC), "2026-11"),
        (datetime(2026, 10, 31, 23, 59, 59, tzinfo=HELSINKI), "2026-10"),
        (datetime(2026, 11, 1, 0, 0, 0, tzinfo=HELSINKI), "2026-11"),
    ],
)
def test_b09_month_edges_use_the_helsinki_offset_in_force_after_each_daylight_saving_change(
    at: datetime, month: str
) -> None:
    assert month_of(at) == month


def test_b09_a_naive_timestamp_has_no_month() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        month_of(datetime(2026, 10, 31, 23, 59, 59))  # noqa: DTZ001 - the point of the test


@pytest.mark.parametrize(
    ("month", "start_utc", "end_utc"),
    [
        ("2026-03", datetime(2026, 2, 28, 22, 0, tzinfo=UTC), datetime(2026, 3, 31, 21, 0, tzinfo=UTC)),
        ("2026-10", datetime(2026, 9, 30, 21, 0, tzinfo=UTC), datetime(2026, 10, 31, 22, 0, tzinfo=UTC)),
        ("2026-12", datetime(2026, 11, 30, 22, 0, tzinfo=UTC), datetime(2026, 12, 31, 22, 0, tzinfo=UTC)),
    ],
)
def test_a_month_runs_from_helsinki_midnight_of_its_first_day_to_helsinki_midnight_after_its_last(
    month: str, start_utc: datetime, end_utc: datetime
) -> None:
    assert month_start(month) == start_utc
    assert month_end(month) == end_utc


@pytest.mark.parametrize(
    ("month", "following", "preceding"),
    [
        ("2026-01", "2026-02", "2025-12"),
        ("2026-11", "2026-12", "2026-10"),
        ("2026-12", "2027-01", "2026-11"),
    ],
)
def test_next_and_previous_month_cross_the_year_boundary(month: str, following: str, preceding: str) -> None:
    assert next_month(month) == following
    assert previous_month(month) == preceding


# --- B-10: what counts as a voucher ----------------------------------------------------------------

VOUCHER_TABLE: dict[DocumentKind, bool] = {
    DocumentKind.SALES_INVOICE: True,
    DocumentKind.PURCHASE_INVOICE: True,
    DocumentKind.TRAVEL_INVOICE: True,
    DocumentKind.EXPENSE_INVOICE: True,
    DocumentKind.PAYSLIP: True,
    DocumentKind.SALES_ORDER: True,
    DocumentKind.QUOTE_ORDER: True,
    DocumentKind.PURCHASE_ORDER: True,
    DocumentKind.MEMO_VOUCHER: True,
    DocumentKind.VAT_CALCULATION: True,
    DocumentKind.AUTHORITY_REPORT: True,
    DocumentKind.MASS_LETTER: True,
    DocumentKind.PAYMENT_REMINDER: True,
    DocumentKind.DOCUMENT: True,
    DocumentKind.DIRECT_BANK_TRANSFER: True,
    DocumentKind.BANK_STATEMENT: False,
    DocumentKind.REFERENCE_PAYMENT: False,
    DocumentKind.LEDGER_ENTRY_IMPORT: False,
    DocumentKind.ATTACHMENT: False,
}


def test_b10_every_document_kind_has_a_decided_voucher_status() -> None:
    assert set(VOUCHER_TABLE) == set(DocumentKind)
    assert sum(VOUCHER_TABLE.values()) == 15


@pytest.mark.parametrize(("kind", "is_voucher"), sorted(VOUCHER_TABLE.items()))
def test_b10_only_the_listed_document_kinds_count_as_vouchers(kind: DocumentKind, is_voucher: bool) -> None:
    assert counts_as_voucher(kind) is is_voucher


# --- B-13: message fees ----------------------------------------------------------------------------

FEE_TABLE: dict[InvoiceChannel, bool] = {
    InvoiceChannel.OPERATOR: True,
    InvoiceChannel.BANK: True,
    InvoiceChannel.EMAIL: False,
    InvoiceChannel.PAPER: False,
    InvoiceChannel.TYPED_IN: False,
}


def test_b13_every_channel_has_a_decided_fee() -> None:
    assert set(FEE_TABLE) == set(InvoiceChannel)


@pytest.mark.parametrize(("channel", "fee"), sorted(FEE_TABLE.items()))
def test_b13_only_operator_and_bank_e_invoices_carry_a_message_fee(
    channel: InvoiceChannel, fee: bool
) -> None:
    assert carries_message_fee(channel) is fee


# --- B-16: Tallennus users -------------------------------------------------------------------------

PAID_ROLES = {UserRole.MAIN_USER, UserRole.CUSTOM, UserRole.ACCOUNTANT}


@pytest.mark.parametrize(
    ("roles", "billable"),
    [
        (frozenset(), False),  # removed from the environment
        (frozenset({UserRole.MANAGEMENT_AUDITOR}), False),
        (frozenset({UserRole.STAFF_ENTRY}), False),
        (frozenset({UserRole.MANAGEMENT_AUDITOR, UserRole.STAFF_ENTRY}), False),
        (frozenset({UserRole.MAIN_USER}), True),
        (frozenset({UserRole.CUSTOM}), True),
        (frozenset({UserRole.ACCOUNTANT}), True),
        (frozenset({UserRole.ACCOUNTANT, UserRole.STAFF_ENTRY}), True),
        (frozenset({UserRole.MAIN_USER, UserRole.MANAGEMENT_AUDITOR, UserRole.STAFF_ENTRY}), True),
        (frozenset(UserRole), True),
    ],
)
def test_b16_a_user_is_billed_when_any_role_is_paid_and_free_roles_alone_cost_nothing(
    roles: frozenset[UserRole], billable: bool
) -> None:
    assert is_billable_user(roles) is billable


def test_b16_of_all_32_role_sets_exactly_the_28_holding_a_paid_role_are_billed() -> None:
    role_sets = [frozenset(c) for n in range(len(UserRole) + 1) for c in combinations(UserRole, n)]
    billed = [s for s in role_sets if is_billable_user(s)]
    assert len(role_sets) == 32
    assert len(billed) == 28
    assert all(s & PAID_ROLES for s in billed)


# --- closing a month -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("month", "now", "due"),
    [
        # October 2026 ends at 2026-11-01 00:00 EET (22:00 UTC on the 31st); grace 2 h.
        ("2026-10", datetime(2026, 10, 31, 23, 59, 59, tzinfo=HELSINKI), False),
        ("2026-10", datetime(2026, 11, 1, 1, 59, 59, 999999, tzinfo=HELSINKI), False),
        ("2026-10", datetime(2026, 11, 1, 2, 0, 0, tzinfo=HELSINKI), True),
        ("2026-10", datetime(2026, 11, 1, 0, 0, 0, tzinfo=UTC), True),
        ("2026-10", datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC), False),
        # March 2026 ends at 2026-04-01 00:00 EEST (21:00 UTC on the 31st).
        ("2026-03", datetime(2026, 3, 31, 22, 59, 59, tzinfo=UTC), False),
        ("2026-03", datetime(2026, 3, 31, 23, 0, 0, tzinfo=UTC), True),
        # A month still running is never due.
        ("2026-11", datetime(2026, 11, 20, 12, 0, tzinfo=HELSINKI), False),
    ],
)
def test_a_month_may_close_exactly_when_its_helsinki_end_plus_the_grace_has_passed(
    month: str, now: datetime, due: bool
) -> None:
    assert close_is_due(month, now, timedelta(hours=2)) is due


def test_without_grace_a_month_may_close_at_the_first_instant_of_the_next() -> None:
    assert close_is_due("2026-10", datetime(2026, 11, 1, 0, 0, tzinfo=HELSINKI), timedelta(0)) is True
    assert close_is_due("2026-10", datetime(2026, 10, 31, 23, 59, 59, tzinfo=HELSINKI), timedelta(0)) is False


def test_an_event_stamped_more_than_a_day_ahead_of_now_is_implausible() -> None:
    now = datetime(2026, 11, 20, 12, 0, tzinfo=HELSINKI)
    assert is_implausible_future(now + timedelta(days=1), now) is False
    assert is_implausible_future(now + timedelta(days=1, microseconds=1), now) is True
    assert is_implausible_future(now - timedelta(days=400), now) is False


# --- adjustments -----------------------------------------------------------------------------------


def test_usage_minus_gives_the_signed_change_per_figure_and_drops_unchanged_products() -> None:
    new = Usage(
        vouchers=13,
        payees=2,
        einvoices_sent=4,
        einvoices_received=1,
        billable_users=3,
        signatures=5,
        billable_hours={"CONSULT": Decimal("7.5"), "TRAINING": Decimal("2"), "AUDIT": Decimal("1.25")},
    )
    old = Usage(
        vouchers=10,
        payees=3,
        einvoices_sent=4,
        einvoices_received=0,
        billable_users=1,
        signatures=7,
        billable_hours={"CONSULT": Decimal("7.5"), "TRAINING": Decimal("3.5"), "SUPPORT": Decimal("4")},
    )
    change = new.minus(old)
    assert change == Usage(
        vouchers=3,
        payees=-1,
        einvoices_sent=0,
        einvoices_received=1,
        billable_users=2,
        signatures=-2,
        billable_hours={"AUDIT": Decimal("1.25"), "SUPPORT": Decimal("-4"), "TRAINING": Decimal("-1.5")},
    )
    assert list(change.billable_hours) == ["AUDIT", "SUPPORT", "TRAINING"]
    assert change.is_zero() is False


def test_usage_minus_itself_is_zero() -> None:
    usage = Usage(vouchers=4, payees=1, billable_hours={"CONSULT": Decimal("7.5")})
    assert usage.minus(usage) == Usage()
    assert usage.minus(usage).is_zero() is True
    assert Usage().minus(usage) == Usage(vouchers=-4, payees=-1, billable_hours={"CONSULT": Decimal("-7.5")})
