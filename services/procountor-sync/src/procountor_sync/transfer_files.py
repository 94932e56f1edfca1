"""Procountor's import files, pure: hour entries as the payroll import CSV (I-04), invoices as the invoice import CSV (I-05).

Layouts from reference §8 (import files: `;`-separated, no header row, one record per line).
Where the reference is unsure, the choices are ours and fixed here (docs/procountor-sync.md):
decimal comma, Windows-1252 text, CRLF line ends, `;` removed from values (never allowed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from billing_contracts.invoicing import InvoiceIssuedV1

#: Invoice channel codes of field 26 (reference §8.1: 1 e-mail, 2 post, 3 e-invoice).
CHANNEL_CODES = {"email": "1", "paper": "2", "einvoice": "3"}
#: Our units → the unit texts Procountor's invoice import takes (e.g. `kpl`, `h`).
UNIT_TEXTS = {"month": "kk", "piece": "kpl", "person": "hlö", "message": "kpl", "user": "hlö", "hour": "h"}
INVOICE_HEADER_FIELDS = 44
ENCODING = "cp1252"


@dataclass(frozen=True)
class HourEntry:
    """One employee's hours on one day (I-04); `employee_id` is the person number Procountor knows."""

    entry_id: str
    employee_id: str
    work_date: date
    hours: Decimal
    service_product_code: str


def _text(value: str) -> str:
    # `;` separates fields and a line break ends the record: neither may appear inside a value.
    return value.replace(";", ",").replace("\r", " ").replace("\n", " ").strip()


def _decimal(value: Decimal) -> str:
    return format(value, "f").replace(".", ",")


def _day(value: date) -> str:
    return f"{value:%d.%m.%Y}"


def encode(lines: Iterable[Sequence[str]]) -> bytes:
    """Records joined by `;`, CRLF line ends, Windows-1252 (Procountor's character set)."""
    text = "".join(";".join(fields) + "\r\n" for fields in lines)
    return text.encode(ENCODING, errors="replace")


def payroll_lines(entries: Iterable[HourEntry], *, salary_type_code: str) -> list[list[str]]:
    """Salary data specification records (`E`), one per employee per salary type (reference §8.2).

    Columns A–F: `E`, employee, salary type code, name (empty: Procountor's own), quantity,
    unit price (empty: the employee's salary base). Hours of the same employee are summed.
    """
    hours: dict[str, Decimal] = {}
    for entry in entries:
        hours[entry.employee_id] = hours.get(entry.employee_id, Decimal(0)) + entry.hours
    return [
        ["E", _text(employee), salary_type_code, "", _decimal(total), ""]
        for employee, total in sorted(hours.items())
    ]


def _address(name: str, invoice: InvoiceIssuedV1) -> str:
    a = invoice.billing_address
    return "\\".join(_text(part) for part in (name, a.street, a.postal_code, a.city, a.country_code))


def invoice_lines(invoice: InvoiceIssuedV1, *, seller_iban: str) -> list[list[str]]:
    """One invoice: a header record (fields 1–44, reference §8.1) and one row record per line."""
    header = [""] * INVOICE_HEADER_FIELDS
    address = _address(invoice.payer_name, invoice)
    einvoice = invoice.einvoice_address
    values = {
        1: "M",  # sales invoice
        2: invoice.currency,
        3: invoice.reference_number,
        4: seller_iban,
        5: invoice.payer_business_id,
        6: "tilisiirto",
        7: _text(invoice.payer_name),
        9: "0",
        10: "f",  # unit prices are net
        11: "f",  # not a credit note
        13: _day(invoice.invoice_date),
        14: _day(max(ln.period_end for ln in invoice.lines)),
        15: _day(invoice.due_date),
        16: address,
        17: address,
        19: _text(f"Laskutuskausi {invoice.billing_period}"),
        20: _text(f"invoice {invoice.invoice_id}"),
        21: _text(invoice.billing_email or ""),
        23: "1",
        24: _decimal(invoice.total_gross),
        26: CHANNEL_CODES[invoice.billing_channel.value],
        27: _text(einvoice.address) if einvoice else "",
        29: "f",
        32: invoice.payer_business_id,
        37: _text(einvoice.operator) if einvoice else "",
        39: invoice.invoice_number,
        42: "FI",
    }
    for number, value in values.items():
        header[number - 1] = value
    rows = []
    for ln in sorted(invoice.lines, key=lambda line: line.line_no):
        row = [""] * INVOICE_HEADER_FIELDS
        row[1:9] = [
            _text(ln.description),
            _text(ln.product_code),
            _decimal(ln.quantity),
            UNIT_TEXTS.get(ln.unit, "kpl"),
            _decimal(ln.unit_price),
            "0",
            _decimal(ln.vat_rate),
            _text(f"{ln.environment_id} {ln.period_start:%d.%m.}-{ln.period_end:%d.%m.%Y}"),
        ]
        rows.append(row)
    return [header, *rows]


def invoice_import_file(invoices: Iterable[InvoiceIssuedV1], *, seller_iban: str) -> bytes:
    """Procountor's invoice import file (I-05) for the payers whose API is not enabled."""
    return encode(line for invoice in invoices for line in invoice_lines(invoice, seller_iban=seller_iban))


def payroll_import_file(entries: Iterable[HourEntry], *, salary_type_code: str) -> bytes:
    """Procountor's salary data import file (I-04) of these hour entries."""
    return encode(payroll_lines(entries, salary_type_code=salary_type_code))
