"""Contract commands over the real broker: each change applied once, refusals published and dead-lettered with the reason."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from billing_contracts.base import Message
from billing_contracts.contracts import (
    AccountingFirmChangeRequestedV1,
    AdvanceBillingRequestedV1,
    ApprovingFirm,
    BillingChannel,
    BillingContact,
    BillingContactChangeRequestedV1,
    BusinessIdChangeRequestedV1,
    CompanyNameChangeNoticeGivenV1,
    ContractSignedV1,
    EInvoiceAddress,
    PackageChangeKind,
    PackageChangeRequestedV1,
    PackageCode,
    PayerKind,
    PostalAddress,
    ProductionStartedV1,
    Requester,
    TallennusFirmChangeApprovedV1,
    TerminationNoticeGivenV1,
)
from billing_contracts.invoicing import ChangeRequestRefusedV1
from billing_contracts.procountor import CustomerChangedInProcountorV1
from billing_contracts.registry import dead_letter_topic, topic_for
from devstack.infra import KafkaTarget
from devstack.issuer import DevIssuer
from devstack.testing import wait_until

from .contract_stack import ContractStack, business_id, contract_stack, helsinki, new_environment

pytestmark = pytest.mark.integration

NOW = helsinki(2026, 3, 20)
MAIN_USER = Requester(person_name="Maija Pääkäyttäjä", role="main_user")
SIGNATORY = Requester(person_name="Sakari Allekirjoittaja", is_signatory=True)
STRANGER = Requester(person_name="Ulla Ulkopuolinen", role="read_only")
ADDRESS = PostalAddress(street="Mannerheimintie 1", postal_code="00100", city="Helsinki")
EINVOICE = EInvoiceAddress(address="003730000000", operator="003723327487")


@pytest_asyncio.fixture(scope="module")
async def stack(
    kafka: KafkaTarget, postgres_admin_url: str, oidc_issuer: DevIssuer
) -> AsyncIterator[ContractStack]:
    async with contract_stack(kafka, postgres_admin_url, oidc_issuer, now=NOW) as running:
        yield running


@pytest.fixture(autouse=True)
def march_20(stack: ContractStack) -> None:
    stack.clock.set(NOW)


def envelope(at: dt.datetime = NOW) -> dict[str, Any]:
    return {"event_id": uuid.uuid4(), "occurred_at": at, "producer": "crm"}


def signed(env: str, company: int, **fields: Any) -> ContractSignedV1:
    return ContractSignedV1(
        **(
            envelope()
            | {
                "environment_id": env,
                "business_id": business_id(company),
                "company_name": f"Kafka {company} Oy",
                "package": PackageCode.KEVYT,
                "production_date": dt.date(2026, 1, 1),
                "accounting_firm_id": "firm-k",
                "accounting_firm_business_id": business_id(950),
                "billing_address": ADDRESS,
                "billing_channel": BillingChannel.EINVOICE,
                "einvoice_address": EINVOICE,
            }
            | fields
        )
    )


async def sign_over_kafka(stack: ContractStack, env: str, company: int, **fields: Any) -> str:
    """Sign and wait until applied: commands on other topics may otherwise overtake it."""
    await stack.publisher.publish(signed(env, company, **fields))
    contract_id = f"C-{env}"
    await stack.wait_for_change(contract_id, "signed")
    return contract_id


def resize(
    env: str, new_package: PackageCode, *, requested_at: dt.datetime, requested_by: Requester
) -> PackageChangeRequestedV1:
    """A package-size change (B-26) for the contract of `env`."""
    return PackageChangeRequestedV1(
        **envelope(),
        environment_id=env,
        requested_at=requested_at,
        change_kind=PackageChangeKind.PACKAGE_SIZE,
        new_package=new_package,
        requested_by=requested_by,
    )


def customer_changed_in_procountor(company: int, **fields: Any) -> CustomerChangedInProcountorV1:
    """Procountor's customer of the company, which pays for itself, changed now."""
    return CustomerChangedInProcountorV1(
        **envelope(),
        payer_id=business_id(company),
        procountor_customer_id=f"pc-{company}",
        business_id=business_id(company),
        changed_at=NOW,
        **fields,
    )


async def refusal_of(stack: ContractStack, command: Message) -> dict[str, Any]:
    (refusal,) = await stack.announced(
        topic_for(ChangeRequestRefusedV1), lambda m: m.get("refused_event_id") == str(command.event_id)
    )
    return refusal


async def dead_letter_of(stack: ContractStack, command: Message) -> dict[str, Any]:
    (letter,) = await wait_until(lambda: stack.dead_letters(command.event_id), what="dead letter")
    return letter


async def test_a_contract_signed_over_kafka_is_created_once_however_often_the_command_is_delivered(
    stack: ContractStack,
) -> None:
    env = new_environment()
    command = signed(env, 1)

    await stack.publisher.publish(command, command)
    await stack.wait_for_change(f"C-{env}", "signed")
    await stack.publisher.publish(command)
    await stack.publisher.publish(
        ProductionStartedV1(**envelope(), environment_id=env, production_date=dt.date(2026, 2, 1))
    )
    await stack.wait_for_change(f"C-{env}", "production_date_set")

    assert [h["change"] for h in await stack.history(f"C-{env}")] == ["signed", "production_date_set"]
    assert (await stack.contract(f"C-{env}"))["production_date"] == "2026-02-01"


async def test_package_and_firm_changes_over_kafka_follow_the_cut_off_in_helsinki_time(
    stack: ContractStack,
) -> None:
    contract_id = await sign_over_kafka(stack, env := new_environment(), 2)

    await stack.publisher.publish(
        resize(
            env,
            PackageCode.LAAJA,
            requested_at=dt.datetime(2026, 3, 15, 22, 0, tzinfo=dt.UTC),  # 16 March 00:00 in Helsinki
            requested_by=MAIN_USER,
        ),
        AccountingFirmChangeRequestedV1(
            **envelope(),
            environment_id=env,
            requested_at=dt.datetime(2026, 3, 15, 21, 59, 59, tzinfo=dt.UTC),  # 15 March 23:59:59
            new_accounting_firm_id="firm-l",
            requested_by=SIGNATORY,
        ),
    )
    await stack.wait_for_change(contract_id, "package_size_changed")
    await stack.wait_for_change(contract_id, "accounting_firm_changed")

    march, april = await stack.terms(contract_id, "2026-03"), await stack.terms(contract_id, "2026-04")
    assert (march["package"], march["accounting_firm_id"]) == ("kevyt", "firm-l")
    assert (april["package"], april["accounting_firm_id"]) == ("laaja", "firm-l")
    (audit,) = await stack.changes_named(contract_id, "package_size_changed")
    assert (audit["source"], audit["effective_from"]) == ("kafka", "2026-04-01")
    # Over Kafka no token comes along: the topic, which only the CRM may write, asserts the requester.
    assert (audit["asserted_by"], audit["requested_by"]["person_name"]) == (
        "kafka:contracts.package-change-requested.v1",
        "Maija Pääkäyttäjä",
    )


async def test_a_change_requested_without_the_rights_is_refused_published_dead_lettered_and_audited(
    stack: ContractStack,
) -> None:
    contract_id = await sign_over_kafka(stack, env := new_environment(), 3)
    command = resize(env, PackageCode.PERUS, requested_at=NOW, requested_by=STRANGER)

    await stack.publisher.publish(command)

    refusal = await refusal_of(stack, command)
    assert (refusal["rule"], refusal["key"], refusal["environment_id"], refusal["contract_id"]) == (
        "B-25",
        env,
        env,
        contract_id,
    )
    assert refusal["refused_message_type"] == "contracts.package-change-requested"
    assert "Ulla Ulkopuolinen has the role 'read_only'" in refusal["reason"]
    letter = await dead_letter_of(stack, command)
    assert (letter["failure"], letter["reason"]) == ("rejected", f"B-25: {refusal['reason']}")
    published = await stack.announced(
        dead_letter_topic("invoicing"), lambda m: m.get("original_event_id") == str(command.event_id)
    )
    assert base64.b64decode(published[0]["original_value_b64"]) == command.model_dump_json().encode()
    (audit,) = [h for h in await stack.history(contract_id) if h["outcome"] == "refused"]
    assert (audit["rule"], audit["requested_by"]["person_name"], audit["source"]) == (
        "B-25",
        "Ulla Ulkopuolinen",
        "kafka",
    )
    assert (await stack.terms(contract_id, "2026-04"))["package"] == "kevyt"


async def test_advance_billing_over_kafka_is_refused_under_b04(stack: ContractStack) -> None:
    await sign_over_kafka(stack, env := new_environment(), 4)
    command = AdvanceBillingRequestedV1(
        **envelope(),
        environment_id=env,
        requested_at=NOW,
        from_month="2026-04",
        to_month="2026-06",
        requested_by=SIGNATORY,
    )

    await stack.publisher.publish(command)

    refusal = await refusal_of(stack, command)
    assert (refusal["rule"], refusal["refused_message_type"]) == (
        "B-04",
        "contracts.advance-billing-requested",
    )


async def test_a_command_for_an_environment_without_a_contract_is_refused_with_the_reason(
    stack: ContractStack,
) -> None:
    env = new_environment()
    command = TerminationNoticeGivenV1(
        **envelope(), environment_id=env, notice_given_at=NOW, requested_by=MAIN_USER
    )

    await stack.publisher.publish(command)

    refusal = await refusal_of(stack, command)
    assert (refusal["contract_id"], refusal["reason"]) == (None, f"environment {env} has no contract")
    letter = await dead_letter_of(stack, command)
    assert letter["failure"] == "rejected"


async def test_termination_business_id_change_contact_and_name_over_kafka(stack: ContractStack) -> None:
    ending = await sign_over_kafka(stack, ending_env := new_environment(), 5)
    moving = await sign_over_kafka(
        stack, moving_env := new_environment(), 6, billing_email="laskut@example.fi"
    )
    new_env = new_environment()
    contact = BillingContact(name="Liisa Laskutus", phone="+358 40 765 4321", email="liisa@example.fi")

    await stack.publisher.publish(
        TerminationNoticeGivenV1(
            **envelope(),
            environment_id=ending_env,
            notice_given_at=helsinki(2026, 3, 10, 9),
            reason="toiminta loppuu",
            requested_by=MAIN_USER,
        ),
        BusinessIdChangeRequestedV1(
            **envelope(),
            environment_id=moving_env,
            requested_at=helsinki(2026, 3, 18, 9),
            new_business_id=business_id(7),
            new_environment_id=new_env,
            new_company_name="Kafka 7 Oy",
            requested_by=SIGNATORY,
        ),
        BillingContactChangeRequestedV1(
            **envelope(),
            environment_id=ending_env,
            requested_at=NOW,
            new_contact=contact,
            requested_by=MAIN_USER,
        ),
        CompanyNameChangeNoticeGivenV1(
            **envelope(),
            environment_id=ending_env,
            notice_given_at=NOW,
            old_company_name="Kafka 5 Oy",
            new_company_name="Kafka Viisi Oy",
            requested_by=MAIN_USER,
        ),
    )
    await stack.wait_for_change(ending, "termination_noticed")
    await stack.wait_for_change(ending, "billing_contact_changed")
    await stack.wait_for_change(ending, "company_name_changed")
    await stack.wait_for_change(moving, "business_id_changed")

    ended = await stack.contract(ending)
    assert (ended["end_date"], ended["data_retained_until"], ended["termination_reason"]) == (
        "2026-04-30",
        "2026-07-31",
        "toiminta loppuu",
    )
    assert (ended["company_name"], ended["billing_contact"]) == (
        "Kafka Viisi Oy",
        contact.model_dump(mode="json"),
    )
    old, new = await stack.contract(moving), await stack.contract(f"C-{new_env}")
    assert (old["end_date"], old["einvoice_address_ends_on"], old["successor_contract_id"]) == (
        "2026-04-30",
        "2026-04-30",
        f"C-{new_env}",
    )
    # The old business ID's e-invoice address stays behind; the invoices go by email meanwhile.
    assert (new["business_id"], new["billing_channel"], new["einvoice_address"]) == (
        business_id(7),
        "email",
        None,
    )


async def test_a_tallennus_firm_change_over_kafka_waits_for_both_firms(stack: ContractStack) -> None:
    old_firm, new_firm = business_id(951), business_id(952)
    contract_id = await sign_over_kafka(
        stack,
        env := new_environment(),
        8,
        package=PackageCode.TALLENNUS,
        payer=PayerKind.ACCOUNTING_FIRM,
        accounting_firm_id="firm-old",
        accounting_firm_business_id=old_firm,
    )

    def approval(side: ApprovingFirm, at: dt.datetime, **fields: Any) -> TallennusFirmChangeApprovedV1:
        return TallennusFirmChangeApprovedV1(
            **envelope(),
            environment_id=env,
            approving_firm=side,
            old_accounting_firm_id="firm-old",
            new_accounting_firm_id="firm-new",
            approved_at=at,
            approved_by=SIGNATORY,
            **fields,
        )

    await stack.publisher.publish(approval(ApprovingFirm.OLD, helsinki(2026, 3, 2)))
    await stack.wait_for_change(contract_id, "tallennus_firm_change_approved")
    assert (await stack.terms(contract_id, "2026-03"))["accounting_firm_id"] == "firm-old"

    await stack.publisher.publish(
        approval(
            ApprovingFirm.NEW,
            helsinki(2026, 3, 15, 23, 59),
            new_package=PackageCode.TALLENNUS,
            new_accounting_firm_business_id=new_firm,
        )
    )
    await stack.wait_for_change(contract_id, "tallennus_firm_changed")

    # Both approvals by 15 March: from March (B-29, then B-26).
    march = await stack.terms(contract_id, "2026-03")
    assert (march["accounting_firm_id"], march["payer_id"]) == ("firm-new", new_firm)
    assert (await stack.contract(contract_id))["accounting_firm_id"] == "firm-new"


async def test_a_billing_address_and_channel_changed_in_procountor_flow_in_but_the_name_does_not(
    stack: ContractStack,
) -> None:
    contract_id = await sign_over_kafka(stack, new_environment(), 9)
    new_address = PostalAddress(street="Hämeenkatu 5", postal_code="33100", city="Tampere")
    change = customer_changed_in_procountor(
        9,
        company_name="Kafka Yhdeksän Oy (nimi Procountorissa)",
        billing_address=new_address,
        billing_channel=BillingChannel.EMAIL,
        billing_email="reskontra@example.fi",
    )

    await stack.publisher.publish(change)
    await stack.wait_for_change(contract_id, "billing_details_changed_in_procountor")

    contract = await stack.contract(contract_id)
    assert (contract["billing_address"], contract["billing_channel"], contract["billing_email"]) == (
        new_address.model_dump(mode="json"),
        "email",
        "reskontra@example.fi",
    )
    assert contract["company_name"] == "Kafka 9 Oy"  # B-22: only a change notice changes it
    (audit,) = await stack.changes_named(contract_id, "billing_details_changed_in_procountor")
    assert (audit["source"], audit["details"]["procountor_company_name"]) == (
        "procountor",
        "Kafka Yhdeksän Oy (nimi Procountorissa)",
    )
    assert audit["details"]["before"]["billing_address"] == ADDRESS.model_dump(mode="json")


async def test_a_procountor_change_for_a_payer_without_contracts_is_dead_lettered_with_the_reason(
    stack: ContractStack,
) -> None:
    change = customer_changed_in_procountor(
        99, company_name="Tuntematon Oy", billing_address=ADDRESS, billing_channel=BillingChannel.PAPER
    )

    await stack.publisher.publish(change)

    letter = await dead_letter_of(stack, change)
    assert letter["reason"] == f"B-22: no open contract is paid by {business_id(99)}"
