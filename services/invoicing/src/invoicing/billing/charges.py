"""Charge rules for one environment-month and its corrections, pure (B-01, B-02, B-04, B-08…B-17,
I-07, P-07): what each line of a month costs, before the invoice is assembled."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from billing_contracts.partners import PartnerTier
from invoicing.calendar import HELSINKI, YearMonth
from invoicing.money import CENT, ZERO, cents, require_decimal
from invoicing.prices.domain import PackageCode, PackagePrice, PriceList

MINIMUM_INVOICE_NET = Decimal("10.00")  # B-15
HALF_YEAR_RUN_MONTHS = frozenset({1, 7})  # B-15 decision: January and July runs send everything

#: P-06: the software discount for a partner's own use, by tier (percent of the software charges).
OWN_USE_DISCOUNT_PERCENT: Mapping[PartnerTier, Decimal] = {
    PartnerTier.PARTNER: Decimal(0),
    PartnerTier.SILVER: Decimal(25),
    PartnerTier.GOLD: Decimal(50),
    PartnerTier.PLATINUM: Decimal(100),
}

_TIER_NAMES = {
    PartnerTier.PARTNER: "Partneri / Partner",
    PartnerTier.SILVER: "Hopea / Silver",
    PartnerTier.GOLD: "Kulta / Gold",
    PartnerTier.PLATINUM: "Platina / Platinum",
}


class ChargeKind(StrEnum):
    """Why a line is charged; everything but service hours is a software charge (P-08)."""

    MONTHLY_FEE = "monthly_fee"  # B-02, B-04
    EXTRA_VOUCHER = "extra_voucher"  # B-08
    EXTRA_PAYEE = "extra_payee"  # B-12
    EINVOICE_SENT = "einvoice_sent"  # B-13
    EINVOICE_RECEIVED = "einvoice_received"  # B-13
    USER = "user"  # B-16
    SIGNATURE = "signature"
    MINIMUM_CHARGE = "minimum_charge"  # B-14
    OWN_USE_DISCOUNT = "own_use_discount"  # P-07: negative, on the software charges
    SERVICE_HOURS = "service_hours"  # I-07

    @property
    def is_software(self) -> bool:
        return self is not ChargeKind.SERVICE_HOURS


class Unit(StrEnum):
    """Units as on the wire (`billing_contracts.invoicing.InvoiceLine.unit`)."""

    MONTH = "month"
    PIECE = "piece"
    PERSON = "person"
    MESSAGE = "message"
    USER = "user"
    HOUR = "hour"


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvironmentContract:
    """What billing needs to know of an environment's contract for one month.

    `package` is the package in effect for the billed month, after the B-26
    cut-off has been applied by the caller.
    """

    environment_id: str
    package: PackageCode
    production_date: dt.date  # B-01
    end_date: dt.date | None = None  # B-27: last day of the contract
    own_use: bool = False  # P-07: a partner's own environment
    reseller_partner_id: str | None = None  # P-08

    def __post_init__(self) -> None:
        if not self.environment_id:
            raise ValueError("a contract needs an environment id")
        if self.end_date is not None and self.end_date < self.production_date:
            raise ValueError("a contract cannot end before its production date")

    def is_billable_in(self, month: YearMonth) -> bool:
        """Whether any of `month` falls between the production date and the end date (B-01, B-27)."""
        if month.last_day < self.production_date:
            return False
        return self.end_date is None or month.first_day <= self.end_date


def _non_negative(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class MonthlyUsage:
    """An environment's billable usage in one Helsinki month, already counted by metering.

    Counting rules (B-09 creation month, B-10 voucher kinds, B-11 voiding,
    B-12 distinct persons, B-13 channels, B-16 free roles) are applied before
    these numbers reach billing.
    """

    vouchers: int = 0
    payees: int = 0
    einvoices_sent: int = 0
    einvoices_received: int = 0
    billable_users: int = 0
    signatures: int = 0
    billable_hours: Mapping[str, Decimal] = field(default_factory=dict)  # service product → hours

    def __post_init__(self) -> None:
        counts = (
            self.vouchers,
            self.payees,
            self.einvoices_sent,
            self.einvoices_received,
            self.billable_users,
            self.signatures,
        )
        if not all(type(c) is int and c >= 0 for c in counts):  # fast path: one check for all
            for what in (
                "vouchers",
                "payees",
                "einvoices_sent",
                "einvoices_received",
                "billable_users",
                "signatures",
            ):
                _non_negative(getattr(self, what), what)
        for code, hours in self.billable_hours.items():
            if require_decimal(hours, f"billable_hours[{code}]") < ZERO:
                raise ValueError(f"billable_hours[{code}] may not be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargeLine:
    """One charge for one environment and service period (B-18)."""

    environment_id: str
    kind: ChargeKind
    product_code: str
    description: str
    quantity: Decimal
    unit: Unit
    unit_price: Decimal
    net: Decimal  # quantity × unit price, rounded half up to cents (B-18)
    vat_rate: Decimal  # percent in force for the service period (B-18)
    period_start: dt.date
    period_end: dt.date
    is_correction: bool = False  # a labelled correction of an earlier, already billed month
    carried_from: YearMonth | None = None  # B-15: held in the run of this billing period

    @property
    def service_month(self) -> YearMonth:
        return YearMonth.of(self.period_start)


def charge_lines(
    contract: EnvironmentContract,
    usage: MonthlyUsage,
    *,
    month: YearMonth,
    price_list: PriceList,
    vat_rate: Decimal,
    own_use_tier: PartnerTier | None = None,
) -> list[ChargeLine]:
    """The charges of one environment for one billed month, in arrears (B-04).

    `price_list` and `vat_rate` are those in force for `month` (B-07, B-18);
    the caller takes the rate from `VatRateTable.rate_for(month, package.vat_category)`.
    `own_use_tier` is the partner's tier in effect for `month` when the
    environment is the partner's own (P-07); it adds a discount line.
    Lines with nothing to charge are left out.
    """
    require_decimal(vat_rate, "vat_rate")
    if not price_list.covers(month):
        raise ValueError(f"price list {price_list.id} is not in force for {month}")
    # B-01: nothing before the production month; B-27: nothing after the contract ends.
    if not contract.is_billable_in(month):
        return []
    package = price_list.package(contract.package)

    first_day, last_day = month.first_day, month.last_day

    def line(
        kind: ChargeKind,
        product_code: str,
        description: str,
        quantity: Decimal | int,
        unit: Unit,
        unit_price: Decimal,
    ) -> ChargeLine:
        qty = Decimal(quantity)
        return ChargeLine(
            environment_id=contract.environment_id,
            kind=kind,
            product_code=product_code,
            description=description,
            quantity=qty,
            unit=unit,
            unit_price=unit_price,
            net=(qty * unit_price).quantize(CENT, rounding=ROUND_HALF_UP),  # B-18, as money.cents
            vat_rate=vat_rate,
            # B-02: the whole month, also in the production month.
            period_start=first_day,
            period_end=last_day,
        )

    lines: list[ChargeLine] = []
    code = package.package.value.upper()

    # B-02, B-04: the monthly fee in full for every billed month, the first included.
    if package.monthly_fee > ZERO:
        lines.append(
            line(
                ChargeKind.MONTHLY_FEE,
                f"{code}-MONTHLY",
                f"{package.name}, kuukausimaksu / monthly fee",
                1,
                Unit.MONTH,
                package.monthly_fee,
            )
        )
    # B-08: vouchers above the included count.
    extra_vouchers = max(0, usage.vouchers - package.included_vouchers)
    if extra_vouchers and package.extra_voucher_price > ZERO:
        lines.append(
            line(
                ChargeKind.EXTRA_VOUCHER,
                "EXTRA-VOUCHER",
                "Lisätositteet / Extra vouchers",
                extra_vouchers,
                Unit.PIECE,
                package.extra_voucher_price,
            )
        )
    # B-12: distinct payees above the included count.
    extra_payees = max(0, usage.payees - package.included_payees)
    if extra_payees and package.extra_payee_price > ZERO:
        lines.append(
            line(
                ChargeKind.EXTRA_PAYEE,
                "EXTRA-PAYEE",
                "Lisäpalkansaajat / Extra payees",
                extra_payees,
                Unit.PERSON,
                package.extra_payee_price,
            )
        )
    # B-13: per message, sent and received separately, each with its channel product.
    if usage.einvoices_sent and package.einvoice_send_price > ZERO:
        lines.append(
            line(
                ChargeKind.EINVOICE_SENT,
                "EINVOICE-SENT",
                "Myyntilasku verkkolaskuna / Sales invoice as e-invoice",
                usage.einvoices_sent,
                Unit.MESSAGE,
                package.einvoice_send_price,
            )
        )
    if usage.einvoices_received and package.einvoice_receive_price > ZERO:
        lines.append(
            line(
                ChargeKind.EINVOICE_RECEIVED,
                "EINVOICE-RECEIVED",
                "Ostolasku verkkolaskuna / Purchase invoice as e-invoice",
                usage.einvoices_received,
                Unit.MESSAGE,
                package.einvoice_receive_price,
            )
        )
    # B-16: billable users (free roles already excluded) above the included count.
    if package.user_price is not None and package.user_price > ZERO:
        extra_users = max(0, usage.billable_users - package.included_users)
        if extra_users:
            lines.append(
                line(
                    ChargeKind.USER,
                    f"{code}-USER",
                    f"{package.name}, käyttäjät / users",
                    extra_users,
                    Unit.USER,
                    package.user_price,
                )
            )
    # Allekirjoitus: every signer is charged.
    if package.signature_price is not None and package.signature_price > ZERO and usage.signatures:
        lines.append(
            line(
                ChargeKind.SIGNATURE,
                "SIGNATURE",
                "Allekirjoitukset / Signatures",
                usage.signatures,
                Unit.PIECE,
                package.signature_price,
            )
        )
    # B-14: make up the difference to the minimum charge.
    minimum = minimum_charge_line(lines, package)
    if minimum is not None:
        lines.append(
            line(
                ChargeKind.MINIMUM_CHARGE,
                "MINIMUM-CHARGE",
                "Minimiveloitus / Minimum charge",
                1,
                Unit.MONTH,
                minimum,
            )
        )
    # P-07: the own-use discount of the partner's tier, its own line, on the software charges
    # (the minimum charge included, service hours not).
    if contract.own_use and own_use_tier is not None:
        discount = own_use_discount(lines, own_use_tier)
        if discount is not None:
            percent = OWN_USE_DISCOUNT_PERCENT[own_use_tier]
            lines.append(
                line(
                    ChargeKind.OWN_USE_DISCOUNT,
                    "OWN-USE-DISCOUNT",
                    f"Kumppanin oman käytön alennus / Partner own-use discount, "
                    f"{_TIER_NAMES[own_use_tier]} {percent.normalize():f} %",
                    1,
                    Unit.MONTH,
                    discount,
                )
            )
    # I-07: billable hours at their service product's rate; after the minimum,
    # which they do not count towards.
    for product_code in sorted(usage.billable_hours):
        hours = usage.billable_hours[product_code]
        if hours == ZERO:
            continue
        product = price_list.service_product(product_code)
        lines.append(
            line(
                ChargeKind.SERVICE_HOURS,
                product.code,
                product.name,
                hours,
                Unit.HOUR,
                product.hourly_rate,
            )
        )
    return lines


def minimum_charge_line(lines: Iterable[ChargeLine], package: PackagePrice) -> Decimal | None:
    """The amount a B-14 minimum-charge line must carry, or None when none is needed.

    **Decision:** the minimum is compared with the month's software charges
    (fee and usage lines), not with billable service hours (I-07), which are
    work bought separately rather than use of the package.
    """
    if package.minimum_monthly_charge is None:
        return None
    software = sum((ln.net for ln in lines if ln.kind.is_software), ZERO)
    shortfall = cents(package.minimum_monthly_charge) - software
    return shortfall if shortfall > ZERO else None


def own_use_discount(lines: Iterable[ChargeLine], tier: PartnerTier) -> Decimal | None:
    """The (negative) amount of the P-07 own-use discount line, or None when there is none.

    The percent of the tier (P-06) of the environment's software charges of the
    month, rounded half up to cents; service hours are work, not software.
    """
    percent = OWN_USE_DISCOUNT_PERCENT[tier]
    software = sum((ln.net for ln in lines if ln.kind.is_software), ZERO)
    amount = cents(software * percent / Decimal(100))
    return -amount if amount > ZERO else None


def correction_lines(
    contract: EnvironmentContract,
    *,
    previous: MonthlyUsage,
    current: MonthlyUsage,
    month: YearMonth,
    price_list: PriceList,
    vat_rate: Decimal,
    own_use_tier: PartnerTier | None = None,
) -> list[ChargeLine]:
    """Labelled correction lines for a month already billed with `previous` usage (B-04).

    Both figures are priced with the contract, prices, VAT rate and tier of the
    corrected month, because charges are not linear in usage (included vouchers,
    minimum charge, discount). Each line is the difference of one product: its
    net is the difference of the two rounded nets, so that the original line
    plus its correction is exactly what the corrected figures cost. An issued
    invoice is never reopened: the correction goes on the next invoice.
    """
    before = charge_lines(
        contract, previous, month=month, price_list=price_list, vat_rate=vat_rate, own_use_tier=own_use_tier
    )
    after = charge_lines(
        contract, current, month=month, price_list=price_list, vat_rate=vat_rate, own_use_tier=own_use_tier
    )
    old = {(ln.kind, ln.product_code): ln for ln in before}
    new = {(ln.kind, ln.product_code): ln for ln in after}
    keys = list(new) + [k for k in old if k not in new]
    corrections: list[ChargeLine] = []
    for key in keys:
        was, now = old.get(key), new.get(key)
        template = now if now is not None else was
        if template is None:  # pragma: no cover - every key comes from one of the two
            continue
        net = (now.net if now else ZERO) - (was.net if was else ZERO)
        qty_was = was.quantity if was else Decimal(0)
        qty_now = now.quantity if now else Decimal(0)
        if net == ZERO and qty_now == qty_was:
            continue
        same_price = was is None or now is None or was.unit_price == now.unit_price
        if same_price:
            quantity, unit_price = qty_now - qty_was, template.unit_price
        else:  # e.g. a minimum charge or a discount whose amount changed: one line of the difference
            quantity, unit_price = Decimal(1), net
        corrections.append(
            dataclasses.replace(
                template,
                description=f"Korjaus / Correction {month}: {template.description}"[:200],
                quantity=quantity,
                unit_price=unit_price,
                net=net,
                is_correction=True,
            )
        )
    return corrections


# --- B-01: the production month counts usage from the production date ---


def _instant(value: object) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise ValueError(f"an item's time must be an aware timestamp, got {value!r}")
    return value


def _day(value: object) -> dt.date:
    if isinstance(value, str):
        return dt.date.fromisoformat(value)
    if isinstance(value, dt.date):
        return value
    raise ValueError(f"an item's day must be a date, got {value!r}")


def usage_from_production_date(
    production_date: dt.date, month_usage: MonthlyUsage, items: Mapping[str, Sequence[Mapping[str, object]]]
) -> MonthlyUsage:
    """B-01: of the production month, only what happened from the production date on (Helsinki).

    `items` are metering's item lists of the month (B-19): `vouchers` (with `counted`, B-10/B-11
    applied), `payees`, `messages` (with `charged`, B-13), `signatures` and `hours`. Users are
    those at the month's end (B-16), so they come from the month's figures. **Decision:** a
    payee counts when the first pay of the month was calculated from the production date on.
    """
    start = dt.datetime.combine(production_date, dt.time(), tzinfo=HELSINKI)

    def since(kind: str, at: str) -> list[Mapping[str, object]]:
        return [i for i in items.get(kind, ()) if _instant(i[at]) >= start]

    hours: dict[str, Decimal] = {}
    for entry in items.get("hours", ()):
        if entry.get("billable") and _day(entry["work_date"]) >= production_date:
            code = str(entry["service_product_code"])
            hours[code] = hours.get(code, Decimal(0)) + Decimal(str(entry["hours"]))
    messages = [m for m in since("messages", "at") if m.get("charged")]
    return MonthlyUsage(
        vouchers=sum(1 for v in since("vouchers", "created_at") if v.get("counted")),
        payees=len({str(p["person_id"]) for p in since("payees", "first_calculated_at")}),
        einvoices_sent=sum(1 for m in messages if m.get("direction") == "sent"),
        einvoices_received=sum(1 for m in messages if m.get("direction") == "received"),
        billable_users=month_usage.billable_users,
        signatures=sum(int(str(s["signer_count"])) for s in since("signatures", "completed_at")),
        billable_hours=hours,
    )


#: The item lists B-01 recounts a production month from.
PRODUCTION_MONTH_ITEM_KINDS = ("vouchers", "payees", "messages", "signatures", "hours")


def counts_from_production_date(contract: EnvironmentContract, month: YearMonth) -> bool:
    """Whether `month` is the production month and starts before the production date (B-01)."""
    return month.contains(contract.production_date) and contract.production_date.day > 1
