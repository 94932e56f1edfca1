"""Procountor's validation and arithmetic, as pure functions over parsed JSON bodies."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from billing_contracts.references import is_valid_business_id_check_digit, reference_check_digit
from procountor_emulator.registers import COUNTRIES, EINVOICE_OPERATORS, UNITS
from procountor_emulator.wire import FieldError, JsonObject

CENT = Decimal("0.01")

PARTNER_TYPES = frozenset({"CUSTOMER", "SUPPLIER", "PERSON"})
PARTNER_PAYMENT_METHODS = frozenset(
    {
        "BANK_TRANSFER",
        "DIRECT_DEBIT",
        "DIRECT_PAYMENT",
        "CLEARING",
        "CREDIT_CARD_CHARGE",
        "FOREIGN_PAYMENT",
        "OTHER",
        "CASH",
        "DOMESTIC_PAYMENT_PLUSGIRO",
        "DOMESTIC_PAYMENT_BANKGIRO",
        "DOMESTIC_PAYMENT_CREDITOR",
        "DKLMPKRE",
        "NETS",
    }
)
PARTNER_INVOICE_CHANNELS = frozenset(
    {"EMAIL", "MAIL", "ELECTRONIC_INVOICE", "EDIFACT", "PAPER_INVOICE", "NO_SENDING"}
)
INVOICE_PAYMENT_METHODS = PARTNER_PAYMENT_METHODS - {"DIRECT_DEBIT"}
INVOICE_CHANNELS = frozenset({"EMAIL", "MAIL", "ELECTRONIC_INVOICE", "NO_SENDING"})
DELIVERY_METHODS = frozenset({"MAILING", "ONLINE", "COURIER", "VRCARGO", "BUS", "FREIGHT", "RETRIEVABLE"})
LANGUAGES = frozenset({"DANISH", "ENGLISH", "ESTONIAN", "FINNISH", "NORWEGIAN", "SWEDISH"})
INVOICE_TYPES = frozenset(
    {
        "SALES_INVOICE",
        "SALES_ORDER",
        "PURCHASE_INVOICE",
        "PURCHASE_ORDER",
        "TRAVEL_INVOICE",
        "BILL_OF_CHARGES",
    }
)
EMULATED_INVOICE_TYPES = frozenset({"SALES_INVOICE"})
INVOICE_STATUSES = frozenset(
    {
        "EMPTY",
        "UNFINISHED",
        "NOT_SENT",
        "SENT",
        "RECEIVED",
        "PAID",
        "PAYMENT_DENIED",
        "VERIFIED",
        "APPROVED",
        "INVALIDATED",
        "PAYMENT_QUEUED",
        "PARTLY_PAID",
        "PAYMENT_SENT_TO_BANK",
        "MARKED_PAID",
        "STARTED",
        "INVOICED",
        "OVERRIDDEN",
        "DELETED",
        "UNSAVED",
        "PAYMENT_TRANSACTION_REMOVED",
    }
)
BANK_REFERENCE_CODE_TYPES = frozenset(
    {"RF", "FI", "OCR", "KID", "GIK01", "GIK04", "GIK15", "FIK71", "FIK73", "FIK75"}
)
PRODUCT_TYPES = frozenset({"PURCHASE", "SALES", "TRAVEL"})
BUSINESS_ID_PATTERN = re.compile(r"^\d{7}-\d$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Known properties per object (Procountor's OpenAPI, API 26.04): anything else is refused with 400.
INVOICE_FIELDS = frozenset(
    [
        "id",
        "partnerId",
        "type",
        "status",
        "date",
        "paymentDate",
        "counterParty",
        "billingAddress",
        "deliveryAddress",
        "paymentInfo",
        "deliveryTermsInfo",
        "extraInfo",
        "discountPercent",
        "orderReference",
        "invoiceRows",
        "invoiceNumber",
        "vatStatus",
        "originalInvoiceNumber",
        "deliveryStartDate",
        "deliveryEndDate",
        "deliveryMethod",
        "deliveryInstructions",
        "invoiceChannel",
        "invoiceOperatorInfo",
        "penaltyPercent",
        "language",
        "invoiceTemplateId",
        "additionalInformation",
        "vatCountry",
        "ledgerReceiptId",
        "notes",
        "factoringContractId",
        "factoringText",
        "sum",
        "travelInformationItems",
        "invoiceApprovalInformation",
        "attachments",
        "orderNumber",
        "agreementNumber",
        "accountingCode",
        "deliverySite",
        "tenderReference",
        "buyerReferenceIdentifier",
        "sellerReferenceIdentifier",
        "version",
        "invoiceSumInfo",
        "creatorId",
        "isOffer",
        "created",
    ]
)
COUNTER_PARTY_FIELDS = frozenset(
    [
        "contactPersonName",
        "identifier",
        "taxCode",
        "customerNumber",
        "email",
        "bccAddresses",
        "counterPartyAddress",
        "bankAccount",
        "einvoiceAddress",
    ]
)
PAYMENT_INFO_FIELDS = frozenset(
    [
        "paymentMethod",
        "currency",
        "bankAccount",
        "dueDate",
        "newDueDate",
        "currencyRate",
        "paymentTermPercentage",
        "cashDiscount",
        "bankReferenceCode",
        "bankReferenceCodeType",
        "clearingCode",
    ]
)
ROW_FIELDS = frozenset(
    [
        "id",
        "productId",
        "product",
        "productCode",
        "quantity",
        "unit",
        "unitPrice",
        "discountPercent",
        "vatPercent",
        "vatStatus",
        "comment",
        "startDate",
        "endDate",
        "headerText",
        "explanationText",
    ]
)
ADDRESS_FIELDS = frozenset(["name", "specifier", "street", "zip", "city", "country", "subdivision"])
PARTNER_FIELDS = frozenset(
    [
        "id",
        "name",
        "type",
        "address",
        "billingAddress",
        "deliveryAddress",
        "invoicingInfo",
        "attachments",
        "contactPersons",
        "additionalInfo",
        "paymentInfo",
        "registryInfo",
        "version",
    ]
)
INVOICING_INFO_FIELDS = frozenset(
    [
        "customerNumber",
        "identifier",
        "identifierType",
        "ovt",
        "invoiceChannel",
        "contactPerson",
        "language",
        "email",
        "bccAddresses",
        "denyEinvoiceReminders",
        "orderReference",
        "sellerReferenceIdentifier",
        "buyerReferenceIdentifier",
        "orderNumber",
        "agreementNumber",
        "accountingCode",
        "deliverySite",
        "tenderReference",
        "einvoiceAddress",
        "einvoiceOperator",
    ]
)
PARTNER_PAYMENT_FIELDS = frozenset(
    [
        "factoringContractId",
        "paymentMethod",
        "bankAccount",
        "paymentTermDays",
        "paymentTermPercentage",
        "penalInterestRate",
        "discountPercentage",
        "cashDiscount",
        "currency",
        "deliveryMethod",
        "clearingCode",
        "bic",
        "customerAccountNumber",
    ]
)
PRODUCT_FIELDS = frozenset(
    [
        "id",
        "type",
        "name",
        "code",
        "unit",
        "discount",
        "price",
        "vat",
        "active",
        "defaultAccount",
        "vatStatus",
        "currency",
        "productLocalizations",
        "productGroupId",
        "startDate",
        "endDate",
        "bookkeepingAccount",
        "version",
    ]
)
PAYMENT_FIELDS = frozenset(["paymentDate", "amount", "currency", "description", "paymentMethodType"])
PAYMENT_METHOD_TYPES = frozenset(
    [
        "ADJUSTMENT",
        "BANK_STATEMENT",
        "CASH",
        "CHARGE_CARD",
        "CORRECTION",
        "CREDIT_LOSS",
        "CREDIT_NOTE",
        "EXTERNAL_BANK_TRANSFER",
        "SET_OFF",
    ]
)
ADDRESS_LIMITS = {
    "name": 80,
    "specifier": 80,
    "street": 80,
    "zip": 20,
    "city": 40,
    "subdivision": 35,
}
DATE_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")


def blank(path: str) -> FieldError:
    return FieldError(path, f"Value of the '{path}' cannot be blank.")


def invalid(path: str, detail: str) -> FieldError:
    return FieldError(path, f"Invalid value of the '{path}': {detail}.")


class Checker:
    """Collects field errors while walking one request body."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, error: FieldError) -> None:
        self.errors.append(error)

    def obj(self, parent: JsonObject, key: str, path: str, *, required: bool) -> JsonObject | None:
        value = parent.get(key)
        if value is None:
            if required:
                self.add(blank(path))
            return None
        if not isinstance(value, dict):
            self.add(invalid(path, "expected an object"))
            return None
        return value

    def text(
        self,
        parent: JsonObject,
        key: str,
        path: str,
        *,
        required: bool,
        max_length: int | None = None,
        min_length: int = 1,
    ) -> str | None:
        value = parent.get(key)
        if value is None or (required and value == ""):
            if required:
                self.add(blank(path))
            return None
        if not isinstance(value, str):
            self.add(invalid(path, "expected a string"))
            return None
        if value and len(value) < min_length:
            self.add(invalid(path, f"at least {min_length} characters"))
        if max_length is not None and len(value) > max_length:
            self.add(invalid(path, f"at most {max_length} characters"))
        return value

    def enum(
        self, parent: JsonObject, key: str, path: str, allowed: Collection[str], *, required: bool
    ) -> str | None:
        value = self.text(parent, key, path, required=required)
        if value is not None and value not in allowed:
            self.add(invalid(path, f"'{value}' is not one of {', '.join(sorted(allowed))}"))
            return None
        return value

    def boolean(self, parent: JsonObject, key: str, path: str, *, required: bool) -> bool | None:
        value = parent.get(key)
        if value is None:
            if required:
                self.add(blank(path))
            return None
        if not isinstance(value, bool):
            self.add(invalid(path, "expected true or false"))
            return None
        return value

    def integer(self, parent: JsonObject, key: str, path: str, *, required: bool) -> int | None:
        value = parent.get(key)
        if value is None:
            if required:
                self.add(blank(path))
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(invalid(path, "expected an integer"))
            return None
        return value

    def number(
        self,
        parent: JsonObject,
        key: str,
        path: str,
        *,
        required: bool,
        minimum: Decimal | None = None,
        maximum: Decimal | None = None,
        scale: int | None = None,
    ) -> Decimal | None:
        value = parent.get(key)
        if value is None:
            if required:
                self.add(blank(path))
            return None
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            self.add(invalid(path, "expected a number"))
            return None
        number = Decimal(value)
        if minimum is not None and number < minimum:
            self.add(invalid(path, f"must be at least {minimum}"))
        if maximum is not None and number > maximum:
            self.add(invalid(path, f"must be at most {maximum}"))
        exponent = number.as_tuple().exponent
        if scale is not None and isinstance(exponent, int) and -exponent > scale:
            self.add(invalid(path, f"at most {scale} decimals"))
        return number

    def day(self, parent: JsonObject, key: str, path: str, *, required: bool) -> date | None:
        value = self.text(parent, key, path, required=required)
        if value is None:
            return None
        if not DATE_PATTERN.match(value):
            self.add(invalid(path, "expected a date yyyy-mm-dd"))
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.add(invalid(path, "no such date"))
            return None

    def address(self, parent: JsonObject, key: str, path: str, *, required: bool) -> JsonObject | None:
        address = self.obj(parent, key, path, required=required)
        if address is None:
            return None
        self.unknown(address, ADDRESS_FIELDS, path)
        for part, limit in ADDRESS_LIMITS.items():
            self.text(address, part, f"{path}.{part}", required=False, max_length=limit)
        self.enum(address, "country", f"{path}.country", COUNTRIES, required=False)
        return address

    def unknown(self, body: JsonObject, known: Collection[str], path: str = "") -> None:
        """Procountor refuses properties it does not know (no silent dropping)."""
        for key in sorted(set(body) - set(known)):
            where = f"{path}.{key}" if path else key
            self.add(FieldError(where, f"Unrecognized field '{where}'."))

    def business_id(self, value: str | None, path: str, *, required_shape: bool) -> None:
        """A Finnish business ID (Y-tunnus) must carry its check digit (7, 9, 10, 5, 8, 4, 2 mod 11)."""
        if value is None:
            return
        if BUSINESS_ID_PATTERN.match(value):
            if not is_valid_business_id(value):
                self.add(FieldError(path, "INVALID_BUSINESS_ID"))
        elif required_shape:
            self.add(invalid(path, "expected a business ID NNNNNNN-C"))

    def iban(self, account: Any, path: str) -> None:
        if isinstance(account, dict):
            self.unknown(account, {"accountNumber", "bic"}, path)
            number = account.get("accountNumber")
            if number is not None and (not isinstance(number, str) or not is_valid_iban(number)):
                self.add(FieldError(f"{path}.accountNumber", "INVALID_IBAN"))

    def operator(self, value: Any, path: str) -> None:
        if value is not None and value not in EINVOICE_OPERATORS:
            self.add(FieldError(path, "UNKNOWN_EINVOICE_OPERATOR"))

    def email(self, value: Any, path: str, *, required: bool) -> None:
        if value is None or value == "":
            if required:
                self.add(blank(path))
            return
        if not isinstance(value, str) or not EMAIL_PATTERN.match(value):
            self.add(invalid(path, "expected an e-mail address"))


def validate_business_partner(body: JsonObject) -> list[FieldError]:
    """The POST/PUT rules of `BusinessPartner`: name 1–80, type, paymentInfo.paymentMethod, address."""
    check = Checker()
    check.unknown(body, PARTNER_FIELDS)
    check.text(body, "name", "name", required=True, max_length=80)
    partner_type = check.enum(body, "type", "type", PARTNER_TYPES, required=True)
    if partner_type == "PERSON":
        check.add(invalid("type", "persons are created with POST /persons"))
    payment = check.obj(body, "paymentInfo", "paymentInfo", required=True)
    if payment is not None:
        check.unknown(payment, PARTNER_PAYMENT_FIELDS, "paymentInfo")
        check.enum(
            payment,
            "paymentMethod",
            "paymentInfo.paymentMethod",
            PARTNER_PAYMENT_METHODS,
            required=True,
        )
        bank_account = payment.get("bankAccount")
        if bank_account is not None and not is_valid_iban(str(bank_account)):
            check.add(FieldError("paymentInfo.bankAccount", "INVALID_IBAN"))
        term = payment.get("paymentTermDays")
        if term is not None and not isinstance(term, str):
            check.add(invalid("paymentInfo.paymentTermDays", "expected a string"))
    check.address(body, "address", "address", required=partner_type == "CUSTOMER")
    check.address(body, "billingAddress", "billingAddress", required=False)
    check.address(body, "deliveryAddress", "deliveryAddress", required=False)
    invoicing = check.obj(body, "invoicingInfo", "invoicingInfo", required=False)
    if invoicing is not None:
        check.unknown(invoicing, INVOICING_INFO_FIELDS, "invoicingInfo")
        channel = check.enum(
            invoicing,
            "invoiceChannel",
            "invoicingInfo.invoiceChannel",
            PARTNER_INVOICE_CHANNELS,
            required=False,
        )
        identifier = check.text(invoicing, "identifier", "invoicingInfo.identifier", required=False)
        check.business_id(
            identifier,
            "invoicingInfo.identifier",
            required_shape=invoicing.get("identifierType") == "BUSINESS_ID",
        )
        check.text(invoicing, "customerNumber", "invoicingInfo.customerNumber", required=False)
        check.email(invoicing.get("email"), "invoicingInfo.email", required=channel == "EMAIL")
        check.operator(invoicing.get("einvoiceOperator"), "invoicingInfo.einvoiceOperator")
        if channel == "ELECTRONIC_INVOICE" and not invoicing.get("einvoiceAddress"):
            check.add(blank("invoicingInfo.einvoiceAddress"))
    return check.errors


def validate_product(body: JsonObject) -> list[FieldError]:
    """The rules of `Product`: type, name ≤100, discount 0–100, price, active, currency."""
    check = Checker()
    check.unknown(body, PRODUCT_FIELDS)
    check.enum(body, "type", "type", PRODUCT_TYPES, required=True)
    check.text(body, "name", "name", required=True, max_length=100)
    check.text(body, "code", "code", required=False, max_length=40)
    check.number(body, "discount", "discount", required=True, minimum=Decimal(0), maximum=Decimal(100))
    check.number(body, "price", "price", required=True)
    check.boolean(body, "active", "active", required=True)
    currency = check.text(body, "currency", "currency", required=True)
    if currency is not None and not CURRENCY_PATTERN.match(currency):
        check.add(invalid("currency", "expected an ISO 4217 code"))
    check.enum(body, "unit", "unit", UNITS, required=False)
    check.number(body, "vat", "vat", required=False, minimum=Decimal(0), maximum=Decimal(100))
    return check.errors


def finnish_check_digit(base: str) -> int:
    """The 7-3-1 check digit of a Finnish reference number base: the contracts' one implementation."""
    return reference_check_digit(base)


def finnish_reference(base_number: int) -> str:
    """A Finnish reference number built from a base number."""
    base = str(base_number)
    return base + str(finnish_check_digit(base))


def is_valid_bank_reference(code: str) -> bool:
    """True for a Finnish (7-3-1, 4–20 digits) or an RF creditor reference (ISO 11649, mod 97)."""
    compact = code.replace(" ", "").upper()
    if compact.startswith("RF"):
        if not re.fullmatch(r"RF\d{2}[0-9A-Z]{1,21}", compact):
            return False
        rearranged = compact[4:] + compact[:4]
        digits = "".join(str(int(ch, 36)) for ch in rearranged)
        return int(digits) % 97 == 1
    if not re.fullmatch(r"\d{4,20}", compact):
        return False
    return finnish_check_digit(compact[:-1]) == int(compact[-1])


def validate_sales_invoice(
    body: JsonObject,
    *,
    vat_rates: Collection[Decimal],
    vat_statuses: Collection[int],
    partner_exists: Callable[[int], bool],
    partner_active: Callable[[int], bool] = lambda _: True,
) -> list[FieldError]:
    """The POST/PUT rules of a sales `Invoice` (§6.2, §6.3 and the 22.11 e-invoice address rule).

    **Decision (the reference is silent):** an invoice to an inactive business partner
    (`registryInfo.active` false) is refused; the partner is reactivated first (`PUT`, §4).
    """
    check = Checker()
    check.unknown(body, INVOICE_FIELDS)
    invoice_type = check.enum(body, "type", "type", INVOICE_TYPES, required=True)
    if invoice_type is not None and invoice_type not in EMULATED_INVOICE_TYPES:
        check.add(invalid("type", "the emulator handles SALES_INVOICE only"))
    partner_id = check.integer(body, "partnerId", "partnerId", required=False)
    if partner_id is not None and not partner_exists(partner_id):
        check.add(invalid("partnerId", f"no business partner {partner_id}"))
    elif partner_id is not None and not partner_active(partner_id):
        check.add(invalid("partnerId", f"business partner {partner_id} is inactive"))
    bill_date = check.day(body, "date", "date", required=True)
    channel = check.enum(body, "invoiceChannel", "invoiceChannel", INVOICE_CHANNELS, required=True)
    check.enum(body, "language", "language", LANGUAGES, required=True)
    check.enum(body, "deliveryMethod", "deliveryMethod", DELIVERY_METHODS, required=False)
    vat_status = check.integer(body, "vatStatus", "vatStatus", required=True)
    if vat_status is not None and vat_status not in vat_statuses:
        check.add(invalid("vatStatus", f"{vat_status} is not a VAT status of the company"))
    check.text(body, "originalInvoiceNumber", "originalInvoiceNumber", required=False, max_length=40)
    check.text(body, "orderReference", "orderReference", required=False, max_length=70)
    check.text(body, "additionalInformation", "additionalInformation", required=False, max_length=10000)
    check.number(
        body,
        "discountPercent",
        "discountPercent",
        required=True,
        minimum=Decimal(0),
        maximum=Decimal(100),
        scale=4,
    )

    counter_party = check.obj(body, "counterParty", "counterParty", required=True)
    party_address: JsonObject | None = None
    einvoice: JsonObject | None = None
    if counter_party is not None:
        check.unknown(counter_party, COUNTER_PARTY_FIELDS, "counterParty")
        check.text(
            counter_party, "contactPersonName", "counterParty.contactPersonName", required=False,
            max_length=70,
        )  # fmt: skip
        check.business_id(
            counter_party.get("identifier") if isinstance(counter_party.get("identifier"), str) else None,
            "counterParty.identifier",
            required_shape=False,
        )
        check.email(counter_party.get("email"), "counterParty.email", required=channel == "EMAIL")
        check.iban(counter_party.get("bankAccount"), "counterParty.bankAccount")
        party_address = check.address(
            counter_party, "counterPartyAddress", "counterParty.counterPartyAddress", required=True
        )
        if party_address is not None:
            check.text(
                party_address,
                "name",
                "counterParty.counterPartyAddress.name",
                required=True,
                max_length=80,
            )
        einvoice = check.obj(counter_party, "einvoiceAddress", "counterParty.einvoiceAddress", required=False)
        if einvoice is not None:
            check.unknown(einvoice, {"operator", "address", "ediId"}, "counterParty.einvoiceAddress")
            check.operator(einvoice.get("operator"), "counterParty.einvoiceAddress.operator")
    billing_address = check.address(body, "billingAddress", "billingAddress", required=False)
    check.address(body, "deliveryAddress", "deliveryAddress", required=False)
    # An omitted billing address is copied from the counterparty address.
    effective_billing = billing_address if "billingAddress" in body else party_address

    if channel == "ELECTRONIC_INVOICE" and counter_party is not None:
        for path, address in (
            ("billingAddress", effective_billing),
            ("counterParty.counterPartyAddress", party_address),
        ):
            for part in ("street", "zip", "city"):
                if not (address or {}).get(part):
                    check.add(blank(f"{path}.{part}"))
        country = (party_address or {}).get("country") or "FINLAND"
        if not (einvoice or {}).get("address"):
            check.add(blank("counterParty.einvoiceAddress.address"))
        if country == "FINLAND" and not (einvoice or {}).get("operator"):
            check.add(blank("counterParty.einvoiceAddress.operator"))
    if channel == "MAIL":
        complete = [
            a for a in (effective_billing, party_address)
            if a is not None and all(a.get(p) for p in ("street", "zip", "city"))
        ]  # fmt: skip
        if not complete:
            for part in ("street", "zip", "city"):
                check.add(blank(f"billingAddress.{part}"))

    payment = check.obj(body, "paymentInfo", "paymentInfo", required=True)
    if payment is not None:
        check.unknown(payment, PAYMENT_INFO_FIELDS, "paymentInfo")
        check.iban(payment.get("bankAccount"), "paymentInfo.bankAccount")
        check.enum(
            payment,
            "paymentMethod",
            "paymentInfo.paymentMethod",
            INVOICE_PAYMENT_METHODS,
            required=True,
        )
        currency = check.text(payment, "currency", "paymentInfo.currency", required=True)
        if currency is not None and not CURRENCY_PATTERN.match(currency):
            check.add(invalid("paymentInfo.currency", "expected an ISO 4217 code"))
        due = check.day(payment, "dueDate", "paymentInfo.dueDate", required=True)
        check.number(
            payment,
            "currencyRate",
            "paymentInfo.currencyRate",
            required=True,
            minimum=Decimal("0.000001"),
        )
        new_due = check.day(payment, "newDueDate", "paymentInfo.newDueDate", required=False)
        if new_due is not None and bill_date is not None and new_due < bill_date:
            check.add(FieldError("paymentInfo.newDueDate", "DUE_DATE_BEFORE_BILL_DATE"))
        if due is not None and bill_date is not None:
            if due < bill_date:
                check.add(FieldError("paymentInfo.dueDate", "DUE_DATE_BEFORE_BILL_DATE"))
            elif (due - bill_date).days > 999:
                check.add(invalid("paymentInfo.dueDate", "payment term is at most 999 days"))
        reference = payment.get("bankReferenceCode")
        if reference is not None:
            if not isinstance(reference, str):
                check.add(invalid("paymentInfo.bankReferenceCode", "expected a string"))
            elif reference != "" and not is_valid_bank_reference(reference):
                check.add(FieldError("paymentInfo.bankReferenceCode", "INVALID_REFERENCE_CODE"))
        check.enum(
            payment,
            "bankReferenceCodeType",
            "paymentInfo.bankReferenceCodeType",
            BANK_REFERENCE_CODE_TYPES,
            required=False,
        )

    extra = check.obj(body, "extraInfo", "extraInfo", required=True)
    if extra is not None:
        check.unknown(extra, {"accountingByRow", "unitPricesIncludeVat"}, "extraInfo")
        check.boolean(extra, "accountingByRow", "extraInfo.accountingByRow", required=True)
        check.boolean(extra, "unitPricesIncludeVat", "extraInfo.unitPricesIncludeVat", required=True)

    rows = body.get("invoiceRows")
    if not isinstance(rows, list) or not rows:
        check.add(FieldError("invoiceRows", "An invoice must have at least one row."))
    else:
        for index, row in enumerate(rows):
            _check_row(check, row, f"invoiceRows[{index}]", vat_rates)
    return check.errors


def _check_row(check: Checker, row: Any, path: str, vat_rates: Collection[Decimal]) -> None:
    if not isinstance(row, dict):
        check.add(invalid(path, "expected an object"))
        return
    check.unknown(row, ROW_FIELDS, path)
    check.text(row, "product", f"{path}.product", required=True)
    check.text(row, "productCode", f"{path}.productCode", required=False, max_length=40)
    check.number(row, "quantity", f"{path}.quantity", required=True)
    check.enum(row, "unit", f"{path}.unit", UNITS, required=True)
    check.number(row, "unitPrice", f"{path}.unitPrice", required=True)
    check.number(
        row,
        "discountPercent",
        f"{path}.discountPercent",
        required=True,
        minimum=Decimal(0),
        maximum=Decimal(100),
    )
    vat = check.number(row, "vatPercent", f"{path}.vatPercent", required=True)
    if vat is not None and vat not in vat_rates:
        check.add(invalid(f"{path}.vatPercent", f"{vat} is not a VAT rate in use"))
    for key, limit in (("comment", 512), ("headerText", 512), ("explanationText", 512)):
        check.text(row, key, f"{path}.{key}", required=False, max_length=limit)
    check.day(row, "startDate", f"{path}.startDate", required=False)
    check.day(row, "endDate", f"{path}.endDate", required=False)


def to_cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def invoice_sum_info(body: JsonObject) -> JsonObject:
    """Totals of a validated invoice: VAT per rate on the sum of that rate's row nets, half-up cents.

    Row amounts stay unrounded until they are summed per VAT rate, so that a many-row invoice does
    not accumulate rounding error; with gross unit prices the VAT is extracted from the gross sum.
    """
    prices_include_vat = bool(body["extraInfo"]["unitPricesIncludeVat"])
    invoice_factor = 1 - Decimal(body["discountPercent"]) / 100
    per_rate: dict[Decimal, Decimal] = {}
    for row in body["invoiceRows"]:
        amount = (
            Decimal(row["quantity"])
            * Decimal(row["unitPrice"])
            * (1 - Decimal(row["discountPercent"]) / 100)
            * invoice_factor
        )
        rate = Decimal(row["vatPercent"])
        per_rate[rate] = per_rate.get(rate, Decimal(0)) + amount
    net_total = vat_total = Decimal("0.00")
    for rate, amount in per_rate.items():
        if prices_include_vat:
            gross = to_cents(amount)
            vat = to_cents(gross * rate / (100 + rate))
            net = gross - vat
        else:
            net = to_cents(amount)
            vat = to_cents(net * rate / 100)
        net_total += net
        vat_total += vat
    return {
        "currency": body["paymentInfo"]["currency"],
        "excludingVatTotal": net_total,
        "vatSumTotal": vat_total,
        "invoiceSumTotal": net_total + vat_total,
    }


def validate_payment(body: JsonObject, *, credit_invoice: bool = False) -> list[FieldError]:
    """The `markpaid` body: paymentDate, amount, currency, description, paymentMethodType.

    A credit invoice (negative total) is settled with a negative `CREDIT_NOTE` amount; every other
    payment is positive.
    """
    check = Checker()
    check.unknown(body, PAYMENT_FIELDS)
    check.day(body, "paymentDate", "paymentDate", required=True)
    method = check.enum(body, "paymentMethodType", "paymentMethodType", PAYMENT_METHOD_TYPES, required=False)
    amount = check.number(body, "amount", "amount", required=True, scale=2)
    if amount is not None:
        if credit_invoice and (method != "CREDIT_NOTE" or amount > Decimal("-0.01")):
            check.add(invalid("amount", "a credit invoice is settled with a negative CREDIT_NOTE amount"))
        elif not credit_invoice and amount < Decimal("0.01"):
            check.add(invalid("amount", "must be at least 0.01"))
    currency = check.text(body, "currency", "currency", required=True)
    if currency is not None and not CURRENCY_PATTERN.match(currency):
        check.add(invalid("currency", "expected an ISO 4217 code"))
    check.text(body, "description", "description", required=False, max_length=140)
    return check.errors


def is_valid_business_id(value: str) -> bool:
    """The Y-tunnus check digit: weights 7, 9, 10, 5, 8, 4, 2; remainder 1 is never issued."""
    return bool(BUSINESS_ID_PATTERN.match(value)) and is_valid_business_id_check_digit(value)


def is_valid_iban(value: str) -> bool:
    """ISO 13616: letters, no spaces (Procountor wants none), mod 97 == 1; Finnish IBANs are 18 long."""
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{10,30}", value):
        return False
    if value.startswith("FI") and len(value) != 18:
        return False
    rearranged = value[4:] + value[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1
