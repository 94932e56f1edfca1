"""Charge rules for one environment-month and invoice totals, pure (B-01…B-18, I-07)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from invoicing.calendar import YearMonth
from invoicing.money import ZERO, cents, require_decimal, vat_amount
from invoicing.pricing import PackageCode, PackagePrice, PriceList

MINIMUM_INVOICE_NET = Decimal("10.00")  # B-15
HALF_YEAR_RUN_MONTHS = frozenset({1, 7})  # B-15 decision: January and July runs send everything


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


def charge_lines(
    contract: EnvironmentContract,
    usage: MonthlyUsage,
    *,
    month: YearMonth,
    price_list: PriceList,
    vat_rate: Decimal,
) -> list[ChargeLine]:
    """The charges of one environment for one billed month, in arrears (B-04).

    `price_list` and `vat_rate` are those in force for `month` (B-07, B-18);
    the caller takes the rate from `VatRateTable.rate_for(month, package.vat_category)`.
    Lines with nothing to charge are left out.
    """
    require_decimal(vat_rate, "vat_rate")
    if not price_list.covers(month):
        raise ValueError(f"price list {price_list.id} is not in force for {month}")
    # B-01: nothing before the production month; B-27: nothing after the contract ends.
    if not contract.is_billable_in(month):
        return []
    package = price_list.package(contract.package)

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
            net=cents(qty * unit_price),
            vat_rate=vat_rate,
            # B-02: the whole month, also in the production month.
            period_start=month.first_day,
            period_end=month.last_day,
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


@dataclass(frozen=True, slots=True)
class VatTotal:
    """Net and VAT of one VAT rate on an invoice (B-18)."""

    vat_rate: Decimal
    net: Decimal
    vat: Decimal


@dataclass(frozen=True, slots=True)
class InvoiceTotals:
    """An invoice's lines grouped per environment and its totals per VAT rate (B-17, B-18)."""

    lines: tuple[ChargeLine, ...]
    vat_totals: tuple[VatTotal, ...]
    total_net: Decimal
    total_vat: Decimal
    total_gross: Decimal


def assemble_invoice(lines: Iterable[ChargeLine]) -> InvoiceTotals:
    """Group lines per environment (B-17) and total them per VAT rate (B-18).

    VAT is computed per rate on the sum of that rate's rounded line nets,
    half up; the total VAT is the sum of the per-rate amounts (EN 16931 BR-CO-14).
    """
    # Stable sort: the rule order of each environment's lines is kept.
    ordered = tuple(sorted(lines, key=lambda ln: ln.environment_id))
    nets: dict[Decimal, Decimal] = {}
    for ln in ordered:
        nets[ln.vat_rate] = nets.get(ln.vat_rate, ZERO) + ln.net
    vat_totals = tuple(
        VatTotal(vat_rate=rate, net=cents(net), vat=vat_amount(net, rate))
        for rate, net in sorted(nets.items(), reverse=True)
    )
    total_net = cents(sum((v.net for v in vat_totals), ZERO))
    total_vat = cents(sum((v.vat for v in vat_totals), ZERO))
    return InvoiceTotals(
        lines=ordered,
        vat_totals=vat_totals,
        total_net=total_net,
        total_vat=total_vat,
        total_gross=total_net + total_vat,
    )


def due_date(invoice_date: dt.date, term_days: int) -> dt.date:
    """Invoice date plus the price list's payment term (B-05, default 10 days)."""
    if term_days < 0:
        raise ValueError(f"a payment term cannot be negative, got {term_days}")
    return invoice_date + dt.timedelta(days=term_days)


class MinimumInvoiceReason(StrEnum):
    """Why an invoice is sent or held under B-15."""

    NOT_APPLICABLE = "not_applicable"  # e.g. Tallennus: always invoiced
    FINAL_INVOICE = "final_invoice"  # termination: always sent
    REACHED_MINIMUM = "reached_minimum"
    HALF_YEAR_RUN = "half_year_run"  # January and July runs send everything held
    BELOW_MINIMUM = "below_minimum"  # held and carried into the next run


@dataclass(frozen=True, slots=True)
class MinimumInvoiceDecision:
    """Whether to send an invoice now or hold its lines for the next run (B-15)."""

    send: bool
    reason: MinimumInvoiceReason


def minimum_invoice_decision(
    net_total: Decimal, run_month: YearMonth, *, is_final: bool, applies: bool
) -> MinimumInvoiceDecision:
    """B-15: hold an invoice under 10.00 € net until the held total reaches it.

    `net_total` includes lines held from earlier runs. `run_month` is the month
    of the run (the January run bills December). `applies` is false for
    packages that are always invoiced (e.g. Tallennus).
    """
    require_decimal(net_total, "net_total")
    if not applies:
        return MinimumInvoiceDecision(True, MinimumInvoiceReason.NOT_APPLICABLE)
    if is_final:
        return MinimumInvoiceDecision(True, MinimumInvoiceReason.FINAL_INVOICE)
    if net_total >= MINIMUM_INVOICE_NET:
        return MinimumInvoiceDecision(True, MinimumInvoiceReason.REACHED_MINIMUM)
    if run_month.month in HALF_YEAR_RUN_MONTHS:
        return MinimumInvoiceDecision(True, MinimumInvoiceReason.HALF_YEAR_RUN)
    return MinimumInvoiceDecision(False, MinimumInvoiceReason.BELOW_MINIMUM)
