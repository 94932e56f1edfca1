"""Pure metering rules (SPEC B-08…B-16): no I/O, no frameworks, no clock of its own."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from zoneinfo import ZoneInfo

from billing_contracts.usage import DocumentKind, InvoiceChannel, UserRole

HELSINKI = ZoneInfo("Europe/Helsinki")

#: B-10: the document kinds that are vouchers; any other kind is recorded but never counted.
VOUCHER_KINDS: frozenset[DocumentKind] = frozenset(
    {
        DocumentKind.SALES_INVOICE,
        DocumentKind.PURCHASE_INVOICE,
        DocumentKind.TRAVEL_INVOICE,
        DocumentKind.EXPENSE_INVOICE,
        DocumentKind.PAYSLIP,
        DocumentKind.SALES_ORDER,
        DocumentKind.QUOTE_ORDER,
        DocumentKind.PURCHASE_ORDER,
        DocumentKind.MEMO_VOUCHER,
        DocumentKind.VAT_CALCULATION,
        DocumentKind.AUTHORITY_REPORT,
        DocumentKind.MASS_LETTER,
        DocumentKind.PAYMENT_REMINDER,
        DocumentKind.DOCUMENT,
        DocumentKind.DIRECT_BANK_TRANSFER,
    }
)

#: B-13: channels whose messages carry a per-message fee.
FEE_CHANNELS: frozenset[InvoiceChannel] = frozenset({InvoiceChannel.OPERATOR, InvoiceChannel.BANK})

#: B-16: roles that are free of charge in Tallennus.
FREE_ROLES: frozenset[UserRole] = frozenset({UserRole.MANAGEMENT_AUDITOR, UserRole.STAFF_ENTRY})

#: Events stamped further than this in the future are refused as implausible.
MAX_FUTURE_SKEW = timedelta(days=1)


def counts_as_voucher(kind: DocumentKind) -> bool:
    """B-10."""
    return kind in VOUCHER_KINDS


def carries_message_fee(channel: InvoiceChannel) -> bool:
    """B-13: operator and bank e-invoices are charged per message; email, paper and typed-in are not."""
    return channel in FEE_CHANNELS


def is_billable_user(roles: frozenset[UserRole]) -> bool:
    """B-16: a user is billed when any of their roles is a paid one."""
    return bool(roles - FREE_ROLES)


def month_of(at: datetime) -> str:
    """B-09: the Helsinki calendar month (`YYYY-MM`) of an aware timestamp."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("naive datetime")
    return month_at(at.timestamp())


def month_at(instant: float) -> str:
    """B-09: the Helsinki calendar month (`YYYY-MM`) of an instant in POSIX seconds.

    The hot path (one call per event): the month is found among Helsinki month starts as epoch
    seconds, instead of a time-zone conversion per event.
    """
    starts, names = _month_starts(2000, 2100)
    i = bisect_right(starts, instant) - 1
    if 0 <= i < len(names) - 1:
        return names[i]
    local = datetime.fromtimestamp(instant, HELSINKI)
    return f"{local.year:04d}-{local.month:02d}"


@cache
def _month_starts(first_year: int, last_year: int) -> tuple[list[float], list[str]]:
    starts: list[float] = []
    names: list[str] = []
    for year in range(first_year, last_year + 1):
        for mon in range(1, 13):
            starts.append(datetime(year, mon, 1, tzinfo=HELSINKI).timestamp())
            names.append(f"{year:04d}-{mon:02d}")
    return starts, names


def month_start(month: str) -> datetime:
    """First instant of a Helsinki month, as an aware datetime."""
    year, mon = (int(p) for p in month.split("-"))
    return datetime(year, mon, 1, tzinfo=HELSINKI)


def next_month(month: str) -> str:
    year, mon = (int(p) for p in month.split("-"))
    return f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"


def previous_month(month: str) -> str:
    year, mon = (int(p) for p in month.split("-"))
    return f"{year - (mon == 1):04d}-{(mon - 2) % 12 + 1:02d}"


def month_end(month: str) -> datetime:
    """First instant after a Helsinki month."""
    return month_start(next_month(month))


def close_is_due(month: str, now: datetime, grace: timedelta) -> bool:
    """A month may close once its end plus the grace period has passed."""
    return now >= month_end(month) + grace


def is_implausible_future(at: datetime, now: datetime) -> bool:
    return at > now + MAX_FUTURE_SKEW


@dataclass(frozen=True)
class Usage:
    """Billable usage of one environment in one month (what invoicing prices)."""

    vouchers: int = 0
    payees: int = 0
    einvoices_sent: int = 0
    einvoices_received: int = 0
    billable_users: int = 0
    signatures: int = 0
    billable_hours: dict[str, Decimal] = field(default_factory=dict)

    def minus(self, other: Usage) -> Usage:
        """The change from `other` to this usage (for late adjustments)."""
        products = set(self.billable_hours) | set(other.billable_hours)
        hours = {
            p: self.billable_hours.get(p, Decimal(0)) - other.billable_hours.get(p, Decimal(0))
            for p in products
        }
        return Usage(
            vouchers=self.vouchers - other.vouchers,
            payees=self.payees - other.payees,
            einvoices_sent=self.einvoices_sent - other.einvoices_sent,
            einvoices_received=self.einvoices_received - other.einvoices_received,
            billable_users=self.billable_users - other.billable_users,
            signatures=self.signatures - other.signatures,
            billable_hours={p: h for p, h in sorted(hours.items()) if h != 0},
        )

    def is_zero(self) -> bool:
        return self == Usage()
