"""Pure receivables rules: credit notes (what may be credited, their VAT) and the B-06 allocation."""

from __future__ import annotations

from decimal import Decimal

import pytest

from invoicing.calendar import YearMonth
from invoicing.receivables.domain import (
    CreditRefusedError,
    InvoicedLine,
    credit_lines,
    credit_vat,
    creditable_lines,
)

D = Decimal
OCT = YearMonth(2026, 10)
VAT = D("25.5")


# --- credit notes ---


def invoiced(
    line_no: int, net: str, *, qty: str = "1", software: bool = True, env: str = "env-1"
) -> InvoicedLine:
    return InvoicedLine(
        line_no=line_no,
        environment_id=env,
        product_code=f"P{line_no}",
        description=f"line {line_no}",
        period_start=OCT.first_day,
        period_end=OCT.last_day,
        quantity=D(qty),
        unit="piece",
        unit_price=D(net) / D(qty),
        net=D(net),
        vat_rate=VAT,
        is_software=software,
    )


def test_a_discount_is_shared_among_the_software_lines_it_reduced_by_their_nets() -> None:
    creditable = creditable_lines(
        [
            invoiced(1, "39.00"),
            invoiced(2, "5.37", qty="3"),
            invoiced(3, "-22.19"),
            invoiced(4, "75.00", software=False),
        ]
    )
    assert {n: c.net for n, c in creditable.items()} == {1: D("19.50"), 2: D("2.68"), 4: D("75.00")}
    assert (creditable[1].reduced, creditable[4].reduced) == (True, False)


def test_crediting_part_of_a_line_rounds_its_share_and_the_rest_takes_exactly_what_is_left() -> None:
    creditable = creditable_lines([invoiced(1, "5.37", qty="3")])
    first = credit_lines(creditable, {}, {1: D(1)})
    assert [(c.quantity, c.net) for c in first] == [(D(1), D("1.79"))]
    rest = credit_lines(creditable, {1: (D(1), D("1.79"))}, None)
    assert [(c.quantity, c.net) for c in rest] == [(D(2), D("3.58"))]
    with pytest.raises(CreditRefusedError, match="nothing left"):
        credit_lines(creditable, {1: (D(3), D("5.37"))}, None)


def test_the_credit_that_completes_an_invoice_gives_back_the_rest_of_its_vat() -> None:
    creditable = creditable_lines([invoiced(1, "1.79")])
    lines_ = credit_lines(creditable, {}, None)
    assert credit_vat(lines_, completes_invoice=False, invoice_vat={VAT: D("3.20")}, credited_vat={})[
        0
    ].vat == D("0.46")
    assert credit_vat(
        lines_, completes_invoice=True, invoice_vat={VAT: D("3.20")}, credited_vat={VAT: D("2.76")}
    )[0].vat == D("0.44")
