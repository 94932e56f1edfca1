"""The pure rules of procountor-sync: retries, the conflict rule, channels, totals, payments, webhooks."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from billing_contracts.contracts import BillingChannel
from billing_contracts.procountor import ProcountorPaymentStatus
from procountor_sync import domain
from procountor_sync.domain import Address, CustomerData, DeliveryPolicy, RetrySchedule, Totals
from procountor_sync.procountor_client import _retry_after_seconds

from ..builders import contract_changed, invoice

BASE = CustomerData(
    "Asiakas Oy",
    Address("Katu 1", "00100", "Helsinki"),
    BillingChannel.EINVOICE,
    "003712345671",
    "003721291126",
)
POLICY = DeliveryPolicy(seller_iban="FI2112345600000785", vat_status=1)


def test_the_retry_schedule_doubles_up_to_its_cap_and_never_gives_up() -> None:
    schedule = RetrySchedule(initial=timedelta(seconds=5), maximum=timedelta(minutes=5))

    waits = [schedule.delay(n, jitter=1.0) for n in (1, 2, 3, 7, 8, 50, 10_000)]

    assert waits[:3] == [timedelta(seconds=5), timedelta(seconds=10), timedelta(seconds=20)]
    assert waits[3:] == [timedelta(minutes=5)] * 4  # capped, still retried (issue 11: no "failed" after 8)
    assert schedule.delay(3, jitter=0.0) == timedelta(seconds=10)  # jitter spreads replicas within [½, 1]


def test_retry_after_from_procountor_is_a_floor_even_above_the_cap() -> None:
    schedule = RetrySchedule(initial=timedelta(seconds=1), maximum=timedelta(seconds=10))

    assert schedule.delay(1, jitter=1.0, retry_after=timedelta(seconds=30)) == timedelta(seconds=30)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ("Wed, 02 Dec 2026 06:00:30 GMT", 30.0),
        ("Wed, 02 Dec 2026 05:59:00 GMT", 0.0),
        ("soon", None),
    ],
)
def test_retry_after_is_read_in_both_of_its_forms(header: str, seconds: float | None) -> None:
    now = dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.UTC).timestamp()
    response = httpx.Response(429, headers={"Retry-After": header})

    assert _retry_after_seconds(response, now) == seconds


def test_a_change_on_one_side_only_takes_that_sides_value() -> None:
    ours = replace(BASE, email="uusi@example.fi")
    theirs = replace(BASE, address=Address("Uusikatu 5", "33100", "Tampere"))

    merge = domain.merge_customer(BASE, ours, theirs)

    assert merge.result == replace(
        BASE, email="uusi@example.fi", address=Address("Uusikatu 5", "33100", "Tampere")
    )
    assert merge.push  # our e-mail goes to Procountor
    assert merge.procountor_changed == {"address"}  # Procountor's address goes to invoicing (B-22)
    assert not merge.conflicts


def test_when_both_sides_change_the_same_field_procountor_wins() -> None:
    ours = replace(BASE, address=Address("Meidän 1", "00100", "Helsinki"))
    theirs = replace(BASE, address=Address("Heidän 2", "00100", "Helsinki"))

    merge = domain.merge_customer(BASE, ours, theirs)

    assert merge.result.address == theirs.address
    assert merge.conflicts == {"address"}
    assert not merge.push


def test_our_unchanged_data_pushes_nothing_and_an_unchanged_procountor_reports_nothing() -> None:
    merge = domain.merge_customer(BASE, BASE, BASE)

    assert (merge.push, merge.procountor_changed) == (False, frozenset())


def test_a_customer_round_trips_through_procountors_partner_shape() -> None:
    body = domain.partner_body(BASE, "2077474-0")

    assert domain.customer_of_partner(body) == BASE
    assert body["invoicingInfo"]["identifierType"] == "BUSINESS_ID"


def test_a_contract_change_of_the_payers_own_contract_is_our_side_of_the_customer() -> None:
    issued = invoice()
    change = contract_changed(issued, company_name="Uusi Nimi Oy", contact="Maija Meikäläinen")

    ours = domain.customer_of_contract(change)

    assert ours == replace(
        domain.customer_of_invoice(issued), name="Uusi Nimi Oy", contact="Maija Meikäläinen"
    )
    assert domain.customer_of_partner(domain.partner_body(ours, issued.payer_business_id)) == ours


def test_a_change_from_procountor_or_of_a_contract_someone_else_pays_is_not_pushed() -> None:
    """No bounce (the change came from Procountor) and no firm's data on its client's customer (B-17)."""
    issued = invoice()

    from_procountor = contract_changed(issued, change="billing_details_changed")
    paid_by_a_firm = contract_changed(issued, payer_id="2077474-0")
    before_the_fields = contract_changed(issued).model_copy(update={"billing_address": None})

    assert domain.customer_of_contract(from_procountor) is None
    assert domain.customer_of_contract(paid_by_a_firm) is None
    assert domain.customer_of_contract(before_the_fields) is None


def test_a_contact_changed_on_our_side_is_pushed_and_kept_beside_procountors_other_changes() -> None:
    ours = replace(BASE, contact="Maija Meikäläinen")
    theirs = replace(BASE, address=Address("Uusikatu 5", "33100", "Tampere"))

    merge = domain.merge_customer(BASE, ours, theirs)

    assert merge.push
    assert merge.result == replace(theirs, contact="Maija Meikäläinen")
    assert domain.partner_patch(merge.result, {})["invoicingInfo"]["contactPerson"] == "Maija Meikäläinen"


def test_an_inactive_customer_is_reactivated_whole_with_our_billing_data() -> None:
    found = {**domain.partner_body(replace(BASE, name="Vanha Oy"), "2077474-0"), "id": 7, "version": "v1",
             "registryInfo": {"active": False, "phone": "0101234567"}}  # fmt: skip

    body = domain.reactivated_partner(BASE, found)

    assert not domain.is_active(found)
    assert domain.is_active(body)
    assert body["registryInfo"]["phone"] == "0101234567"  # PUT replaces all: nothing else is lost
    assert (body["id"], body["version"], body["name"]) == (7, "v1", BASE.name)
    assert body["invoicingInfo"]["identifier"] == "2077474-0"
    assert domain.customer_of_partner(body) == BASE


def test_the_first_invoice_goes_by_e_invoice_only_when_the_address_was_ordered_through_us() -> None:
    ordered = invoice(channel=BillingChannel.EMAIL, operator="003723327487")
    elsewhere = invoice(channel=BillingChannel.EMAIL, operator="003721291126")

    assert (
        domain.invoice_channel(ordered, first_invoice=True, policy=POLICY) is BillingChannel.EINVOICE
    )  # B-20
    assert domain.invoice_channel(ordered, first_invoice=False, policy=POLICY) is BillingChannel.EMAIL  # B-21
    assert domain.invoice_channel(elsewhere, first_invoice=True, policy=POLICY) is BillingChannel.EMAIL
    unless = replace(POLICY, first_invoice_einvoice=False)  # "unless agreed otherwise"
    assert domain.invoice_channel(ordered, first_invoice=True, policy=unless) is BillingChannel.EMAIL


def test_approval_holds_by_channel_and_for_first_invoices() -> None:
    policy = replace(POLICY, hold_channels=frozenset({BillingChannel.PAPER}), hold_first_invoices=True)

    assert domain.approval_hold(BillingChannel.PAPER, first_invoice=False, policy=policy)
    assert domain.approval_hold(BillingChannel.EINVOICE, first_invoice=True, policy=policy)
    assert domain.approval_hold(BillingChannel.EINVOICE, first_invoice=False, policy=policy) is None


def test_the_country_comes_from_the_address_and_an_unknown_one_is_refused() -> None:
    assert domain.procountor_country("FI") == "FINLAND"
    assert domain.procountor_country("ax") == "ALAND_ISLANDS"
    assert domain.procountor_country("GB") == "UNITED_KINGDOM_OF_GREAT_BRITAIN_AND_NORTHERN_IRELAND"
    with pytest.raises(domain.UnknownCountryError):
        domain.procountor_country("QQ")


def test_every_invoice_row_is_explained_and_the_summary_names_each_environment() -> None:
    issued = invoice()
    body = domain.invoice_body(
        issued, partner_id=1, channel=BillingChannel.EINVOICE, product_ids={}, policy=POLICY
    )

    assert body["invoiceRows"][0]["comment"].endswith("01.10.–31.10.2026: kuukausimaksu")
    assert "lisätositteet yli paketin sisältämien (B-08)" in body["invoiceRows"][1]["comment"]
    assert f"Ympäristö {issued.lines[0].environment_id}: 44.37 € alv 0 %" in body["additionalInformation"]
    assert "productId" not in body["invoiceRows"][0]


def test_totals_differing_by_a_cent_are_a_mismatch() -> None:
    ours = Totals(Decimal("0.02"), Decimal("0.01"), Decimal("0.03"))
    theirs = domain.totals_of_procountor(
        {
            "paymentInfo": {"currency": "EUR"},
            "invoiceSumInfo": [
                {
                    "currency": "EUR",
                    "excludingVatTotal": Decimal("0.03"),
                    "vatSumTotal": Decimal("0.01"),
                    "invoiceSumTotal": Decimal("0.04"),
                }
            ],
        }
    )

    assert domain.totals_differ(ours, theirs)
    assert not domain.totals_differ(ours, ours)


@pytest.mark.parametrize(
    ("status", "settled", "expected"),
    [
        ("SENT", "0", ProcountorPaymentStatus.OPEN),
        ("PARTLY_PAID", "10", ProcountorPaymentStatus.PARTLY_PAID),
        ("PAID", "100", ProcountorPaymentStatus.PAID),
        ("PAID", "120", ProcountorPaymentStatus.PAID),
        ("INVALIDATED", "0", ProcountorPaymentStatus.INVALIDATED),
    ],
)
def test_procountors_status_becomes_one_of_four_payment_states(
    status: str, settled: str, expected: object
) -> None:
    assert domain.payment_status(status, total=Decimal(100), settled=Decimal(settled)) == expected


def test_an_overpaid_invoice_owes_nothing_and_the_rest_is_a_refund_elsewhere() -> None:
    assert domain.open_amount(Decimal("100.00"), Decimal("120.00")) == 0  # B-06: never a negative balance
    assert domain.open_amount(Decimal("100.00"), Decimal("30.00")) == Decimal("70.00")


def test_a_webhook_is_accepted_only_signed_with_our_secret_inside_the_window() -> None:
    secret, body, stamp = b"s" * 20, b'{"eventType":"INVOICE_PAYMENT_CREATED"}', "1796184000"
    good = domain.webhook_signature(secret, stamp, body)

    def refusal(**kw: object) -> str | None:
        args: dict[str, object] = {
            "secret": secret,
            "timestamp": stamp,
            "signature": good,
            "body": body,
            "now_unix": 1796184100.0,
            "tolerance": 300.0,
        }
        return domain.webhook_refusal(**(args | kw))  # type: ignore[arg-type]

    assert refusal() is None
    assert refusal(signature=domain.webhook_signature(b"x" * 20, stamp, body)) == "bad signature"
    assert refusal(body=body + b" ") == "bad signature"
    assert refusal(now_unix=1796184400.0) == "outside the replay window"
    assert refusal(signature=None) == "unsigned"
