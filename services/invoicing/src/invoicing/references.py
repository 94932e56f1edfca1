"""Finnish reference numbers, RF creditor references and business IDs (B-18)."""

from __future__ import annotations

import re

from stdnum import iso11649
from stdnum.fi import ytunnus
from stdnum.iso7064 import mod_97_10

from billing_contracts.references import reference_check_digit as _check_digit

# Finnish national reference (kotimainen viite): a base of 3–19 digits plus a
# check digit, 4–20 digits in all (Finanssiala "Kotimaisen viitteen rakenneohje").
MIN_BASE_DIGITS = 3
MAX_BASE_DIGITS = 19

_DIGITS = re.compile(r"^\d+$")
_RF = re.compile(r"^RF\d{2}[0-9A-Z]{1,21}$")
_BUSINESS_ID = re.compile(r"^\d{7}-\d$")


def _compact(text: str) -> str:
    return "".join(text.split())


def reference_check_digit(base: str) -> int:
    """Check digit of a national reference base: weights 7, 3, 1 from the right (B-18).

    The one implementation lives in `billing_contracts.references` (the contracts' `ReferenceNumber`
    and the Procountor emulator use it too)."""
    if not _DIGITS.fullmatch(base):
        raise ValueError(f"a reference base is digits only, got {base!r}")
    return _check_digit(base)


def make_reference(base: str | int) -> str:
    """The national reference for `base`: the base followed by its check digit (B-18).

    The base is 3–19 digits without a leading zero, because references are
    printed without leading zeros and a zero-led base would not survive that.
    """
    text = str(base) if isinstance(base, int) else _compact(base)
    if not _DIGITS.fullmatch(text):
        raise ValueError(f"a reference base is digits only, got {base!r}")
    if text.startswith("0"):
        raise ValueError(f"a reference base may not start with 0, got {base!r}")
    if not MIN_BASE_DIGITS <= len(text) <= MAX_BASE_DIGITS:
        raise ValueError(f"a reference base has {MIN_BASE_DIGITS}–{MAX_BASE_DIGITS} digits, got {len(text)}")
    return f"{text}{reference_check_digit(text)}"


def is_valid_reference(ref: str) -> bool:
    """Whether `ref` is a national reference with a valid check digit.

    Whitespace is ignored (the printed form has spaces). Leading zeros are
    accepted, as in the zero-padded 20-digit field of the bank barcode, but do
    not count towards the minimum of four digits.
    """
    text = _compact(ref)
    if not _DIGITS.fullmatch(text) or len(text) > MAX_BASE_DIGITS + 1:
        return False
    significant = text.lstrip("0")
    if len(significant) < MIN_BASE_DIGITS + 1:
        return False
    return reference_check_digit(significant[:-1]) == int(significant[-1])


def format_reference(ref: str) -> str:
    """The printed form: no leading zeros, groups of five digits from the right."""
    if not is_valid_reference(ref):
        raise ValueError(f"not a valid Finnish reference: {ref!r}")
    text = _compact(ref).lstrip("0")
    head = len(text) % 5
    groups = ([text[:head]] if head else []) + [text[i : i + 5] for i in range(head, len(text), 5)]
    return " ".join(groups)


def reference_for_invoice_number(invoice_number: int) -> str:
    """The national reference of an invoice: its invoice number as the base (B-18).

    Deterministic and readable: a payment's reference names its invoice
    without a lookup table, and unique invoice numbers give unique references.
    A base needs at least three digits, so invoice numbers start at 100; a
    smaller number is a configuration error of the number series, not padded,
    because padding would collide with a later real invoice number.
    """
    if invoice_number < 10 ** (MIN_BASE_DIGITS - 1):
        raise ValueError(f"invoice numbers used as reference bases start at 100, got {invoice_number}")
    return make_reference(invoice_number)


def make_rf_reference(national: str) -> str:
    """The RF creditor reference (ISO 11649) wrapping a national reference, e.g. `RF8512345672`.

    Returned in electronic form without spaces; see `format_rf_reference` for print. The check
    digits are ISO 7064 mod 97-10 over the body followed by `RF` (python-stdnum).
    """
    if not is_valid_reference(national):
        raise ValueError(f"not a valid Finnish reference: {national!r}")
    body = _compact(national).lstrip("0")
    return f"RF{mod_97_10.calc_check_digits(body + 'RF')}{body}"


def is_valid_rf_reference(ref: str) -> bool:
    """Whether `ref` is a valid RF creditor reference (ISO 11649, mod 97-10); spaces ignored."""
    text = _compact(ref).upper()
    return bool(_RF.fullmatch(text)) and bool(iso11649.is_valid(text))


def format_rf_reference(ref: str) -> str:
    """The printed form of an RF reference, in blocks of four: `RF85 1234 5672`."""
    if not is_valid_rf_reference(ref):
        raise ValueError(f"not a valid RF reference: {ref!r}")
    return str(iso11649.format(ref))


def is_valid_business_id(business_id: str) -> bool:
    """Whether `business_id` is a Finnish business ID (Y-tunnus) `NNNNNNN-C` with a valid check."""
    return bool(_BUSINESS_ID.fullmatch(business_id)) and bool(ytunnus.is_valid(business_id))
