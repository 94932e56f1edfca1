"""The run's direct JSON of an invoice is byte for byte the contract's own serialisation."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from billing_contracts.base import wire_json
from billing_contracts.invoicing import InvoiceIssuedV1
from invoicing.billing.wire import check_against_contract, invoice_json

HELSINKI = ZoneInfo("Europe/Helsinki")

text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1, max_size=40
)
money = st.decimals(min_value=Decimal("-99999.99"), max_value=Decimal("99999.99"), places=2)
quantity = st.decimals(min_value=Decimal("-9999"), max_value=Decimal("9999"), places=4) | st.integers(
    -100, 100
).map(Decimal)
unit_price = st.decimals(min_value=Decimal("-9999"), max_value=Decimal("9999"), places=5)
day = st.dates(min_value=dt.date(2024, 1, 1), max_value=dt.date(2030, 12, 31))
# hypothesis takes naive bounds and adds the time zones itself.
instant = st.datetimes(
    min_value=dt.datetime(2024, 1, 1),  # noqa: DTZ001
    max_value=dt.datetime(2030, 12, 31),  # noqa: DTZ001
    timezones=st.sampled_from([dt.UTC, HELSINKI]),
)


@st.composite
def invoices(draw: st.DrawFn) -> dict[str, Any]:
    lines = [
        {
            "line_no": n,
            "environment_id": draw(st.from_regex(r"\Aenv-[a-z0-9]{1,8}\Z")),
            "product_code": draw(st.text(min_size=1, max_size=40)),
            "description": draw(text),
            "period_start": draw(day),
            "period_end": draw(day),
            "quantity": draw(quantity),
            "unit": draw(st.sampled_from(["month", "piece", "hour"])),
            "unit_price": draw(unit_price),
            "net": draw(money),
            "vat_rate": draw(
                st.sampled_from([Decimal("25.5"), Decimal("24"), Decimal("0"), Decimal("13.5")])
            ),
            "is_correction": draw(st.booleans()),
            "charge_kind": draw(st.none() | st.sampled_from(["monthly_fee", "own_use_discount"])),
            "carried_from_period": draw(st.none() | st.sampled_from(["2026-09", "2027-01"])),
        }
        for n in range(1, draw(st.integers(1, 5)) + 1)
    ]
    return {
        "event_id": uuid.uuid4(),
        "occurred_at": draw(instant),
        "producer": "invoicing",
        "invoice_id": f"INV-{draw(st.integers(100001, 999999))}",
        "invoice_number": "100001",
        "reference_number": "1000012",
        "payer_id": "2077474-0",
        "payer_kind": draw(st.sampled_from(["company", "accounting_firm"])),
        "payer_business_id": "2077474-0",
        "payer_name": draw(text),
        "billing_address": {"street": draw(text), "postal_code": "00100", "city": draw(text)}
        | draw(st.sampled_from([{}, {"country_code": "SE"}])),
        "billing_channel": draw(st.sampled_from(["einvoice", "email", "paper"])),
        "einvoice_address": draw(
            st.none() | st.just({"address": "003712345678", "operator": "003723327487"})
        ),
        "billing_email": draw(st.none() | st.just("laskut@example.fi")),
        "billing_period": "2026-10",
        "invoice_date": draw(day),
        "due_date": draw(day),
        "lines": lines,
        "vat_totals": [{"vat_rate": Decimal("25.5"), "net": draw(money), "vat": draw(money)}],
        "total_net": draw(money),
        "total_vat": draw(money),
        "total_gross": draw(money),
        "software_net_by_reseller": draw(st.dictionaries(st.sampled_from(["partner-1", 'ä "x"']), money)),
        "final_invoice": draw(st.booleans()),
        "carried_net": draw(money),
    }


@settings(max_examples=300, deadline=None)
@given(invoices())
def test_the_direct_json_is_exactly_what_the_contract_serialises(fields: dict[str, Any]) -> None:
    assert invoice_json(fields) == wire_json(InvoiceIssuedV1.model_validate(fields))


@settings(max_examples=50, deadline=None)
@given(invoices())
def test_the_direct_json_validates_against_the_contract(fields: dict[str, Any]) -> None:
    assert check_against_contract(invoice_json(fields)).invoice_id == fields["invoice_id"]
