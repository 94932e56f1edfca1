"""Contract lifecycle rules: who may ask (B-25), when changes take effect (B-26), termination (B-27), B-28, B-29."""

from __future__ import annotations

import datetime as dt

import pytest

from billing_contracts.contracts import ApprovingFirm, PackageChangeKind, PayerKind
from invoicing.calendar import HELSINKI, YearMonth
from invoicing.contracts.domain import (
    ChangeRefusedError,
    ContractStatus,
    EffectiveTerms,
    FirmApproval,
    PendingFirmChange,
    Requester,
    TermChange,
    accounting_firm_change,
    check_name_change,
    check_payer,
    check_requester,
    completed_firm_change,
    effective_month,
    initial_change,
    package_change,
    record_firm_approval,
    status_on,
    termination,
    terms_in_effect,
)
from invoicing.prices.domain import PackageCode

COMPANY = "2077474-0"
FIRM_A = "1234567-1"
FIRM_B = "7654321-2"


def helsinki(y: int, m: int, d: int, hh: int = 12, mm: int = 0, ss: int = 0, us: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, ss, us, tzinfo=HELSINKI)


def kevyt(*, firm: str | None = "firm-a", firm_business_id: str | None = FIRM_A) -> EffectiveTerms:
    return EffectiveTerms(
        package=PackageCode.KEVYT,
        accounting_firm_id=firm,
        accounting_firm_business_id=firm_business_id,
        payer_kind=PayerKind.COMPANY,
        payer_id=COMPANY,
    )


def tallennus(firm: str = "firm-a", firm_business_id: str = FIRM_A) -> EffectiveTerms:
    return EffectiveTerms(
        package=PackageCode.TALLENNUS,
        accounting_firm_id=firm,
        accounting_firm_business_id=firm_business_id,
        payer_kind=PayerKind.ACCOUNTING_FIRM,
        payer_id=firm_business_id,
    )


SIGNED_AT = helsinki(2026, 1, 5)


def package_request(
    current: EffectiveTerms,
    new_package: PackageCode,
    *,
    at: dt.datetime,
    kind: PackageChangeKind = PackageChangeKind.PACKAGE_SIZE,
    end_date: dt.date | None = None,
) -> TermChange:
    """`package_change` for COMPANY's contract: a package-size change unless `kind` says otherwise."""
    return package_change(
        current, kind=kind, new_package=new_package, requested_at=at, business_id=COMPANY, end_date=end_date
    )


# ---------------------------------------------------------------- B-25


@pytest.mark.parametrize(
    "requester",
    [
        Requester("Maija", role="main_user"),
        Requester("Maija", role="MAIN_USER"),
        Requester("Kalle", role="custom", has_basic_info_and_user_rights=True),
        Requester("Sirpa", is_signatory=True),
        Requester("Sirpa", role="bookkeeper", is_signatory=True),
    ],
)
def test_a_main_user_a_custom_user_with_the_rights_or_a_signatory_may_request_changes(
    requester: Requester,
) -> None:
    check_requester(requester)  # B-25: does not raise


@pytest.mark.parametrize(
    ("requester", "why"),
    [
        (Requester("Kalle", role="custom"), "custom role without rights"),
        (Requester("Ville", role="bookkeeper"), "role 'bookkeeper'"),
        (Requester("Anon"), "no role"),
    ],
)
def test_anyone_else_is_refused_under_b25_with_a_reason_naming_them(requester: Requester, why: str) -> None:
    with pytest.raises(ChangeRefusedError) as refused:
        check_requester(requester)
    assert refused.value.rule == "B-25"
    assert requester.person_name in refused.value.reason
    assert why in refused.value.reason


# ---------------------------------------------------------------- B-26


@pytest.mark.parametrize(
    ("received", "month"),
    [
        (helsinki(2026, 3, 1, 0, 0), YearMonth(2026, 3)),
        (helsinki(2026, 3, 15, 23, 59, 59, 999999), YearMonth(2026, 3)),
        (helsinki(2026, 3, 16, 0, 0), YearMonth(2026, 4)),
        (helsinki(2026, 12, 16, 0, 0), YearMonth(2027, 1)),
        (helsinki(2026, 12, 31, 23, 59), YearMonth(2027, 1)),
    ],
)
def test_a_change_received_on_day_1_to_15_counts_from_that_month_and_from_the_16th_from_the_next(
    received: dt.datetime, month: YearMonth
) -> None:
    assert effective_month(received) == month


def test_the_cut_off_is_midnight_in_helsinki_not_in_utc() -> None:
    # 15 March 23:30 UTC is already 16 March 01:30 in Helsinki (UTC+2): next month.
    assert effective_month(dt.datetime(2026, 3, 15, 23, 30, tzinfo=dt.UTC)) == YearMonth(2026, 4)
    # 15 March 21:59:59 UTC is 15 March 23:59:59 in Helsinki: this month.
    assert effective_month(dt.datetime(2026, 3, 15, 21, 59, 59, tzinfo=dt.UTC)) == YearMonth(2026, 3)
    # In summer time (UTC+3) the boundary is 21:00 UTC.
    assert effective_month(dt.datetime(2026, 6, 15, 20, 59, 59, tzinfo=dt.UTC)) == YearMonth(2026, 6)
    assert effective_month(dt.datetime(2026, 6, 15, 21, 0, tzinfo=dt.UTC)) == YearMonth(2026, 7)


def test_a_naive_timestamp_is_refused_rather_than_guessed() -> None:
    with pytest.raises(ValueError, match="naive"):
        effective_month(dt.datetime(2026, 3, 15, 12, 0))  # noqa: DTZ001


def test_a_package_size_change_on_the_15th_takes_effect_from_that_month() -> None:
    change = package_request(kevyt(), PackageCode.PERUS, at=helsinki(2026, 3, 15, 23, 59))
    assert (change.effective_from, change.package, change.payer_kind) == (
        YearMonth(2026, 3),
        PackageCode.PERUS,
        None,
    )


def test_a_package_size_change_on_the_16th_takes_effect_from_the_next_month() -> None:
    change = package_request(kevyt(), PackageCode.PERUS, at=helsinki(2026, 3, 16, 0, 0))
    assert change.effective_from == YearMonth(2026, 4)


def test_a_month_is_billed_with_the_package_in_effect_for_it_without_proration() -> None:
    signed = initial_change(kevyt(), signed_at=SIGNED_AT)
    on_16th = package_request(kevyt(), PackageCode.LAAJA, at=helsinki(2026, 3, 16, 0, 0))
    history = [signed, on_16th]
    assert terms_in_effect(history, YearMonth(2026, 2)).package is PackageCode.KEVYT
    assert terms_in_effect(history, YearMonth(2026, 3)).package is PackageCode.KEVYT
    assert terms_in_effect(history, YearMonth(2026, 4)).package is PackageCode.LAAJA
    assert terms_in_effect(history, YearMonth(2027, 1)).package is PackageCode.LAAJA


def test_the_later_request_wins_within_a_month_whatever_order_they_are_recorded_in() -> None:
    signed = initial_change(kevyt(), signed_at=SIGNED_AT)
    first = TermChange(YearMonth(2026, 4), helsinki(2026, 3, 20), seq=9, package=PackageCode.PERUS)
    second = TermChange(YearMonth(2026, 4), helsinki(2026, 4, 2), seq=2, package=PackageCode.LAAJA)
    for history in ([signed, first, second], [second, first, signed]):
        assert terms_in_effect(history, YearMonth(2026, 4)).package is PackageCode.LAAJA


def test_a_late_recorded_request_for_an_earlier_month_does_not_override_a_later_months_change() -> None:
    signed = initial_change(kevyt(), signed_at=SIGNED_AT)
    april = TermChange(YearMonth(2026, 4), helsinki(2026, 3, 20), seq=1, package=PackageCode.PERUS)
    march_recorded_late = TermChange(
        YearMonth(2026, 3), helsinki(2026, 3, 10), seq=2, package=PackageCode.LAAJA
    )
    history = [signed, april, march_recorded_late]
    assert terms_in_effect(history, YearMonth(2026, 3)).package is PackageCode.LAAJA
    assert terms_in_effect(history, YearMonth(2026, 4)).package is PackageCode.PERUS


def test_changes_requested_before_the_production_month_still_apply_from_their_month() -> None:
    signed = initial_change(kevyt(), signed_at=SIGNED_AT)  # production far ahead, e.g. June
    change = TermChange(YearMonth(2026, 2), helsinki(2026, 1, 20), seq=1, package=PackageCode.PERUS)
    assert terms_in_effect([signed, change], YearMonth(2026, 6)).package is PackageCode.PERUS


def test_a_package_change_to_the_package_already_in_effect_is_refused() -> None:
    with pytest.raises(ChangeRefusedError, match="already kevyt") as refused:
        package_request(kevyt(), PackageCode.KEVYT, at=helsinki(2026, 3, 2))
    assert refused.value.rule == "B-26"


@pytest.mark.parametrize(
    ("current", "new"),
    [(tallennus(), PackageCode.KEVYT), (kevyt(), PackageCode.ALLEKIRJOITUS)],
    ids=["tallennus-to-kevyt", "kevyt-to-allekirjoitus"],
)
def test_a_package_size_change_does_not_move_tallennus_or_allekirjoitus(
    current: EffectiveTerms, new: PackageCode
) -> None:
    with pytest.raises(ChangeRefusedError, match="package-size change"):
        package_request(current, new, at=helsinki(2026, 3, 2))


def test_a_tallennus_to_taloushallinto_conversion_moves_the_payer_to_the_company() -> None:
    change = package_request(
        tallennus(),
        PackageCode.PERUS,
        at=helsinki(2026, 5, 16, 0, 0),
        kind=PackageChangeKind.TALLENNUS_TO_TALOUSHALLINTO,
    )
    history = [initial_change(tallennus(), signed_at=SIGNED_AT), change]
    may, june = terms_in_effect(history, YearMonth(2026, 5)), terms_in_effect(history, YearMonth(2026, 6))
    assert (may.package, may.payer_kind, may.payer_id) == (
        PackageCode.TALLENNUS,
        PayerKind.ACCOUNTING_FIRM,
        FIRM_A,
    )
    assert (june.package, june.payer_kind, june.payer_id) == (PackageCode.PERUS, PayerKind.COMPANY, COMPANY)
    assert june.accounting_firm_id == "firm-a"  # the firm still keeps the books


@pytest.mark.parametrize(
    ("current", "new", "why"),
    [
        (kevyt(), PackageCode.PERUS, "only a Tallennus environment converts"),
        (tallennus(), PackageCode.SOLO, "Taloushallinto version, not to solo"),
    ],
    ids=["from-kevyt", "to-solo"],
)
def test_only_tallennus_converts_to_taloushallinto_and_only_to_a_taloushallinto_version(
    current: EffectiveTerms, new: PackageCode, why: str
) -> None:
    with pytest.raises(ChangeRefusedError, match=why):
        package_request(
            current, new, at=helsinki(2026, 5, 2), kind=PackageChangeKind.TALLENNUS_TO_TALOUSHALLINTO
        )


def test_a_move_into_tallennus_is_paid_by_the_accounting_firm_and_needs_one() -> None:
    change = package_request(
        kevyt(), PackageCode.TALLENNUS, at=helsinki(2026, 5, 2), kind=PackageChangeKind.TALLENNUS_PACKAGE
    )
    assert (change.package, change.payer_kind, change.payer_id) == (
        PackageCode.TALLENNUS,
        PayerKind.ACCOUNTING_FIRM,
        FIRM_A,
    )
    with pytest.raises(ChangeRefusedError) as refused:
        package_request(
            kevyt(firm=None, firm_business_id=None),
            PackageCode.TALLENNUS,
            at=helsinki(2026, 5, 2),
            kind=PackageChangeKind.TALLENNUS_PACKAGE,
        )
    assert refused.value.rule == "B-17"


def test_an_accounting_firm_change_follows_the_cut_off_and_a_paying_firm_is_replaced_as_payer() -> None:
    firm_paid = EffectiveTerms(PackageCode.KEVYT, "firm-a", FIRM_A, PayerKind.ACCOUNTING_FIRM, FIRM_A)
    change = accounting_firm_change(
        firm_paid,
        new_firm_id="firm-b",
        new_firm_business_id=FIRM_B,
        requested_at=helsinki(2026, 9, 16, 0, 0),
        end_date=None,
    )
    history = [initial_change(firm_paid, signed_at=SIGNED_AT), change]
    assert terms_in_effect(history, YearMonth(2026, 9)).accounting_firm_id == "firm-a"
    october = terms_in_effect(history, YearMonth(2026, 10))
    assert (october.accounting_firm_id, october.payer_id) == ("firm-b", FIRM_B)


def test_a_company_paid_contract_keeps_its_payer_when_the_firm_changes() -> None:
    change = accounting_firm_change(
        kevyt(),
        new_firm_id="firm-b",
        new_firm_business_id=None,
        requested_at=helsinki(2026, 9, 1),
        end_date=None,
    )
    assert (change.payer_kind, change.payer_id, change.effective_from) == (None, None, YearMonth(2026, 9))
    after = terms_in_effect([initial_change(kevyt(), signed_at=SIGNED_AT), change], YearMonth(2026, 9))
    assert (after.accounting_firm_id, after.accounting_firm_business_id, after.payer_id) == (
        "firm-b",
        None,
        COMPANY,
    )


def test_a_tallennus_environment_never_changes_firm_by_a_plain_request() -> None:
    with pytest.raises(ChangeRefusedError, match="approvals of both") as refused:
        accounting_firm_change(
            tallennus(),
            new_firm_id="firm-b",
            new_firm_business_id=FIRM_B,
            requested_at=helsinki(2026, 9, 1),
            end_date=None,
        )
    assert refused.value.rule == "B-29"


def test_a_change_taking_effect_after_the_contract_ends_is_refused() -> None:
    with pytest.raises(ChangeRefusedError, match="ends on 2026-04-30") as refused:
        package_request(kevyt(), PackageCode.PERUS, at=helsinki(2026, 4, 20), end_date=dt.date(2026, 4, 30))
    assert refused.value.rule == "B-27"


# ---------------------------------------------------------------- B-17


def test_a_tallennus_environment_must_be_paid_by_its_accounting_firm() -> None:
    with pytest.raises(ChangeRefusedError, match="paid by its accounting firm"):
        check_payer(
            EffectiveTerms(PackageCode.TALLENNUS, "firm-a", FIRM_A, PayerKind.COMPANY, COMPANY),
            business_id=COMPANY,
        )
    check_payer(tallennus(), business_id=COMPANY)


# ---------------------------------------------------------------- B-27


@pytest.mark.parametrize(
    ("notice", "ends", "kept_until"),
    [
        (helsinki(2026, 3, 10), dt.date(2026, 4, 30), dt.date(2026, 7, 31)),  # the SPEC's example
        (helsinki(2026, 3, 1, 0, 0), dt.date(2026, 4, 30), dt.date(2026, 7, 31)),
        (helsinki(2026, 3, 31, 23, 59), dt.date(2026, 4, 30), dt.date(2026, 7, 31)),
        (helsinki(2026, 1, 31), dt.date(2026, 2, 28), dt.date(2026, 5, 31)),
        (helsinki(2027, 12, 15), dt.date(2028, 1, 31), dt.date(2028, 4, 30)),
        (helsinki(2026, 11, 30), dt.date(2026, 12, 31), dt.date(2027, 3, 31)),
    ],
)
def test_notice_ends_the_contract_at_the_end_of_the_month_its_month_of_notice_runs_out_and_data_is_kept_three_months(
    notice: dt.datetime, ends: dt.date, kept_until: dt.date
) -> None:
    result = termination(notice)
    assert (result.end_date, result.data_retained_until) == (ends, kept_until)


def test_the_day_of_notice_is_the_helsinki_day() -> None:
    # 31 March 22:30 UTC is 1 April 01:30 in Helsinki: the notice runs out in May.
    assert termination(dt.datetime(2026, 3, 31, 22, 30, tzinfo=dt.UTC)).end_date == dt.date(2026, 5, 31)
    assert termination(dt.datetime(2026, 3, 31, 20, 59, tzinfo=dt.UTC)).end_date == dt.date(2026, 4, 30)


def test_the_status_follows_the_production_date_the_notice_and_the_end() -> None:
    production = dt.date(2026, 3, 1)
    assert status_on(dt.date(2026, 2, 28), production_date=production, end_date=None) is ContractStatus.SIGNED
    assert status_on(dt.date(2026, 3, 1), production_date=production, end_date=None) is ContractStatus.ACTIVE
    end = dt.date(2026, 4, 30)
    assert status_on(dt.date(2026, 4, 30), production_date=production, end_date=end) is (
        ContractStatus.TERMINATION_NOTICED
    )
    assert (
        status_on(dt.date(2026, 5, 1), production_date=production, end_date=end) is ContractStatus.TERMINATED
    )


# ---------------------------------------------------------------- B-29


def approval(side: ApprovingFirm, at: dt.datetime, package: PackageCode | None = None) -> FirmApproval:
    return FirmApproval(side=side, approved_at=at, approved_by="Signatory", new_package=package)


def record(
    pending: PendingFirmChange | None,
    given: FirmApproval,
    *,
    current: EffectiveTerms | None = None,
    old_firm_id: str = "firm-a",
    new_firm_id: str = "firm-b",
) -> PendingFirmChange:
    """`record_firm_approval` for a Tallennus environment moving from firm-a to firm-b unless told otherwise."""
    return record_firm_approval(
        pending,
        tallennus() if current is None else current,
        old_firm_id=old_firm_id,
        new_firm_id=new_firm_id,
        approval=given,
    )


def test_a_tallennus_firm_change_waits_for_both_approvals() -> None:
    pending = record(None, approval(ApprovingFirm.OLD, helsinki(2026, 5, 10)))
    assert not pending.is_complete
    with pytest.raises(ValueError, match="both approvals"):
        completed_firm_change(pending, end_date=None, new_firm_business_id=FIRM_B)
    pending = record(pending, approval(ApprovingFirm.NEW, helsinki(2026, 5, 20), PackageCode.TALLENNUS))
    assert pending.is_complete


def test_a_completed_tallennus_firm_change_takes_effect_by_the_cut_off_of_the_later_approval() -> None:
    old_on_10th = approval(ApprovingFirm.OLD, helsinki(2026, 5, 10))
    new_on_16th = approval(ApprovingFirm.NEW, helsinki(2026, 5, 16, 0, 0), PackageCode.TALLENNUS)
    pending = record(record(None, new_on_16th), old_on_10th)
    change = completed_firm_change(pending, end_date=None, new_firm_business_id=FIRM_B)
    history = [initial_change(tallennus(), signed_at=SIGNED_AT), change]
    may, june = terms_in_effect(history, YearMonth(2026, 5)), terms_in_effect(history, YearMonth(2026, 6))
    assert (may.accounting_firm_id, may.payer_id) == ("firm-a", FIRM_A)
    assert (june.accounting_firm_id, june.payer_id, june.payer_kind) == (
        "firm-b",
        FIRM_B,
        PayerKind.ACCOUNTING_FIRM,
    )


def test_both_approvals_by_the_15th_move_the_environment_from_that_month() -> None:
    pending = record(
        record(None, approval(ApprovingFirm.OLD, helsinki(2026, 5, 3))),
        approval(ApprovingFirm.NEW, helsinki(2026, 5, 15, 23, 59), PackageCode.TALLENNUS),
    )
    assert completed_firm_change(
        pending, end_date=None, new_firm_business_id=FIRM_B
    ).effective_from == YearMonth(2026, 5)


@pytest.mark.parametrize(
    ("current", "old_firm_id", "why"),
    [
        (tallennus(), "firm-x", "firm is firm-a, not firm-x"),
        (kevyt(), "firm-a", "only a Tallennus environment"),
    ],
    ids=["wrong-old-firm", "not-tallennus"],
)
def test_an_approval_naming_the_wrong_old_firm_or_a_non_tallennus_environment_is_refused(
    current: EffectiveTerms, old_firm_id: str, why: str
) -> None:
    with pytest.raises(ChangeRefusedError, match=why):
        record(
            None, approval(ApprovingFirm.OLD, helsinki(2026, 5, 3)), current=current, old_firm_id=old_firm_id
        )


def test_the_new_firm_must_name_its_package_and_be_known_by_business_id() -> None:
    with pytest.raises(ChangeRefusedError, match="name the package"):
        record(None, approval(ApprovingFirm.NEW, helsinki(2026, 5, 3)))
    pending = record(
        record(None, approval(ApprovingFirm.OLD, helsinki(2026, 5, 3))),
        approval(ApprovingFirm.NEW, helsinki(2026, 5, 4), PackageCode.TALLENNUS),
    )
    with pytest.raises(ChangeRefusedError) as refused:
        completed_firm_change(pending, end_date=None, new_firm_business_id=None)
    assert refused.value.rule == "B-17"


def test_an_approval_for_another_new_firm_starts_over() -> None:
    first = record(None, approval(ApprovingFirm.OLD, helsinki(2026, 5, 3)))
    other = record(
        first, approval(ApprovingFirm.NEW, helsinki(2026, 5, 4), PackageCode.TALLENNUS), new_firm_id="firm-c"
    )
    assert (other.new_firm_id, other.old_approval, other.is_complete) == ("firm-c", None, False)


# ---------------------------------------------------------------- B-22


def test_a_name_change_notice_must_name_the_current_invoice_name_as_the_old_one() -> None:
    check_name_change(current_name="Vanha Oy", old_name="Vanha Oy", new_name="Uusi Oy")
    with pytest.raises(ChangeRefusedError, match="invoices carry 'Vanha Oy'") as refused:
        check_name_change(current_name="Vanha Oy", old_name="Joku Muu Oy", new_name="Uusi Oy")
    assert refused.value.rule == "B-22"
