"""The contract aggregate and the billing run's period: pure rules, no database."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from billing_contracts.contracts import BillingChannel, ContractSignedV1, PayerKind
from billing_contracts.examples import example_of
from invoicing.billing.domain import SettlementKind
from invoicing.billing.run import (
    AdvanceBillingError,
    NotABillingDayError,
    RunTally,
    billing_period,
    run_period,
)
from invoicing.calendar import YearMonth
from invoicing.contracts.contract import check_signing, signed_contract
from invoicing.contracts.domain import ChangeRefusedError, ContractStatus, EffectiveTerms, termination
from invoicing.prices.domain import PackageCode

NOW = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)


def signed(**changes: object) -> ContractSignedV1:
    command = example_of(ContractSignedV1)
    assert isinstance(command, ContractSignedV1)
    return command.model_copy(update=changes)


def test_a_signed_contract_is_active_from_its_production_date_and_paid_by_its_payer() -> None:
    c = signed(production_date=dt.date(2026, 11, 1))
    contract = signed_contract(c, today=dt.date(2026, 11, 2), now=NOW)
    assert contract.contract_id == f"C-{c.environment_id}"
    assert contract.status is ContractStatus.ACTIVE
    assert contract.payer_id == (
        c.business_id if c.payer is PayerKind.COMPANY else c.accounting_firm_business_id
    )
    future = signed_contract(
        signed(production_date=dt.date(2026, 12, 1)), today=dt.date(2026, 11, 2), now=NOW
    )
    assert future.status is ContractStatus.SIGNED


def test_b26_b27_the_contract_takes_the_terms_and_status_of_today() -> None:
    contract = signed_contract(
        signed(production_date=dt.date(2026, 1, 1)), today=dt.date(2026, 11, 2), now=NOW
    )
    ends = termination(dt.datetime(2026, 11, 10, 9, tzinfo=dt.UTC))
    noticed = contract.changed(**contract.ending_values(ends, reason="moving"))
    later = NOW + dt.timedelta(days=60)
    terms = dataclasses.replace(contract.terms, package=PackageCode.PERUS)
    after = noticed.in_effect(terms, today=dt.date(2027, 1, 1), now=later)
    assert (after.package, after.status, after.updated_at) == (
        PackageCode.PERUS,
        ContractStatus.TERMINATED,
        later,
    )
    assert set(contract.differences(after)) >= {"package", "status", "end_date", "updated_at"}
    with pytest.raises(ChangeRefusedError, match="ended on 2026-12-31") as refused:
        after.refuse_if_ended(dt.date(2027, 1, 1))
    assert refused.value.rule == "B-27"


def test_the_vocabulary_is_typed_whether_set_as_text_or_as_enum() -> None:
    contract = signed_contract(signed(), today=dt.date(2026, 11, 2), now=NOW)
    assert contract.changed(billing_channel="paper").billing_channel is BillingChannel.PAPER
    assert isinstance(contract.terms, EffectiveTerms)


def test_b28_a_successor_keeps_an_e_invoice_channel_only_with_an_address_for_its_business_id() -> None:
    contract = signed_contract(signed(), today=dt.date(2026, 11, 2), now=NOW)
    einvoicing = contract.changed(billing_channel=BillingChannel.EINVOICE, billing_email=None)
    assert einvoicing.successor_channel(None) == (BillingChannel.PAPER, None)
    with_email = einvoicing.changed(billing_email="laskut@example.fi")
    assert with_email.successor_channel(None) == (BillingChannel.EMAIL, None)
    address = {"address": "003712345678", "operator": "OKOYFIHH"}
    assert with_email.successor_channel(address) == (BillingChannel.EINVOICE, address)


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"business_id": "2077474-1"}, "B-28"),
        ({"billing_channel": BillingChannel.EMAIL, "billing_email": None}, "B-21"),
        ({"billing_channel": BillingChannel.EINVOICE, "einvoice_address": None}, "B-20"),
    ],
)
def test_a_signing_that_breaks_a_rule_is_refused_with_it(changes: dict[str, object], rule: str) -> None:
    with pytest.raises(ChangeRefusedError) as refused:
        check_signing(signed(**changes))
    assert refused.value.rule == rule


def test_b03_b04_a_run_period_is_computed_once_from_the_run_date() -> None:
    period = run_period(dt.date(2026, 11, 2), today=dt.date(2026, 11, 2))
    assert (period.month, period.run_id) == (YearMonth(2026, 10), "run-2026-10")
    with pytest.raises(NotABillingDayError, match="B-03"):
        billing_period(dt.date(2026, 11, 1))  # a Sunday, before November's first business day
    with pytest.raises(AdvanceBillingError, match="B-04"):
        run_period(dt.date(2026, 12, 1), today=dt.date(2026, 11, 2))


def test_one_tally_counts_batches_attempts_and_the_period() -> None:
    tally = RunTally()
    for kind in (SettlementKind.ISSUE, SettlementKind.ISSUE, SettlementKind.HOLD, SettlementKind.ZERO):
        tally.add(kind)
    tally += RunTally(nothing=2)
    assert (tally.issued, tally.held, tally.zero, tally.nothing, tally.decided) == (2, 1, 1, 2, 6)
