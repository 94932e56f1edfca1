"""Every contract survives the wire: JSON round trips, Decimal strings, aware timestamps, tolerant reading."""

import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from billing_contracts.base import Message
from billing_contracts.examples import EXAMPLES, example_of
from billing_contracts.invoicing import InvoiceIssuedV1
from billing_contracts.procountor import PaymentReceivedV1
from billing_contracts.registry import DEAD_LETTER_CONTRACT, TOPICS

CONTRACTS = [spec.contract for spec in TOPICS] + [DEAD_LETTER_CONTRACT]


def _name(contract: type[Message]) -> str:
    return contract.__name__


def _wire(message: Message) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(message.model_dump_json())
    return decoded


def test_every_contract_in_the_registry_has_one_example() -> None:
    assert sorted(type(m).__name__ for m in EXAMPLES) == sorted(c.__name__ for c in CONTRACTS)


@pytest.mark.parametrize("contract", CONTRACTS, ids=_name)
def test_every_contract_round_trips_through_json(contract: type[Message]) -> None:
    message = example_of(contract)
    assert contract.model_validate_json(message.model_dump_json()) == message


@pytest.mark.parametrize("contract", [spec.contract for spec in TOPICS], ids=_name)
def test_the_kafka_key_is_the_declared_aggregate_id(contract: type[Message]) -> None:
    message = example_of(contract)
    assert contract.key_field is not None
    assert message.kafka_key() == str(getattr(message, contract.key_field)).encode()


@pytest.mark.parametrize("contract", CONTRACTS, ids=_name)
def test_unknown_fields_are_ignored_so_producers_may_add_optional_fields(contract: type[Message]) -> None:
    message = example_of(contract)
    wire = _wire(message) | {"added_in_a_later_release": {"nested": [1, 2]}}
    assert contract.model_validate_json(json.dumps(wire)) == message


@pytest.mark.parametrize("contract", CONTRACTS, ids=_name)
def test_a_naive_timestamp_is_rejected_in_every_datetime_field(contract: type[Message]) -> None:
    wire = _wire(example_of(contract))
    properties = contract.model_json_schema()["properties"]
    datetime_fields = [name for name, prop in properties.items() if prop.get("format") == "date-time"]
    assert "occurred_at" in datetime_fields
    for field in datetime_fields:
        naive = wire | {field: "2026-10-05T09:30:00"}
        with pytest.raises(ValidationError, match="timezone"):
            contract.model_validate_json(json.dumps(naive))


def test_money_is_sent_as_a_string_with_exactly_two_decimals() -> None:
    invoice = example_of(InvoiceIssuedV1)
    wire = _wire(invoice.model_copy(update={"total_net": Decimal("19.9")}))
    assert wire["total_net"] == "19.90"
    assert wire["total_gross"] == "24.97"
    assert wire["lines"][0]["unit_price"] == "19.90"
    assert wire["lines"][0]["vat_rate"] == "25.5"
    assert wire["software_net_by_reseller"] == {"firm-77": "19.90"}


def _payment_with_amount(raw_amount: str) -> PaymentReceivedV1:
    wire = json.dumps(_wire(example_of(PaymentReceivedV1)) | {"amount": "__AMOUNT__"})
    return PaymentReceivedV1.model_validate_json(wire.replace('"__AMOUNT__"', raw_amount))


@pytest.mark.parametrize(("raw", "amount"), [("24.97", "24.97"), ("19.9", "19.90"), ("10", "10.00")])
def test_a_json_number_for_money_is_accepted_when_it_is_exact_in_cents(raw: str, amount: str) -> None:
    payment = _payment_with_amount(raw)
    assert payment.amount == Decimal(amount)
    assert _wire(payment)["amount"] == amount


@pytest.mark.parametrize("raw", ["24.975", "0.30000000000000004", "1e-3", "123456789012345.5"])
def test_a_json_number_for_money_that_is_not_exact_in_cents_is_rejected(raw: str) -> None:
    with pytest.raises(ValidationError):
        _payment_with_amount(raw)


@pytest.mark.parametrize("raw", ['"24.975"', '"NaN"', '"Infinity"', '"abc"', "true"])
def test_money_strings_that_are_not_cents_are_rejected(raw: str) -> None:
    with pytest.raises(ValidationError):
        _payment_with_amount(raw)


@pytest.mark.parametrize("business_id", ["2077474-1", "1234567-8", "2077474", "207747-40"])
def test_a_business_id_with_a_wrong_check_digit_or_shape_is_rejected(business_id: str) -> None:
    wire = _wire(example_of(PaymentReceivedV1)) | {"payer_business_id": business_id}
    with pytest.raises(ValidationError):
        PaymentReceivedV1.model_validate_json(json.dumps(wire))


@pytest.mark.parametrize("reference", ["1002312", "123", "10023A1"])
def test_a_reference_number_with_a_wrong_check_digit_or_shape_is_rejected(reference: str) -> None:
    wire = _wire(example_of(InvoiceIssuedV1)) | {"reference_number": reference}
    with pytest.raises(ValidationError):
        InvoiceIssuedV1.model_validate_json(json.dumps(wire))


@pytest.mark.parametrize("contract", CONTRACTS, ids=_name)
def test_messages_are_immutable(contract: type[Message]) -> None:
    message = example_of(contract)
    with pytest.raises(ValidationError):
        message.producer = "someone-else"  # type: ignore[misc]
