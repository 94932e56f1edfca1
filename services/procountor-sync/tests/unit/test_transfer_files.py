"""I-04 and I-05 import files, held to golden files written from the reference's layouts (§8)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

from billing_contracts.contracts import BillingChannel
from procountor_sync import transfer_files
from procountor_sync.transfer_files import HourEntry

from ..builders import invoice

GOLDEN = Path(__file__).parent / "golden"


def sample_invoice() -> object:
    issued = invoice(business_id="2077474-0", channel=BillingChannel.EINVOICE)
    return issued.model_copy(
        update={
            "invoice_id": "INV-100001",
            "invoice_number": "100001",
            "reference_number": "1000013",
            "payer_name": "Kahvila Aurinko; Oy",
        }
    )


def test_the_invoice_import_file_matches_its_golden_file() -> None:
    content = transfer_files.invoice_import_file([sample_invoice()], seller_iban="FI2112345600000785")  # type: ignore[list-item]

    assert content == (GOLDEN / "invoice-import.csv").read_bytes()


def test_the_invoice_import_file_has_a_44_field_header_and_rows_and_no_stray_separators() -> None:
    lines = (GOLDEN / "invoice-import.csv").read_bytes().decode(transfer_files.ENCODING).split("\r\n")

    header, *rows = [ln.split(";") for ln in lines if ln]
    assert len(header) == 44
    assert all(len(r) == 44 for r in rows)
    assert header[0] == "M"
    assert header[6] == "Kahvila Aurinko, Oy"  # `;` is never inside a value
    assert (header[12], header[14]) == ("02.11.2026", "12.11.2026")  # dd.mm.yyyy
    assert header[15] == "Kahvila Aurinko, Oy\\Mannerheimintie 1\\00100\\Helsinki\\FI"
    assert [r[4] for r in rows] == ["kk", "kpl"]
    assert rows[1][5] == "1,79"  # decimal comma


def test_the_payroll_file_sums_each_employees_hours_into_one_e_record() -> None:
    entries = [
        HourEntry("h1", "010190-123A", dt.date(2026, 10, 5), Decimal("7.5"), "CONSULTING"),
        HourEntry("h2", "010190-123A", dt.date(2026, 10, 6), Decimal("2.25"), "CONSULTING"),
        HourEntry("h3", "P-7", dt.date(2026, 10, 6), Decimal("1"), "CONSULTING"),
    ]

    content = transfer_files.payroll_import_file(entries, salary_type_code="1004")

    assert content == (GOLDEN / "payroll-import.csv").read_bytes()
    assert content.decode("cp1252").splitlines() == ["E;010190-123A;1004;;9,75;", "E;P-7;1004;;1;"]
