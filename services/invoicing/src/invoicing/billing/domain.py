"""Billing's domain, pure: an invoice's totals, the minimum invoice (B-15), a payer's settlement of
the month (B-04, B-15, B-17, B-27), partner tiers (P-07, P-08) and the run's period and tallies (B-03,
B-04). The charge rules of one environment-month are in `billing.charges`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from billing_contracts.invoicing import InvoiceLine
from billing_contracts.partners import PartnerTier
from invoicing.billing.charges import (
    HALF_YEAR_RUN_MONTHS,
    MINIMUM_INVOICE_NET,
    OWN_USE_DISCOUNT_PERCENT,
    PRODUCTION_MONTH_ITEM_KINDS,
    ChargeKind,
    ChargeLine,
    EnvironmentContract,
    MonthlyUsage,
    Unit,
    charge_lines,
    correction_lines,
    counts_from_production_date,
    minimum_charge_line,
    own_use_discount,
    usage_from_production_date,
)
from invoicing.billing.invoice import InvoiceStatus, InvoiceTotals, VatTotal, assemble_invoice, due_date
from invoicing.calendar import YearMonth
from invoicing.contracts.domain import ContractTerms
from invoicing.money import ZERO, require_decimal
from invoicing.prices.domain import PackageCode, PriceBook, PriceList
from invoicing.prices.vat import VatRateTable

__all__ = [
    "HALF_YEAR_RUN_MONTHS",
    "MINIMUM_INVOICE_NET",
    "OWN_USE_DISCOUNT_PERCENT",
    "PRODUCTION_MONTH_ITEM_KINDS",
    "ChargeKind",
    "ChargeLine",
    "EnvironmentContract",
    "InvoiceStatus",
    "InvoiceTotals",
    "MonthlyUsage",
    "Unit",
    "VatTotal",
    "assemble_invoice",
    "charge_lines",
    "correction_lines",
    "counts_from_production_date",
    "due_date",
    "minimum_charge_line",
    "own_use_discount",
    "usage_from_production_date",
]


class MinimumInvoiceReason(StrEnum):
    """Why an invoice is sent or held under B-15."""

    NOT_APPLICABLE = "not_applicable"  # e.g. Tallennus: always invoiced
    FINAL_INVOICE = "final_invoice"  # termination: always sent
    REACHED_MINIMUM = "reached_minimum"
    HALF_YEAR_RUN = "half_year_run"  # January and July runs send everything held
    BELOW_MINIMUM = "below_minimum"  # held and carried into the next run
    NEGATIVE_BALANCE = "negative_balance"  # corrections outweigh the charges: carried, never sent


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


class SettlementKind(StrEnum):
    """What a billing run does with one payer's lines of one billing period (B-15, B-17)."""

    ISSUE = "issue"  # an invoice is issued, with everything held before
    HOLD = "hold"  # the lines are held and carried into the next run
    ZERO = "zero"  # the lines net to exactly nothing: recorded and released, nothing to send
    NOTHING = "nothing"  # no lines at all


@dataclass(frozen=True, slots=True)
class Settlement:
    """The decision of one payer and billing period, and the lines it covers."""

    kind: SettlementKind
    reason: MinimumInvoiceReason | None
    #: ISSUE and ZERO: every line of the invoice, held ones included; HOLD: the lines held now.
    lines: tuple[ChargeLine, ...]
    totals: InvoiceTotals
    #: Net of everything held for the payer after this decision (B-15).
    accumulated_held_net: Decimal


def _invoice_order(lines: Iterable[ChargeLine]) -> list[ChargeLine]:
    # B-17: per environment; within it the oldest service month first, a month's
    # corrections after its own lines, and the rule order of each month kept (stable sort).
    return sorted(lines, key=lambda ln: (ln.environment_id, ln.period_start, ln.is_correction))


def settle_payer(
    lines: Iterable[ChargeLine],
    held: Iterable[ChargeLine],
    *,
    run_month: YearMonth,
    is_final: bool,
    applies: bool,
) -> Settlement:
    """Issue an invoice of `held` + `lines`, or hold `lines` for the next run (B-15).

    `held` are the lines held in earlier runs (each with its `carried_from`).
    `run_month` is the month of the run (the January run bills December).
    Lines that net to exactly nothing settle at zero: recorded, nothing sent or held.
    `applies` is false when any environment on the invoice has a package that is
    always invoiced (B-15 names Taloushallinto, Solo and Allekirjoitus): the invoice
    goes anyway, so nothing on it is held. `is_final`: the invoice of a contract's
    last month (B-27) is always sent. **Decision:** a negative total (corrections
    outweighing charges) is never sent as an invoice except a final one; it is
    carried like a held amount until charges outweigh it.
    """
    new = tuple(lines)
    earlier = tuple(held)
    everything = tuple(_invoice_order(earlier + new))
    if not everything:
        return Settlement(SettlementKind.NOTHING, None, (), assemble_invoice(()), ZERO)
    totals = assemble_invoice(everything)
    if totals.total_net == ZERO and totals.total_gross == ZERO:
        # e.g. a Platinum partner's own environment (100 % discount): recorded, nothing to send or hold.
        return Settlement(SettlementKind.ZERO, None, everything, totals, ZERO)
    if totals.total_net < ZERO and not is_final:
        return Settlement(
            SettlementKind.HOLD,
            MinimumInvoiceReason.NEGATIVE_BALANCE,
            tuple(_invoice_order(new)),
            assemble_invoice(new),
            totals.total_net,
        )
    decision = minimum_invoice_decision(totals.total_net, run_month, is_final=is_final, applies=applies)
    if not decision.send:
        return Settlement(
            SettlementKind.HOLD,
            decision.reason,
            tuple(_invoice_order(new)),
            assemble_invoice(new),
            totals.total_net,
        )
    return Settlement(SettlementKind.ISSUE, decision.reason, everything, totals, ZERO)


@dataclass(frozen=True, slots=True)
class TierBook:
    """Each partner firm's tier over time, by the first month billed with it (P-07)."""

    #: firm id → (effective month, tier), in any order.
    changes: Mapping[str, tuple[tuple[YearMonth, PartnerTier], ...]] = field(default_factory=dict)

    def tier_for(self, firm_id: str | None, month: YearMonth) -> PartnerTier | None:
        """The tier in effect for `month`: the latest change effective in or before it.

        **Decision (P-07):** a tier change during month M applies from the M bill, so
        the change's `effective_month` is compared with the billed month.
        """
        if firm_id is None:
            return None
        in_effect = [(m, tier) for m, tier in self.changes.get(firm_id, ()) if m <= month]
        return max(in_effect, key=lambda change: change[0])[1] if in_effect else None


def software_net_by_reseller(
    lines: Iterable[ChargeLine], reseller_of: Mapping[str, str | None]
) -> dict[str, Decimal]:
    """P-08: the net software charges of each reseller's environments on an invoice."""
    nets: dict[str, Decimal] = {}
    for ln in lines:
        reseller = reseller_of.get(ln.environment_id)
        if reseller and ln.kind.is_software:
            nets[reseller] = nets.get(reseller, ZERO) + ln.net
    return nets


# --- what a run knows of each payer, and the payer's settlement of the month ---


@dataclass(frozen=True, slots=True)
class Adjustment:
    """A late change of a closed month's usage from metering (UsageAdjustedV1)."""

    environment_id: str
    month: YearMonth
    adjustment_no: int
    usage: MonthlyUsage
    previous: MonthlyUsage


@dataclass(frozen=True, slots=True)
class HeldRow:
    """Lines held for a payer in the run of one billing period (B-15), as `InvoiceLine` JSON."""

    payer_id: str
    billing_period: YearMonth
    lines: tuple[dict[str, Any], ...]
    net: Decimal


@dataclass(frozen=True, slots=True)
class Correction:
    """A pending adjustment of an earlier month, with the terms of that month (whose payer it bills)."""

    terms: ContractTerms
    month: YearMonth


@dataclass(slots=True)
class PayerWork:
    """Everything a run knows up front about one payer of the billed month."""

    payer_id: str
    terms: list[ContractTerms] = field(default_factory=list)  # billable in the month
    corrections: list[Correction] = field(default_factory=list)
    #: For a payer left with only held lines: the terms of a month it was billed, for its address.
    last_known: ContractTerms | None = None


@dataclass(frozen=True, slots=True)
class PayerResult:
    """One payer's settlement and what it was computed from."""

    payer_id: str
    settlement: Settlement
    payer_terms: ContractTerms | None
    environments: tuple[str, ...]  # environment-months of the billed month
    adjustments: tuple[tuple[str, YearMonth, int], ...]  # folded in or corrected
    reseller_of: Mapping[str, str | None]
    is_final: bool


class ProductionMonthError(Exception):
    """B-01: a production month that starts mid-month cannot be counted without metering's items."""


#: Metering's item lists of production months: environment → item kind → items (B-01).
ItemsOf = Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]]
NO_USAGE = MonthlyUsage()


@dataclass
class Pricing:
    """The prices, VAT rates and partner tiers a run prices with, each looked up once per month."""

    price_book: PriceBook
    vat_rates: VatRateTable
    tiers: TierBook
    _lists: dict[YearMonth, PriceList] = field(default_factory=dict)
    _rates: dict[tuple[YearMonth, PackageCode], Decimal] = field(default_factory=dict)

    def price_list(self, month: YearMonth) -> PriceList:
        found = self._lists.get(month)
        if found is None:
            found = self._lists[month] = self.price_book.price_list_for(month)
        return found

    def vat_rate(self, month: YearMonth, package: PackageCode) -> Decimal:
        """The VAT rate of the package's category in force for the service month (B-18)."""
        key = (month, package)
        found = self._rates.get(key)
        if found is None:
            category = self.price_list(month).package(package).vat_category
            found = self._rates[key] = self.vat_rates.rate_for(month, category)
        return found

    def own_use_tier(self, terms: ContractTerms, month: YearMonth) -> PartnerTier | None:
        # P-07: the partner of an own-use environment is its accounting firm (the firm's own books).
        return self.tiers.tier_for(terms.accounting_firm_id, month) if terms.own_use else None


def environment_contract(terms: ContractTerms) -> EnvironmentContract:
    """What the charge rules need of a contract's terms for a month."""
    return EnvironmentContract(
        environment_id=terms.environment_id,
        package=terms.package,
        production_date=terms.production_date,
        end_date=terms.end_date,
        own_use=terms.own_use,
        reseller_partner_id=terms.reseller_partner_id,
    )


def payer_terms(work: PayerWork) -> ContractTerms | None:
    """Whose name and address the invoice carries: the payer's own contract, else the first (B-17)."""
    candidates = work.terms or [c.terms for c in work.corrections]
    if not candidates:
        return work.last_known
    own = [x for x in candidates if x.business_id == work.payer_id]
    return min(own or candidates, key=lambda x: x.environment_id)


def held_line(data: Mapping[str, Any], carried_from: YearMonth) -> ChargeLine:
    """A held line back from its stored InvoiceLine JSON."""
    line = InvoiceLine.model_validate(data)
    return ChargeLine(
        environment_id=line.environment_id,
        kind=ChargeKind(line.charge_kind or ChargeKind.MONTHLY_FEE.value),
        product_code=line.product_code,
        description=line.description,
        quantity=line.quantity,
        unit=Unit(line.unit),
        unit_price=line.unit_price,
        net=line.net,
        vat_rate=line.vat_rate,
        period_start=line.period_start,
        period_end=line.period_end,
        is_correction=line.is_correction,
        carried_from=carried_from,
    )


def settle_month(
    work: PayerWork,
    month: YearMonth,
    pricing: Pricing,
    *,
    usage: Mapping[str, MonthlyUsage],
    folded: Mapping[str, Sequence[int]],
    held: Sequence[HeldRow],
    adjustments: Mapping[tuple[str, YearMonth], Sequence[Adjustment]],
    billed: Set[tuple[str, YearMonth]],
    production_items: ItemsOf | None = None,
    item_errors: Mapping[str, str] | None = None,
) -> PayerResult:
    """One payer's lines of `month`, its corrections and held lines, and the B-15 decision.

    `adjustments` are the pending adjustments by (environment, month), oldest first; `billed` the
    environment-months already invoiced (only those are corrected; the others' own run bills the
    adjusted figures); `folded` the adjustments of `month` itself that its usage already includes.
    """
    last_day = month.last_day
    price_list = pricing.price_list(month)
    lines: list[ChargeLine] = []
    applies = True
    is_final = not work.terms  # a payer left without contracts: everything still held goes out
    used_adjustments: list[tuple[str, YearMonth, int]] = []
    for terms in sorted(work.terms, key=lambda x: x.environment_id):
        env = terms.environment_id
        contract = environment_contract(terms)
        month_usage = usage.get(env, NO_USAGE)
        if counts_from_production_date(contract, month):
            # B-01: usage created before the production date is not billed.
            if item_errors and env in item_errors:
                raise ProductionMonthError(item_errors[env])
            if production_items is None or env not in production_items:
                raise ProductionMonthError(f"B-01: no item lists of {env} for its production month")
            month_usage = usage_from_production_date(
                terms.production_date, month_usage, production_items[env]
            )
        lines += charge_lines(
            contract,
            month_usage,
            month=month,
            price_list=price_list,
            vat_rate=pricing.vat_rate(month, terms.package),
            own_use_tier=pricing.own_use_tier(terms, month),
        )
        applies &= price_list.package(terms.package).minimum_invoice_applies
        # B-27: the invoice of a contract's last month is final and always sent (B-15).
        if terms.end_date is not None and terms.end_date <= last_day:
            is_final = True
        used_adjustments += [(env, month, n) for n in folded.get(env, ())]
    # B-04: late usage of months already billed, as labelled corrections; never reopening them.
    for correction in work.corrections:  # sorted by environment and month in the plan
        key = (correction.terms.environment_id, correction.month)
        chain = adjustments.get(key, ())
        if not chain or key not in billed:
            continue  # not billed yet: its own run will bill the adjusted figures
        corrected_list = pricing.price_list(correction.month)
        lines += correction_lines(
            environment_contract(correction.terms),
            previous=chain[0].previous,
            current=chain[-1].usage,
            month=correction.month,
            price_list=corrected_list,
            vat_rate=pricing.vat_rate(correction.month, correction.terms.package),
            own_use_tier=pricing.own_use_tier(correction.terms, correction.month),
        )
        applies &= corrected_list.package(correction.terms.package).minimum_invoice_applies
        used_adjustments += [(a.environment_id, a.month, a.adjustment_no) for a in chain]
    carried = [held_line(data, row.billing_period) for row in held for data in row.lines]
    settlement = settle_payer(lines, carried, run_month=month.next(), is_final=is_final, applies=applies)
    reseller_of = {x.environment_id: x.reseller_partner_id for x in work.terms}
    for c in work.corrections:
        reseller_of.setdefault(c.terms.environment_id, c.terms.reseller_partner_id)
    return PayerResult(
        payer_id=work.payer_id,
        settlement=settlement,
        payer_terms=payer_terms(work),
        environments=tuple(sorted(x.environment_id for x in work.terms)),
        adjustments=tuple(used_adjustments),
        reseller_of=reseller_of,
        is_final=is_final,
    )
