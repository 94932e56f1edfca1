"""The partner program's pure rules: the P-02 table at every boundary, end customers (P-03), experts (P-04), changes (P-05, P-07)."""

from __future__ import annotations

import datetime as dt

import pytest

from billing_contracts.contracts import PackageCode
from billing_contracts.invoicing import ContractStatus
from billing_contracts.partners import ExamKind, ExpertSoftware, PartnerTier
from partners.domain import (
    AgreementEvent,
    AgreementFact,
    Counts,
    EnvironmentState,
    ExpertCounts,
    ExpertFact,
    ExpertFactKind,
    ProgramRefusedError,
    TierInMonth,
    agreement_in_force,
    check_expert_fact,
    end_customers_by_firm,
    expert_counts,
    firm_of,
    in_program_during,
    is_end_customer,
    newest_states,
    qualification,
    shortfall,
    standing_of,
    tier_change,
    tier_for,
    tier_in_effect,
)

UTC = dt.UTC
TODAY = dt.date(2026, 11, 20)
AT = dt.datetime(2026, 11, 20, 9, tzinfo=UTC)
PROCOUNTOR = ExpertSoftware.PROCOUNTOR
TIKON = ExpertSoftware.TIKON_NETTIKON
SIGNED = [AgreementFact(AgreementEvent.SIGNED, dt.date(2026, 1, 15), AT)]


def counts(end_customers: int, certified: int = 0, authorized: int = 0) -> Counts:
    return Counts(end_customers, certified, authorized)


# --- P-02: the table at every boundary --------------------------------------------------------------


@pytest.mark.parametrize(
    ("end_customers", "certified", "authorized", "tier"),
    [
        (0, 0, 0, PartnerTier.PARTNER),
        (4, 0, 0, PartnerTier.PARTNER),
        (5, 0, 0, PartnerTier.SILVER),
        (24, 0, 0, PartnerTier.SILVER),
        (24, 1, 0, PartnerTier.SILVER),  # the expert is there, the 25th customer is not
        (25, 0, 0, PartnerTier.SILVER),  # the 25th customer is there, the expert is not
        (25, 1, 0, PartnerTier.GOLD),
        (99, 3, 1, PartnerTier.GOLD),  # one customer short of Platinum
        (100, 2, 1, PartnerTier.GOLD),  # two certified (the authorized one among them) of three
        (100, 3, 0, PartnerTier.GOLD),  # no authorized expert
        (100, 2, 0, PartnerTier.GOLD),
        (100, 3, 1, PartnerTier.PLATINUM),
        (1000, 50, 10, PartnerTier.PLATINUM),
        (4, 10, 5, PartnerTier.PARTNER),  # experts do not make up for end customers
    ],
)
def test_the_tier_is_the_highest_whose_requirements_all_hold(
    end_customers: int, certified: int, authorized: int, tier: PartnerTier
) -> None:
    assert tier_for(True, counts(end_customers, certified, authorized)) is tier


@pytest.mark.parametrize("figures", [(0, 0, 0), (5, 0, 0), (25, 1, 0), (100, 3, 1), (10_000, 100, 100)])
def test_a_firm_without_an_agreement_is_never_in_the_program_whatever_its_counts(
    figures: tuple[int, int, int],
) -> None:
    assert tier_for(False, counts(*figures)) is None


def test_what_a_firm_lacks_for_a_tier_is_said_in_words() -> None:
    assert shortfall(PartnerTier.GOLD, counts(24, 0)) == [
        "1 more end customer (≥ 25)",
        "1 more certified expert (≥ 1)",
    ]
    assert shortfall(PartnerTier.PLATINUM, counts(100, 3, 1)) == []


# --- P-04: certified, authorized, and an authorized expert counting as certified ---------------------


def fact(
    kind: ExpertFactKind,
    on: dt.date,
    *,
    expert: str = "p1",
    firm: str = "firm-a",
    exam: ExamKind | None = None,
    software: ExpertSoftware | None = PROCOUNTOR,
    at: dt.datetime = AT,
) -> ExpertFact:
    if kind in (ExpertFactKind.JOINED, ExpertFactKind.LEFT):
        software = None
    return ExpertFact(expert, firm, kind, on, at, software=software, exam=exam)


def passed(exam: ExamKind, on: dt.date, **kw: object) -> ExpertFact:
    return fact(ExpertFactKind.PASSED, on, exam=exam, **kw)  # type: ignore[arg-type]


CERT, ONLINE, IN_PERSON = (
    ExamKind.CERTIFICATION,
    ExamKind.AUTHORIZATION_ONLINE,
    ExamKind.AUTHORIZATION_IN_PERSON,
)


def test_an_authorized_expert_counts_as_certified_and_authorized() -> None:
    person = [passed(ONLINE, dt.date(2026, 3, 1)), passed(IN_PERSON, dt.date(2026, 4, 1))]
    q = qualification(person, TODAY)
    assert (q.is_certified, q.is_authorized) == (True, True)
    assert expert_counts("firm-a", {"p1": person}, TODAY) == ExpertCounts(
        1, 1, {PROCOUNTOR: 1}, {PROCOUNTOR: 1}
    )
    standing = standing_of(
        agreement=SIGNED, experts=expert_counts("firm-a", {"p1": person}, TODAY), end_customers=25, on=TODAY
    )
    assert standing.tier is PartnerTier.GOLD


def test_the_online_part_alone_is_not_authorization() -> None:
    q = qualification([passed(ONLINE, dt.date(2026, 3, 1))], TODAY)
    assert (q.is_certified, q.is_authorized) == (False, False)


def test_an_in_person_part_without_the_online_part_is_refused_with_the_reason() -> None:
    with pytest.raises(
        ProgramRefusedError, match="in-person part can be taken only after the online part"
    ) as e:
        check_expert_fact(passed(IN_PERSON, dt.date(2026, 4, 1)), [])
    assert e.value.rule == "P-04"


def test_an_in_person_part_before_the_online_part_is_refused() -> None:
    with pytest.raises(ProgramRefusedError, match="no passed online part"):
        check_expert_fact(passed(IN_PERSON, dt.date(2026, 2, 1)), [passed(ONLINE, dt.date(2026, 3, 1))])


def test_the_online_part_of_another_software_does_not_open_the_in_person_part() -> None:
    with pytest.raises(ProgramRefusedError):
        check_expert_fact(
            passed(IN_PERSON, dt.date(2026, 4, 1)), [passed(ONLINE, dt.date(2026, 3, 1), software=TIKON)]
        )


def test_a_person_certified_in_both_software_counts_once() -> None:
    person = [passed(CERT, dt.date(2026, 3, 1)), passed(CERT, dt.date(2026, 3, 2), software=TIKON)]
    assert expert_counts("firm-a", {"p1": person}, TODAY) == ExpertCounts(1, 0, {PROCOUNTOR: 1, TIKON: 1}, {})


def test_a_result_passed_after_today_does_not_count_yet() -> None:
    assert not qualification([passed(CERT, TODAY + dt.timedelta(days=1))], TODAY).is_certified


def test_a_withdrawn_result_no_longer_counts_but_a_retake_after_the_withdrawal_does() -> None:
    result = passed(CERT, dt.date(2026, 3, 1))
    withdrawal = fact(ExpertFactKind.WITHDRAWN, dt.date(2026, 5, 1), exam=CERT)
    assert not qualification([result, withdrawal], TODAY).is_certified
    assert not qualification([withdrawal, result], TODAY).is_certified  # withdrawal known first
    assert qualification([result, withdrawal, passed(CERT, dt.date(2026, 6, 1))], TODAY).is_certified


def test_withdrawing_the_online_part_ends_the_authorization_built_on_it() -> None:
    person = [
        passed(ONLINE, dt.date(2026, 3, 1)),
        passed(IN_PERSON, dt.date(2026, 4, 1)),
        fact(ExpertFactKind.WITHDRAWN, dt.date(2026, 5, 1), exam=ONLINE),
    ]
    assert not qualification(person, TODAY).is_authorized


# --- P-04 decisions: results belong to the person; leaving and moving ------------------------------


def test_a_person_who_left_no_longer_counts_for_the_firm() -> None:
    person = [passed(CERT, dt.date(2026, 3, 1)), fact(ExpertFactKind.LEFT, dt.date(2026, 10, 1))]
    assert firm_of(person, TODAY) is None
    assert expert_counts("firm-a", {"p1": person}, TODAY).certified == 0
    assert expert_counts("firm-a", {"p1": person}, dt.date(2026, 9, 30)).certified == 1


def test_a_person_who_moved_counts_for_the_new_firm_with_the_results_of_the_old_one() -> None:
    person = [
        passed(CERT, dt.date(2026, 3, 1), firm="firm-a"),
        fact(ExpertFactKind.JOINED, dt.date(2026, 10, 1), firm="firm-b"),
    ]
    assert firm_of(person, TODAY) == "firm-b"
    assert expert_counts("firm-a", {"p1": person}, TODAY).certified == 0
    assert expert_counts("firm-b", {"p1": person}, TODAY).certified == 1


def test_an_exam_result_for_another_firm_than_the_persons_is_refused() -> None:
    with pytest.raises(ProgramRefusedError, match="is for another firm") as e:
        check_expert_fact(
            passed(CERT, dt.date(2026, 5, 1), firm="firm-b"), [passed(CERT, dt.date(2026, 3, 1))]
        )
    assert e.value.rule == "P-04"


def test_an_exam_result_for_the_new_firm_after_a_move_is_accepted() -> None:
    person = [
        passed(CERT, dt.date(2026, 3, 1)),
        fact(ExpertFactKind.JOINED, dt.date(2026, 4, 1), firm="firm-b"),
    ]
    check_expert_fact(passed(ONLINE, dt.date(2026, 5, 1), firm="firm-b"), person)


def test_leaving_a_firm_the_person_does_not_work_for_is_refused() -> None:
    with pytest.raises(ProgramRefusedError, match="cannot leave firm-b"):
        check_expert_fact(
            fact(ExpertFactKind.LEFT, dt.date(2026, 5, 1), firm="firm-b"), [passed(CERT, dt.date(2026, 3, 1))]
        )


def test_leaving_and_joining_on_the_same_day_ends_at_the_new_firm_in_either_order() -> None:
    day = dt.date(2026, 10, 1)
    left = fact(ExpertFactKind.LEFT, day, firm="firm-a", at=AT)
    joined = fact(ExpertFactKind.JOINED, day, firm="firm-b", at=AT - dt.timedelta(hours=1))
    start = passed(CERT, dt.date(2026, 3, 1))
    assert firm_of([start, left, joined], TODAY) == firm_of([start, joined, left], TODAY) == "firm-b"


# --- P-02 agreement in force --------------------------------------------------------------------------


def test_the_agreement_is_in_force_from_its_signing_day_until_the_day_it_ends() -> None:
    facts = [
        AgreementFact(AgreementEvent.SIGNED, dt.date(2026, 2, 1), AT),
        AgreementFact(AgreementEvent.ENDED, dt.date(2026, 9, 1), AT),
    ]
    assert not agreement_in_force(facts, dt.date(2026, 1, 31))
    assert agreement_in_force(facts, dt.date(2026, 2, 1))
    assert agreement_in_force(facts, dt.date(2026, 8, 31))
    assert not agreement_in_force(facts, dt.date(2026, 9, 1))
    assert in_program_during(facts, "2026-09") is False
    assert in_program_during(facts, "2026-08") is True
    assert in_program_during(facts, "2026-02") is True
    assert in_program_during(facts, "2026-01") is False


def test_a_new_agreement_after_an_ended_one_brings_the_firm_back() -> None:
    facts = [
        AgreementFact(AgreementEvent.SIGNED, dt.date(2025, 2, 1), AT),
        AgreementFact(AgreementEvent.ENDED, dt.date(2026, 3, 1), AT),
        AgreementFact(AgreementEvent.SIGNED, dt.date(2026, 6, 10), AT),
    ]
    assert agreement_in_force(list(reversed(facts)), TODAY)
    assert not agreement_in_force(facts, dt.date(2026, 5, 1))
    assert in_program_during(facts, "2026-06")


# --- P-03 end customers ---------------------------------------------------------------------------------


def env(
    n: int,
    *,
    firm: str | None = "firm-a",
    status: ContractStatus = ContractStatus.ACTIVE,
    package: PackageCode = PackageCode.KEVYT,
    own_use: bool = False,
    at: dt.datetime = AT,
    successor: str | None = None,
) -> EnvironmentState:
    return EnvironmentState(f"env-{n}", f"c-{n}", firm, status, package, own_use, at, successor)


@pytest.mark.parametrize(
    ("status", "counts_"),
    [
        (ContractStatus.SIGNED, False),  # production not started
        (ContractStatus.ACTIVE, True),
        (ContractStatus.TERMINATION_NOTICED, True),  # runs to the contract's end (B-27)
        (ContractStatus.TERMINATED, False),
    ],
)
def test_only_environments_in_production_and_not_terminated_count(
    status: ContractStatus, counts_: bool
) -> None:
    assert is_end_customer(status, "firm-a", False, PackageCode.KEVYT) is counts_


@pytest.mark.parametrize("package", list(PackageCode))
def test_every_financial_package_counts_and_the_signature_service_alone_does_not(
    package: PackageCode,
) -> None:
    assert is_end_customer(ContractStatus.ACTIVE, "firm-a", False, package) is (
        package is not PackageCode.ALLEKIRJOITUS
    )


def test_the_firms_own_bookkeeping_is_not_an_end_customer() -> None:
    assert not is_end_customer(ContractStatus.ACTIVE, "firm-a", True, PackageCode.KEVYT)


def test_a_late_older_contract_state_changes_nothing() -> None:
    later = env(1, status=ContractStatus.TERMINATED, at=AT + dt.timedelta(days=1))
    earlier = env(1, status=ContractStatus.ACTIVE, at=AT)
    assert newest_states([later, earlier])["env-1"] is later
    assert end_customers_by_firm(newest_states([later, earlier])) == {}


def test_an_accounting_firm_change_moves_the_end_customer_between_the_counts() -> None:
    states = newest_states([env(1), env(2), env(1, firm="firm-b", at=AT + dt.timedelta(days=1))])
    assert end_customers_by_firm(states) == {"firm-a": 1, "firm-b": 1}


def test_a_business_id_change_counts_the_company_once_while_both_contracts_run() -> None:
    old = env(1, status=ContractStatus.TERMINATION_NOTICED, successor="c-2")
    new_signed = env(2, status=ContractStatus.SIGNED)
    assert end_customers_by_firm(newest_states([old, new_signed])) == {"firm-a": 1}
    new_active = env(2, status=ContractStatus.ACTIVE, at=AT + dt.timedelta(days=1))
    assert end_customers_by_firm(newest_states([old, new_signed, new_active])) == {"firm-a": 1}


# --- P-05, P-07: changes, reasons, the month they take effect ------------------------------------------


def test_entering_the_program_is_a_change_from_no_tier_effective_this_month() -> None:
    new = standing_of(agreement=SIGNED, experts=ExpertCounts(), end_customers=3, on=TODAY)
    change = tier_change(None, False, new, TODAY)
    assert change is not None
    assert (change.old_tier, change.new_tier, change.effective_month) == (
        None,
        PartnerTier.PARTNER,
        "2026-11",
    )
    assert "cooperation agreement in force" in change.reason


def test_rising_to_gold_says_what_meets_its_requirements() -> None:
    new = standing_of(
        agreement=SIGNED, experts=ExpertCounts(1, 0, {PROCOUNTOR: 1}, {}), end_customers=25, on=TODAY
    )
    change = tier_change(PartnerTier.SILVER, True, new, TODAY)
    assert change is not None
    assert (change.old_tier, change.new_tier) == (PartnerTier.SILVER, PartnerTier.GOLD)
    assert change.reason.startswith(
        "rose to Kulta / Gold: 25 end customers, 1 certified and 0 authorized experts"
    )


def test_falling_says_what_the_old_tier_needs() -> None:
    new = standing_of(agreement=SIGNED, experts=ExpertCounts(1, 0, {}, {}), end_customers=24, on=TODAY)
    change = tier_change(PartnerTier.GOLD, True, new, TODAY)
    assert change is not None
    assert change.new_tier is PartnerTier.SILVER
    assert "Kulta / Gold needs 1 more end customer (≥ 25)" in change.reason


def test_the_same_tier_with_other_counts_is_no_change() -> None:
    new = standing_of(agreement=SIGNED, experts=ExpertCounts(), end_customers=30, on=TODAY)
    assert tier_change(PartnerTier.SILVER, True, new, TODAY) is None


def test_an_ended_agreement_takes_the_firm_out_with_the_lowest_tier_for_tier_readers() -> None:
    ended = [*SIGNED, AgreementFact(AgreementEvent.ENDED, dt.date(2026, 11, 1), AT)]
    new = standing_of(agreement=ended, experts=ExpertCounts(), end_customers=40, on=TODAY)
    change = tier_change(PartnerTier.SILVER, True, new, TODAY)
    assert change is not None
    assert (change.new_tier, change.in_program) == (PartnerTier.PARTNER, False)
    assert tier_change(None, False, new, TODAY) is None  # never in: nothing to announce


def test_a_month_is_billed_with_the_last_change_effective_in_or_before_it() -> None:
    history = [
        TierInMonth("2026-09", AT - dt.timedelta(days=60), PartnerTier.SILVER, True),
        # Crossed the Gold boundary and back within November: the later change decides November.
        TierInMonth("2026-11", AT, PartnerTier.GOLD, True),
        TierInMonth("2026-11", AT + dt.timedelta(days=2), PartnerTier.SILVER, True),
    ]
    assert tier_in_effect(history, "2026-08") is None
    assert tier_in_effect(history, "2026-10").tier is PartnerTier.SILVER  # type: ignore[union-attr]
    assert tier_in_effect(list(reversed(history)), "2026-11").tier is PartnerTier.SILVER  # type: ignore[union-attr]
    assert tier_in_effect(history, "2027-01").tier is PartnerTier.SILVER  # type: ignore[union-attr]
