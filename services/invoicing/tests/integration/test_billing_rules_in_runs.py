"""Month after month on a real PostgreSQL: held small invoices, own-use discounts and late-usage corrections.

B-15 minimum invoice, P-07 own-use discount by the tier in effect, B-04 corrections on the next invoice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from billing_contracts.contracts import PackageCode
from billing_contracts.invoicing import InvoiceHeldV1
from billing_contracts.partners import PartnerTier
from invoicing import tables as t
from invoicing.calendar import YearMonth
from invoicing.prices.domain import PriceBook
from invoicing.prices.loader import load_vat_rates

from .conftest import Billing, at, business_id

pytestmark = pytest.mark.integration

D = Decimal
OCT_1 = dt.date(2026, 10, 1)  # Thursday: the first business day of October 2026
NOV_2 = dt.date(2026, 11, 2)  # 1 November 2026 is a Sunday
DEC_1 = dt.date(2026, 12, 1)
JAN_4 = dt.date(2027, 1, 4)  # New Year's Day is a Friday; 2–3 January a weekend
JUL_1 = dt.date(2027, 7, 1)


def lines_of(invoice: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (
            ln["product_code"],
            ln["period_start"],
            ln["quantity"],
            ln["unit_price"],
            ln["net"],
            ln["carried_from_period"],
        )
        for ln in invoice["lines"]
    ]


def totals(invoice: dict[str, Any]) -> tuple[str, str, str]:
    return invoice["total_net"], invoice["total_vat"], invoice["total_gross"]


async def signatures(billing: Billing, month: str, count: int, environment_id: str = "env-sign") -> None:
    await billing.usage(environment_id, month, signatures=count)
    await billing.close(month)


# --- B-15 minimum invoice ---


async def test_b15_an_invoice_under_ten_euros_is_held_and_carried_into_the_next_run(billing: Billing) -> None:
    payer = await billing.sign(
        "env-sign", 1, package=PackageCode.ALLEKIRJOITUS, production_date=dt.date(2026, 9, 1)
    )
    await signatures(billing, "2026-09", 2)  # 2 × 2.25 = 4.50 €

    september = await billing.run(OCT_1)

    assert (september.invoices_issued, september.held) == (0, 1)
    assert await billing.invoices() == []
    held = await billing.held(payer)
    assert held["held_net"] == "4.50"
    assert [(h["billing_period"], h["net"], h["reason"]) for h in held["held"]] == [
        ("2026-09", "4.50", "below_minimum")
    ]
    async with billing.sessions() as session:
        values = (
            await session.execute(
                select(t.runtime_tables.outbox.c.value).where(
                    t.runtime_tables.outbox.c.topic == "invoicing.invoice-held.v1"
                )
            )
        ).scalars()
        (message,) = [InvoiceHeldV1.model_validate_json(v) for v in values]
    assert (message.held_net, message.accumulated_held_net, message.billing_period) == (
        D("4.50"),
        D("4.50"),
        "2026-09",
    )

    await signatures(billing, "2026-10", 3)  # 6.75 €: with the 4.50 € held, 11.25 € ≥ 10.00 €
    october = await billing.run(NOV_2)

    assert (october.invoices_issued, october.held) == (1, 0)
    (invoice,) = await billing.invoices()
    assert lines_of(invoice) == [
        ("SIGNATURE", "2026-09-01", "2", "2.25", "4.50", "2026-09"),
        ("SIGNATURE", "2026-10-01", "3", "2.25", "6.75", None),
    ]
    # 11.25 × 25.5 % = 2.86875 → 2.87 (B-18)
    assert totals(invoice) == ("11.25", "2.87", "14.12")
    assert (invoice["billing_period"], invoice["carried_net"], invoice["invoice_date"]) == (
        "2026-10",
        "4.50",
        "2026-11-02",
    )
    assert (await billing.held(payer))["held_net"] == "0.00"
    assert (await billing.held(payer))["held"][0]["released_invoice_id"] == invoice["invoice_id"]


async def test_b15_held_lines_keep_accumulating_until_they_reach_ten_euros(billing: Billing) -> None:
    payer = await billing.sign(
        "env-sign", 1, package=PackageCode.ALLEKIRJOITUS, production_date=dt.date(2026, 9, 1)
    )
    await signatures(billing, "2026-09", 1)
    await billing.run(OCT_1)
    await signatures(billing, "2026-10", 1)
    october = await billing.run(NOV_2)

    assert october.held == 1
    held = await billing.held(payer)
    assert held["held_net"] == "4.50"
    assert [h["net"] for h in held["held"]] == ["2.25", "2.25"]
    assert await billing.invoices() == []


async def test_b15_the_january_run_sends_everything_held_whatever_the_sum(billing: Billing) -> None:
    payer = await billing.sign(
        "env-sign", 1, package=PackageCode.ALLEKIRJOITUS, production_date=dt.date(2026, 11, 1)
    )
    await signatures(billing, "2026-11", 1)
    await billing.run(DEC_1)
    await signatures(billing, "2026-12", 1)

    january = await billing.run(JAN_4)

    assert january.invoices_issued == 1
    (invoice,) = await billing.invoices()
    assert lines_of(invoice) == [
        ("SIGNATURE", "2026-11-01", "1", "2.25", "2.25", "2026-11"),
        ("SIGNATURE", "2026-12-01", "1", "2.25", "2.25", None),
    ]
    assert totals(invoice) == ("4.50", "1.15", "5.65")  # 4.50 × 25.5 % = 1.1475 → 1.15
    assert (invoice["invoice_date"], invoice["due_date"]) == ("2027-01-04", "2027-01-14")
    assert (await billing.held(payer))["held_net"] == "0.00"


async def test_b15_the_july_run_sends_everything_held_whatever_the_sum(billing: Billing) -> None:
    await billing.sign("env-sign", 1, package=PackageCode.ALLEKIRJOITUS, production_date=dt.date(2027, 6, 1))
    await signatures(billing, "2027-06", 1)

    july = await billing.run(JUL_1)

    assert july.invoices_issued == 1
    (invoice,) = await billing.invoices()
    assert lines_of(invoice) == [("SIGNATURE", "2027-06-01", "1", "2.25", "2.25", None)]
    assert totals(invoice) == ("2.25", "0.57", "2.82")  # 0.57375 → 0.57


async def test_b15_the_final_invoice_after_termination_is_sent_whatever_the_sum(billing: Billing) -> None:
    await billing.sign("env-sign", 1, package=PackageCode.ALLEKIRJOITUS, production_date=dt.date(2026, 8, 1))
    billing.clock.set(at(dt.date(2026, 8, 20)))
    # B-27: notice on 20 August runs out on 20 September; the contract ends on 30 September.
    await billing.terminate("env-sign", at(dt.date(2026, 8, 20)))
    await signatures(billing, "2026-08", 1)
    august = await billing.run(dt.date(2026, 9, 1))
    assert august.held == 1
    await signatures(billing, "2026-09", 1)

    september = await billing.run(OCT_1)

    assert september.invoices_issued == 1
    (invoice,) = await billing.invoices()
    assert invoice["final_invoice"] is True
    assert totals(invoice) == ("4.50", "1.15", "5.65")


async def test_b15_packages_it_does_not_name_are_invoiced_however_small(billing: Billing) -> None:
    # A made-up Tallennus user price of 4.00 € makes a one-user month 4.00 €: sent anyway (B-15, B-16).
    prices = billing.price_book.price_list_for(YearMonth(2026, 10))
    tallennus = dataclasses.replace(prices.package(PackageCode.TALLENNUS), user_price=D("4.00"))
    packages = tuple(tallennus if p.package is PackageCode.TALLENNUS else p for p in prices.packages)
    billing.price_book = PriceBook((dataclasses.replace(prices, packages=packages),))
    payer = await billing.sign("env-tal", 1, package=PackageCode.TALLENNUS, firm=9, firm_pays=True)
    await billing.usage("env-tal", "2026-10", billable_users=1)
    await billing.close("2026-10")

    report = await billing.run(NOV_2)

    assert report.invoices_issued == 1
    (invoice,) = await billing.invoices()
    assert invoice["payer_business_id"] == payer == business_id(9)  # B-17: the firm pays Tallennus
    assert lines_of(invoice) == [("TALLENNUS-USER", "2026-10-01", "1", "4.00", "4.00", None)]


async def test_b15_an_invoice_of_an_exempt_and_a_named_package_is_sent_whole(billing: Billing) -> None:
    firm = 9
    await billing.sign("env-tal", 1, package=PackageCode.TALLENNUS, firm=firm, firm_pays=True)
    await billing.sign("env-sig", 2, package=PackageCode.ALLEKIRJOITUS, firm=firm, firm_pays=True)
    await billing.usage("env-tal", "2026-10", billable_users=1)
    await billing.usage("env-sig", "2026-10", signatures=1)
    await billing.close("2026-10")

    await billing.run(NOV_2)

    (invoice,) = await billing.invoices()
    # B-17: one invoice per payer, grouped per environment.
    assert [(ln["environment_id"], ln["product_code"], ln["net"]) for ln in invoice["lines"]] == [
        ("env-sig", "SIGNATURE", "2.25"),
        ("env-tal", "TALLENNUS-USER", "12.00"),
    ]


# --- P-07 own-use discount ---


async def test_p07_a_partners_own_environment_gets_its_tiers_discount_as_its_own_line(
    billing: Billing,
) -> None:
    firm = 7
    await billing.sign("env-own", firm, firm=firm, own_use=True)
    await billing.tier(firm, PartnerTier.GOLD, "2026-10")
    await billing.usage("env-own", "2026-10", vouchers=13, billable_hours={"KIRJANPITO-TUNTI": "1"})
    await billing.close("2026-10")

    await billing.run(NOV_2)

    (invoice,) = await billing.invoices()
    assert [(ln["product_code"], ln["quantity"], ln["unit_price"], ln["net"]) for ln in invoice["lines"]] == [
        ("KEVYT-MONTHLY", "1", "39.00", "39.00"),
        ("EXTRA-VOUCHER", "3", "1.79", "5.37"),
        # 50 % of the software charges 44.37 = 22.185 → 22.19; hours are not software.
        ("OWN-USE-DISCOUNT", "1", "-22.19", "-22.19"),
        ("KIRJANPITO-TUNTI", "1", "75.00", "75.00"),
    ]
    assert invoice["lines"][2]["description"].endswith("Kulta / Gold 50 %")
    assert totals(invoice) == ("97.18", "24.78", "121.96")  # 97.18 × 25.5 % = 24.7809


async def test_p07_the_tier_in_effect_for_the_billed_month_decides_the_discount(billing: Billing) -> None:
    firm = 7
    await billing.sign("env-own", firm, firm=firm, own_use=True, production_date=dt.date(2026, 9, 1))
    await billing.tier(firm, PartnerTier.SILVER, "2026-09")
    await billing.tier(firm, PartnerTier.PLATINUM, "2026-10")  # changed during October: from the October bill
    await billing.usage("env-own", "2026-09", vouchers=0)
    await billing.close("2026-09")
    await billing.run(OCT_1)
    await billing.usage("env-own", "2026-10", vouchers=0)
    await billing.close("2026-10")
    await billing.run(NOV_2)

    (september,) = await billing.invoices()
    assert [(ln["product_code"], ln["net"]) for ln in september["lines"]] == [
        ("KEVYT-MONTHLY", "39.00"),
        ("OWN-USE-DISCOUNT", "-9.75"),  # Silver 25 %
    ]
    assert totals(september) == ("29.25", "7.46", "36.71")  # 29.25 × 25.5 % = 7.45875
    # Platinum 100 %: the October lines net to nothing; recorded, nothing sent, nothing held.
    async with billing.sessions() as session:
        october = (
            await session.execute(
                select(t.billing_outcomes.c.outcome, t.billing_outcomes.c.net).where(
                    t.billing_outcomes.c.billing_period == "2026-10"
                )
            )
        ).one()
    assert tuple(october) == ("zero", D("0.00"))
    assert (await billing.held(business_id(firm)))["held"] == []


async def test_p07_an_end_customer_of_the_partner_gets_no_own_use_discount(billing: Billing) -> None:
    firm = 7
    await billing.sign("env-client", 3, firm=firm, own_use=False)
    await billing.tier(firm, PartnerTier.PLATINUM, "2026-01")
    await billing.usage("env-client", "2026-10", vouchers=1)
    await billing.close("2026-10")

    await billing.run(NOV_2)

    (invoice,) = await billing.invoices()
    assert [ln["product_code"] for ln in invoice["lines"]] == ["KEVYT-MONTHLY"]


# --- B-04 late usage: labelled corrections on the next invoice ---


async def test_b04_late_usage_of_a_billed_month_is_a_labelled_correction_on_the_next_invoice(
    billing: Billing,
) -> None:
    await billing.sign("env-a", 1, production_date=dt.date(2026, 10, 1))
    await billing.usage("env-a", "2026-10", vouchers=13)
    await billing.close("2026-10")
    await billing.run(NOV_2)
    (october,) = await billing.invoices()
    # Two vouchers created in October arrive after the close: metering adjusts October.
    await billing.adjust("env-a", "2026-10", 1, usage={"vouchers": 15}, previous={"vouchers": 13})
    await billing.usage("env-a", "2026-11", vouchers=2)
    await billing.close("2026-11")

    await billing.run(DEC_1)

    october_again, november = await billing.invoices()
    assert october_again["lines"] == october["lines"]  # never reopened
    assert [
        (
            ln["product_code"],
            ln["period_start"],
            ln["quantity"],
            ln["unit_price"],
            ln["net"],
            ln["is_correction"],
        )
        for ln in november["lines"]
    ] == [
        # B-17: per environment, oldest service month first: October's correction, then November.
        ("EXTRA-VOUCHER", "2026-10-01", "2", "1.79", "3.58", True),
        ("KEVYT-MONTHLY", "2026-11-01", "1", "39.00", "39.00", False),
    ]
    assert (
        november["lines"][0]["description"] == "Korjaus / Correction 2026-10: Lisätositteet / Extra vouchers"
    )
    assert november["lines"][0]["vat_rate"] == "25.5"
    assert totals(november) == ("42.58", "10.86", "53.44")  # 42.58 × 25.5 % = 10.8579


async def test_b04_a_correction_is_billed_once_even_when_the_next_runs_repeat(billing: Billing) -> None:
    await billing.sign("env-a", 1, production_date=dt.date(2026, 10, 1))
    await billing.usage("env-a", "2026-10", vouchers=13)
    await billing.close("2026-10")
    await billing.run(NOV_2)
    await billing.adjust("env-a", "2026-10", 1, usage={"vouchers": 15}, previous={"vouchers": 13})
    await billing.usage("env-a", "2026-11", vouchers=0)
    await billing.close("2026-11")
    await billing.run(DEC_1)
    await billing.run(DEC_1)
    await billing.usage("env-a", "2026-12", vouchers=0)
    await billing.close("2026-12")
    await billing.run(JAN_4)

    corrections = [ln for i in await billing.invoices() for ln in i["lines"] if ln["is_correction"]]
    assert [(ln["period_start"], ln["net"]) for ln in corrections] == [("2026-10-01", "3.58")]


async def test_b04_b14_a_late_jousto_voucher_moves_usage_and_minimum_in_opposite_directions(
    billing: Billing,
) -> None:
    await billing.sign("env-j", 1, package=PackageCode.JOUSTO, production_date=dt.date(2026, 10, 1))
    await billing.usage("env-j", "2026-10", vouchers=20)  # 20 × 1.49 = 29.80, minimum line 19.20
    await billing.close("2026-10")
    await billing.run(NOV_2)
    await billing.adjust("env-j", "2026-10", 1, usage={"vouchers": 25}, previous={"vouchers": 20})
    await billing.usage("env-j", "2026-11", vouchers=40)  # 59.60: above the 49.00 minimum
    await billing.close("2026-11")

    await billing.run(DEC_1)

    _, november = await billing.invoices()
    assert [
        (ln["product_code"], ln["period_start"], ln["quantity"], ln["unit_price"], ln["net"])
        for ln in november["lines"]
    ] == [
        ("EXTRA-VOUCHER", "2026-10-01", "5", "1.49", "7.45"),
        # The minimum line of October was 19.20 and is now 11.75: one line of the difference.
        ("MINIMUM-CHARGE", "2026-10-01", "1", "-7.45", "-7.45"),
        ("EXTRA-VOUCHER", "2026-11-01", "40", "1.49", "59.60"),
    ]
    assert totals(november) == ("59.60", "15.20", "74.80")


async def test_b04_an_adjustment_before_the_months_own_run_is_billed_as_its_usage_not_as_a_correction(
    billing: Billing,
) -> None:
    await billing.sign("env-a", 1, production_date=dt.date(2026, 10, 1))
    await billing.usage("env-a", "2026-10", vouchers=13)
    await billing.close("2026-10")
    await billing.adjust("env-a", "2026-10", 1, usage={"vouchers": 14}, previous={"vouchers": 13})
    await billing.adjust("env-a", "2026-10", 2, usage={"vouchers": 16}, previous={"vouchers": 14})

    await billing.run(NOV_2)
    await billing.usage("env-a", "2026-11", vouchers=0)
    await billing.close("2026-11")
    await billing.run(DEC_1)

    october, november = await billing.invoices()
    assert [(ln["product_code"], ln["quantity"], ln["is_correction"]) for ln in october["lines"]] == [
        ("KEVYT-MONTHLY", "1", False),
        ("EXTRA-VOUCHER", "6", False),
    ]
    assert [ln["is_correction"] for ln in november["lines"]] == [False]


async def test_b04_b18_a_correction_takes_the_vat_rate_of_the_corrected_month(billing: Billing) -> None:
    await billing.sign("env-a", 1, production_date=dt.date(2024, 8, 1))
    await billing.usage("env-a", "2024-08", vouchers=10)
    await billing.close("2024-08")
    await billing.run(dt.date(2024, 9, 2))  # 1 September 2024 is a Sunday
    await billing.adjust("env-a", "2024-08", 1, usage={"vouchers": 12}, previous={"vouchers": 10})
    await billing.usage("env-a", "2024-09", vouchers=10)
    await billing.close("2024-09")

    await billing.run(dt.date(2024, 10, 1))

    august, september = await billing.invoices()
    assert august["vat_totals"] == [{"vat_rate": "24", "net": "39.00", "vat": "9.36"}]
    assert [(ln["product_code"], ln["net"], ln["vat_rate"]) for ln in september["lines"]] == [
        ("EXTRA-VOUCHER", "3.58", "24"),
        ("KEVYT-MONTHLY", "39.00", "25.5"),
    ]
    # B-18: totals per VAT rate, the higher rate first.
    assert september["vat_totals"] == [
        {"vat_rate": "25.5", "net": "39.00", "vat": "9.95"},
        {"vat_rate": "24", "net": "3.58", "vat": "0.86"},
    ]
    assert totals(september) == ("42.58", "10.81", "53.39")


async def test_b04_a_late_void_that_outweighs_the_month_is_carried_not_sent_as_a_negative_invoice(
    billing: Billing,
) -> None:
    payer = await billing.sign(
        "env-sig", 1, package=PackageCode.ALLEKIRJOITUS, production_date=dt.date(2026, 10, 1)
    )
    await signatures(billing, "2026-10", 8, "env-sig")  # 18.00
    await billing.run(NOV_2)
    await billing.adjust(
        "env-sig", "2026-10", 1, usage={"signatures": 2}, previous={"signatures": 8}
    )  # −13.50
    await signatures(billing, "2026-11", 1, "env-sig")  # 2.25

    november = await billing.run(DEC_1)

    assert november.held == 1
    held = await billing.held(payer)
    assert [(h["net"], h["reason"]) for h in held["held"]] == [("-11.25", "negative_balance")]
    assert held["held_net"] == "-11.25"


async def test_b15_a_payer_left_with_only_held_lines_gets_them_on_a_final_invoice(billing: Billing) -> None:
    old_payer = await billing.sign(
        "env-sign", 1, package=PackageCode.ALLEKIRJOITUS, production_date=dt.date(2026, 9, 1), name="Vanha Oy"
    )
    await signatures(billing, "2026-09", 2)
    await billing.run(OCT_1)
    # From October another company pays the environment (a payer change in the contract's terms).
    async with billing.sessions.begin() as session:
        await session.execute(
            t.contract_terms.insert().values(
                contract_id="C-env-sign",
                effective_from=dt.date(2026, 10, 1),
                requested_at=at(dt.date(2026, 10, 1)),
                sets_accounting_firm=False,
                payer_kind="company",
                payer_id=business_id(2),
                applied=False,
            )
        )
    await signatures(billing, "2026-10", 1)

    await billing.run(NOV_2)

    (invoice,) = await billing.invoices()
    # The old payer has no contract in October: what it had held goes out, with its name.
    assert (invoice["payer_id"], invoice["payer_name"], invoice["final_invoice"]) == (
        old_payer,
        "Vanha Oy",
        True,
    )
    assert lines_of(invoice) == [("SIGNATURE", "2026-09-01", "2", "2.25", "4.50", "2026-09")]
    assert (await billing.held(business_id(2)))["held_net"] == "2.25"  # October, held for the new payer


async def test_b07_b18_a_new_vat_rate_in_the_data_bills_its_service_month_without_a_release(
    billing: Billing, tmp_path: Path
) -> None:
    # A law change is an entry in the VAT rate file (INVOICING_VAT_RATES_FILE), loaded and validated
    # like the price books: October 2026 usage takes the new rate, no code changes.
    shipped = resources.files("invoicing").joinpath("price_lists/vat_rates.yaml").read_text("utf-8")
    changed = tmp_path / "vat_rates.yaml"
    changed.write_text(shipped + '  - {category: general, valid_from: 2026-10-01, rate: "26"}\n', "utf-8")
    await billing.sign("env-a", 1)
    await billing.usage("env-a", "2026-10", vouchers=0)
    await billing.close("2026-10")

    await billing.run(NOV_2, vat_rates=load_vat_rates(changed))

    (invoice,) = await billing.invoices()
    assert invoice["vat_totals"] == [{"vat_rate": "26", "net": "39.00", "vat": "10.14"}]
