"""Procountor sync's rules, pure: mapping to Procountor's bodies, totals, retries, the conflict rule (I-01…I-05).

No I/O, no clock: functions of the data, the date and the settings they are given.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from billing_contracts.contracts import BillingChannel
from billing_contracts.invoicing import (
    ContractChangedV1,
    CreditNoteIssuedV1,
    InvoiceIssuedV1,
    InvoiceLine,
    RefundRecordedV1,
)
from billing_contracts.procountor import ProcountorPaymentStatus

CENT = Decimal("0.01")
JsonObject = dict[str, Any]

# --- closed lists ------------------------------------------------------------------------------

#: Our line units → Procountor's unit list (`InvoiceRow.unit`, `Product.unit`).
UNITS: Mapping[str, str] = {
    "month": "MONTH",
    "piece": "PIECE",
    "person": "PERSON",
    "message": "PIECE",
    "user": "PERSON",
    "hour": "HOUR",
    "signature": "PIECE",
}

#: Our billing channels → Procountor's `invoiceChannel` (B-21).
CHANNELS: Mapping[BillingChannel, str] = {
    BillingChannel.EINVOICE: "ELECTRONIC_INVOICE",
    BillingChannel.EMAIL: "EMAIL",
    BillingChannel.PAPER: "MAIL",
}
#: And back: what a channel set in Procountor means for billing.
CHANNEL_OF: Mapping[str, BillingChannel] = {
    "ELECTRONIC_INVOICE": BillingChannel.EINVOICE,
    "EDIFACT": BillingChannel.EINVOICE,
    "EMAIL": BillingChannel.EMAIL,
    "MAIL": BillingChannel.PAPER,
    "PAPER_INVOICE": BillingChannel.PAPER,
}

#: ISO 3166-1 alpha-2 → Procountor's `country` list (its upper-case English names).
COUNTRY_BY_ISO = {
    "AD": "ANDORRA",
    "AE": "UNITED_ARAB_EMIRATES",
    "AF": "AFGHANISTAN",
    "AG": "ANTIGUA_AND_BARBUDA",
    "AI": "ANGUILLA",
    "AL": "ALBANIA",
    "AM": "ARMENIA",
    "AO": "ANGOLA",
    "AQ": "ANTARCTICA",
    "AR": "ARGENTINA",
    "AS": "AMERICAN_SAMOA",
    "AT": "AUSTRIA",
    "AU": "AUSTRALIA",
    "AW": "ARUBA",
    "AX": "ALAND_ISLANDS",
    "AZ": "AZERBAIJAN",
    "BA": "BOSNIA_AND_HERZEGOVINA",
    "BB": "BARBADOS",
    "BD": "BANGLADESH",
    "BE": "BELGIUM",
    "BF": "BURKINA_FASO",
    "BG": "BULGARIA",
    "BH": "BAHRAIN",
    "BI": "BURUNDI",
    "BJ": "BENIN",
    "BL": "SAINT_BARTHELEMY",
    "BM": "BERMUDA",
    "BN": "BRUNEI_DARUSSALAM",
    "BO": "PLURINATIONAL_STATE_OF_BOLIVIA",
    "BQ": "SINT_EUSTATIUS_AND_SABA_BONAIRE",
    "BR": "BRAZIL",
    "BS": "BAHAMAS",
    "BT": "BHUTAN",
    "BV": "BOUVET_ISLAND",
    "BW": "BOTSWANA",
    "BY": "BELARUS",
    "BZ": "BELIZE",
    "CA": "CANADA",
    "CC": "COCOS_KEELING_ISLANDS",
    "CD": "THE_DEMOCRATIC_REPUBLIC_OF_THE_CONGO",
    "CF": "CENTRAL_AFRICAN_REPUBLIC",
    "CG": "CONGO",
    "CH": "SWITZERLAND",
    "CI": "COTE_D_IVOIRE",
    "CK": "COOK_ISLANDS",
    "CL": "CHILE",
    "CM": "CAMEROON",
    "CN": "CHINA",
    "CO": "COLOMBIA",
    "CR": "COSTA_RICA",
    "CU": "CUBA",
    "CV": "CABO_VERDE",
    "CW": "CURACAO",
    "CX": "CHRISTMAS_ISLAND",
    "CY": "CYPRUS",
    "CZ": "CZECH_REPUBLIC",
    "DE": "GERMANY",
    "DJ": "DJIBOUTI",
    "DK": "DENMARK",
    "DM": "DOMINICA",
    "DO": "DOMINICAN_REPUBLIC",
    "DZ": "ALGERIA",
    "EC": "ECUADOR",
    "EE": "ESTONIA",
    "EG": "EGYPT",
    "EH": "WESTERN_SAHARA",
    "ER": "ERITREA",
    "ES": "SPAIN",
    "ET": "ETHIOPIA",
    "FI": "FINLAND",
    "FJ": "FIJI",
    "FK": "FALKLAND_ISLANDS_MALVINAS",
    "FM": "FEDERATED_STATES_OF_MICRONESIA",
    "FO": "FAROE_ISLANDS",
    "FR": "FRANCE",
    "GA": "GABON",
    "GB": "UNITED_KINGDOM_OF_GREAT_BRITAIN_AND_NORTHERN_IRELAND",
    "GD": "GRENADA",
    "GE": "GEORGIA",
    "GF": "FRENCH_GUIANA",
    "GG": "GUERNSEY",
    "GH": "GHANA",
    "GI": "GIBRALTAR",
    "GL": "GREENLAND",
    "GM": "GAMBIA",
    "GN": "GUINEA",
    "GP": "GUADELOUPE",
    "GQ": "EQUATORIAL_GUINEA",
    "GR": "GREECE",
    "GS": "SOUTH_GEORGIA_AND_THE_SOUTH_SANDWICH_ISLANDS",
    "GT": "GUATEMALA",
    "GU": "GUAM",
    "GW": "GUINEA_BISSAU",
    "GY": "GUYANA",
    "HK": "HONG_KONG",
    "HM": "HEARD_ISLAND_AND_MCDONALD_ISLANDS",
    "HN": "HONDURAS",
    "HR": "CROATIA",
    "HT": "HAITI",
    "HU": "HUNGARY",
    "ID": "INDONESIA",
    "IE": "IRELAND",
    "IL": "ISRAEL",
    "IM": "ISLE_OF_MAN",
    "IN": "INDIA",
    "IO": "BRITISH_INDIAN_OCEAN_TERRITORY",
    "IQ": "IRAQ",
    "IR": "ISLAMIC_REPUBLIC_OF_IRAN",
    "IS": "ICELAND",
    "IT": "ITALY",
    "JE": "JERSEY",
    "JM": "JAMAICA",
    "JO": "JORDAN",
    "JP": "JAPAN",
    "KE": "KENYA",
    "KG": "KYRGYZSTAN",
    "KH": "CAMBODIA",
    "KI": "KIRIBATI",
    "KM": "COMOROS",
    "KN": "SAINT_KITTS_AND_NEVIS",
    "KP": "DEMOCRATIC_PEOPLE_S_REPUBLIC_OF_KOREA",
    "KR": "REPUBLIC_OF_KOREA",
    "KW": "KUWAIT",
    "KY": "CAYMAN_ISLANDS",
    "KZ": "KAZAKHSTAN",
    "LA": "LAO_PEOPLE_S_DEMOCRATIC_REPUBLIC",
    "LB": "LEBANON",
    "LC": "SAINT_LUCIA",
    "LI": "LIECHTENSTEIN",
    "LK": "SRI_LANKA",
    "LR": "LIBERIA",
    "LS": "LESOTHO",
    "LT": "LITHUANIA",
    "LU": "LUXEMBOURG",
    "LV": "LATVIA",
    "LY": "LIBYA",
    "MA": "MOROCCO",
    "MC": "MONACO",
    "MD": "REPUBLIC_OF_MOLDOVA",
    "ME": "MONTENEGRO",
    "MF": "SAINT_MARTIN_FRENCH_PART",
    "MG": "MADAGASCAR",
    "MH": "MARSHALL_ISLANDS",
    "MK": "THE_FORMER_YUGOSLAV_REPUBLIC_OF_MACEDONIA",
    "ML": "MALI",
    "MM": "MYANMAR",
    "MN": "MONGOLIA",
    "MO": "MACAO",
    "MP": "NORTHERN_MARIANA_ISLANDS",
    "MQ": "MARTINIQUE",
    "MR": "MAURITANIA",
    "MS": "MONTSERRAT",
    "MT": "MALTA",
    "MU": "MAURITIUS",
    "MV": "MALDIVES",
    "MW": "MALAWI",
    "MX": "MEXICO",
    "MY": "MALAYSIA",
    "MZ": "MOZAMBIQUE",
    "NA": "NAMIBIA",
    "NC": "NEW_CALEDONIA",
    "NE": "NIGER",
    "NF": "NORFOLK_ISLAND",
    "NG": "NIGERIA",
    "NI": "NICARAGUA",
    "NL": "NETHERLANDS",
    "NO": "NORWAY",
    "NP": "NEPAL",
    "NR": "NAURU",
    "NU": "NIUE",
    "NZ": "NEW_ZEALAND",
    "OM": "OMAN",
    "PA": "PANAMA",
    "PE": "PERU",
    "PF": "FRENCH_POLYNESIA",
    "PG": "PAPUA_NEW_GUINEA",
    "PH": "PHILIPPINES",
    "PK": "PAKISTAN",
    "PL": "POLAND",
    "PM": "SAINT_PIERRE_AND_MIQUELON",
    "PN": "PITCAIRN",
    "PR": "PUERTO_RICO",
    "PS": "STATE_OF_PALESTINE",
    "PT": "PORTUGAL",
    "PW": "PALAU",
    "PY": "PARAGUAY",
    "QA": "QATAR",
    "RE": "REUNION",
    "RO": "ROMANIA",
    "RS": "SERBIA",
    "RU": "RUSSIAN_FEDERATION",
    "RW": "RWANDA",
    "SA": "SAUDI_ARABIA",
    "SB": "SOLOMON_ISLANDS",
    "SC": "SEYCHELLES",
    "SD": "SUDAN",
    "SE": "SWEDEN",
    "SG": "SINGAPORE",
    "SH": "ASCENSION_AND_TRISTAN_DA_CUNHA_SAINT_HELENA",
    "SI": "SLOVENIA",
    "SJ": "SVALBARD_AND_JAN_MAYEN",
    "SK": "SLOVAKIA",
    "SL": "SIERRA_LEONE",
    "SM": "SAN_MARINO",
    "SN": "SENEGAL",
    "SO": "SOMALIA",
    "SR": "SURINAME",
    "SS": "SOUTH_SUDAN",
    "ST": "SAO_TOME_AND_PRINCIPE",
    "SV": "EL_SALVADOR",
    "SX": "SINT_MAARTEN_DUTCH_PART",
    "SY": "SYRIAN_ARAB_REPUBLIC",
    "SZ": "SWAZILAND",
    "TC": "TURKS_AND_CAICOS_ISLANDS",
    "TD": "CHAD",
    "TF": "FRENCH_SOUTHERN_TERRITORIES",
    "TG": "TOGO",
    "TH": "THAILAND",
    "TJ": "TAJIKISTAN",
    "TK": "TOKELAU",
    "TL": "TIMOR_LESTE",
    "TM": "TURKMENISTAN",
    "TN": "TUNISIA",
    "TO": "TONGA",
    "TR": "TURKEY",
    "TT": "TRINIDAD_AND_TOBAGO",
    "TV": "TUVALU",
    "TW": "PROVINCE_OF_CHINA_TAIWAN",
    "TZ": "UNITED_REPUBLIC_OF_TANZANIA",
    "UA": "UKRAINE",
    "UG": "UGANDA",
    "UM": "UNITED_STATES_MINOR_OUTLYING_ISLANDS",
    "US": "UNITED_STATES_OF_AMERICA",
    "UY": "URUGUAY",
    "UZ": "UZBEKISTAN",
    "VA": "HOLY_SEE_VATICAN_CITY_STATE",
    "VC": "SAINT_VINCENT_AND_THE_GRENADINES",
    "VE": "BOLIVARIAN_REPUBLIC_OF_VENEZUELA",
    "VG": "BRITISH_VIRGIN_ISLANDS",
    "VI": "U_S_VIRGIN_ISLANDS",
    "VN": "VIET_NAM",
    "VU": "VANUATU",
    "WF": "WALLIS_AND_FUTUNA",
    "WS": "SAMOA",
    "XK": "KOSOVO_TEMPORARY",
    "YE": "YEMEN",
    "YT": "MAYOTTE",
    "ZA": "SOUTH_AFRICA",
    "ZM": "ZAMBIA",
    "ZW": "ZIMBABWE",
}
ISO_OF_COUNTRY: Mapping[str, str] = {name: iso for iso, name in COUNTRY_BY_ISO.items()}

#: Payment event types that are money from the payer; `INVOICE_TO_INVOICE` is a credit-note offset.
CUSTOMER_PAYMENT_TYPES = frozenset(
    {
        "REFERENCEPAYMENT_TO_INVOICE",
        "BANKSTATEMENT_TO_INVOICE",
        "JOURNAL_TO_INVOICE",
        "TRANSACTION_FOCUSED",
        "NETS_DK_INVOICE",
    }
)
#: Procountor statuses in which an invoice was sent to the customer.
SENT_STATUSES = frozenset({"SENT", "PAID", "PARTLY_PAID", "MARKED_PAID"})


class UnknownCountryError(ValueError):
    """An address whose country Procountor's list does not have."""


def procountor_country(iso: str) -> str:
    """The country of an address as Procountor names it (I-01: from the address, not always FINLAND)."""
    name = COUNTRY_BY_ISO.get(iso.upper())
    if name is None:
        raise UnknownCountryError(f"country code {iso!r} has no Procountor country")
    return name


def procountor_unit(unit: str) -> str:
    """Our unit on Procountor's unit list; anything unknown is a piece."""
    return UNITS.get(unit, "PIECE")


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


# --- retries -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrySchedule:
    """Capped exponential backoff: never gives up, never waits longer than `maximum` (unless told to).

    A delivery is retried until it succeeds or an operator cancels it; `Retry-After` from
    Procountor is a floor, also above the cap (Procountor said when to come back).
    """

    initial: timedelta = timedelta(seconds=5)
    maximum: timedelta = timedelta(minutes=5)

    def delay(self, attempts: int, *, jitter: float = 0.5, retry_after: timedelta | None = None) -> timedelta:
        """Wait after the `attempts`-th failed attempt; `jitter` in [0, 1] spreads replicas apart."""
        exponent = min(max(attempts - 1, 0), 30)
        ceiling: timedelta = min(self.maximum, self.initial * (2**exponent))
        wait: timedelta = ceiling * (0.5 + 0.5 * min(max(jitter, 0.0), 1.0))
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait


# --- customers (I-02, B-22) ----------------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    street: str
    postal_code: str
    city: str
    country_code: str = "FI"


@dataclass(frozen=True)
class CustomerData:
    """What both sides keep about a billing customer: the fields that move both ways (I-02)."""

    name: str
    address: Address
    channel: BillingChannel
    einvoice_address: str | None = None
    einvoice_operator: str | None = None
    email: str | None = None
    contact: str | None = None
    """The billing contact's name (B-24), Procountor's `invoicingInfo.contactPerson`. Invoices do
    not carry it; contract changes do."""

    def as_json(self) -> JsonObject:
        return {
            "name": self.name,
            "street": self.address.street,
            "postal_code": self.address.postal_code,
            "city": self.address.city,
            "country_code": self.address.country_code,
            "channel": self.channel.value,
            "einvoice_address": self.einvoice_address,
            "einvoice_operator": self.einvoice_operator,
            "email": self.email,
            "contact": self.contact,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CustomerData:
        return cls(
            name=data["name"],
            address=Address(
                data["street"], data["postal_code"], data["city"], data.get("country_code", "FI")
            ),
            channel=BillingChannel(data["channel"]),
            einvoice_address=data.get("einvoice_address"),
            einvoice_operator=data.get("einvoice_operator"),
            email=data.get("email"),
            contact=data.get("contact"),
        )


#: Field groups that change together: an e-invoice address is meaningless without its operator.
CUSTOMER_FIELD_GROUPS: Mapping[str, tuple[str, ...]] = {
    "name": ("name",),
    "address": ("address",),
    "channel": ("channel",),
    "einvoice": ("einvoice_address", "einvoice_operator"),
    "email": ("email",),
    "contact": ("contact",),
}

#: `ContractChangedV1.change` of the changes invoicing made because Procountor told it
#: (`CustomerChangedInProcountorV1` applied, B-22): never pushed back (no bounce).
CHANGES_FROM_PROCOUNTOR = frozenset({"billing_details_changed"})


def customer_of_contract(change: ContractChangedV1) -> CustomerData | None:
    """The payer's billing data as a contract change announces it (our side of I-02), or None.

    None when the change is not about a payer's own billing data: the contract is paid by someone
    else (an accounting firm's invoices carry the firm's own contract's data, B-17), the event
    predates the billing fields, or the change came from Procountor itself (it must not bounce).
    """
    a = change.billing_address
    if (
        a is None
        or change.billing_channel is None
        or change.payer_id != change.business_id
        or change.change in CHANGES_FROM_PROCOUNTOR
    ):
        return None
    e = change.einvoice_address
    return CustomerData(
        name=change.company_name,
        address=Address(a.street, a.postal_code, a.city, a.country_code),
        channel=change.billing_channel,
        einvoice_address=e.address if e else None,
        einvoice_operator=e.operator if e else None,
        email=change.billing_email,
        contact=change.billing_contact.name if change.billing_contact else None,
    )


def customer_of_invoice(invoice: InvoiceIssuedV1, *, contact: str | None = None) -> CustomerData:
    """The payer as invoicing holds it on an issued invoice (our side of I-02).

    An invoice carries no billing contact (B-24): `contact` is the one known from elsewhere.
    """
    a = invoice.billing_address
    return CustomerData(
        name=invoice.payer_name,
        address=Address(a.street, a.postal_code, a.city, a.country_code),
        channel=invoice.billing_channel,
        einvoice_address=invoice.einvoice_address.address if invoice.einvoice_address else None,
        einvoice_operator=invoice.einvoice_address.operator if invoice.einvoice_address else None,
        email=invoice.billing_email,
        contact=contact,
    )


def customer_of_partner(partner: Mapping[str, Any]) -> CustomerData:
    """A Procountor business partner as customer data (the billing address wins over the address)."""
    invoicing = partner.get("invoicingInfo") or {}
    postal = partner.get("billingAddress") or partner.get("address") or {}
    if not postal.get("street"):
        postal = partner.get("address") or {}
    country = postal.get("country") or "FINLAND"
    return CustomerData(
        name=str(partner.get("name") or ""),
        address=Address(
            str(postal.get("street") or ""),
            str(postal.get("zip") or ""),
            str(postal.get("city") or ""),
            ISO_OF_COUNTRY.get(country, "FI"),
        ),
        channel=CHANNEL_OF.get(str(invoicing.get("invoiceChannel") or ""), BillingChannel.PAPER),
        einvoice_address=invoicing.get("einvoiceAddress") or None,
        einvoice_operator=invoicing.get("einvoiceOperator") or None,
        email=invoicing.get("email") or None,
        contact=invoicing.get("contactPerson") or None,
    )


def _procountor_address(name: str, address: Address) -> JsonObject:
    return {
        "name": name,
        "street": address.street,
        "zip": address.postal_code,
        "city": address.city,
        "country": procountor_country(address.country_code),
    }


def _invoicing_info(customer: CustomerData, business_id: str | None) -> JsonObject:
    info: JsonObject = {"invoiceChannel": CHANNELS[customer.channel]}
    if business_id is not None:
        info |= {"identifier": business_id, "identifierType": "BUSINESS_ID"}
    if customer.einvoice_address and customer.einvoice_operator:
        info |= {"einvoiceAddress": customer.einvoice_address, "einvoiceOperator": customer.einvoice_operator}
    if customer.email:
        info["email"] = customer.email
    if customer.contact:
        info["contactPerson"] = customer.contact
    return info


def partner_body(customer: CustomerData, business_id: str) -> JsonObject:
    """A new Procountor customer (business partner of type CUSTOMER) for a payer (I-02)."""
    return {
        "name": customer.name,
        "type": "CUSTOMER",
        "address": _procountor_address(customer.name, customer.address),
        "billingAddress": _procountor_address(customer.name, customer.address),
        "invoicingInfo": _invoicing_info(customer, business_id),
        "paymentInfo": {"paymentMethod": "BANK_TRANSFER", "currency": "EUR"},
    }


def is_active(partner: Mapping[str, Any]) -> bool:
    """Procountor's `registryInfo.active` (true when absent, as Procountor creates partners active)."""
    return bool((partner.get("registryInfo") or {}).get("active", True))


def reactivated_partner(customer: CustomerData, partner: Mapping[str, Any]) -> JsonObject:
    """The `PUT` body that reactivates an inactive customer found by search, holding `customer`.

    I-02: invoicing an inactive business partner is wrong (the emulator refuses it, a decision of
    ours where the reference is silent), and PATCH does not take `registryInfo` (reference §4), so
    the whole partner is replaced: as it is, with our billing data and `active` true.
    """
    return {
        **partner_update(customer, partner),
        "registryInfo": {**(partner.get("registryInfo") or {}), "active": True},
    }


def partner_update(customer: CustomerData, partner: Mapping[str, Any]) -> JsonObject:
    """The `PUT` body that makes Procountor's partner hold `customer`: the partner as read (with its
    `version`, so a change made meanwhile is refused, not overwritten) and our billing data.

    Not PATCH: PATCH takes name, type, address, invoicingInfo and paymentInfo only (reference §4),
    and the billing address — where the customer's invoices go — is `billingAddress`.
    """
    return {**partner, **partner_patch(customer, partner)}


def partner_patch(customer: CustomerData, partner: Mapping[str, Any]) -> JsonObject:
    """The fields that make Procountor's partner hold `customer` (name, addresses, invoicing info)."""
    invoicing = {
        k: v
        for k, v in (partner.get("invoicingInfo") or {}).items()
        if k not in ("invoiceChannel", "einvoiceAddress", "einvoiceOperator", "email", "contactPerson")
    }
    return {
        "name": customer.name,
        "address": _procountor_address(customer.name, customer.address),
        "billingAddress": _procountor_address(customer.name, customer.address),
        "invoicingInfo": invoicing | _invoicing_info(customer, None),
    }


def _groups_changed(a: CustomerData, b: CustomerData) -> set[str]:
    return {
        g for g, names in CUSTOMER_FIELD_GROUPS.items() if any(getattr(a, n) != getattr(b, n) for n in names)
    }


@dataclass(frozen=True)
class CustomerMerge:
    """The outcome of the conflict rule for one customer."""

    result: CustomerData
    """What both sides hold once the merge is applied."""
    push: bool
    """Procountor must be updated (our side changed something Procountor did not)."""
    procountor_changed: frozenset[str]
    """Field groups changed in Procountor (published to invoicing as `CustomerChangedInProcountorV1`)."""
    conflicts: frozenset[str] = field(default=frozenset())
    """Field groups changed on both sides since the last sync; Procountor's value won."""


def merge_customer(base: CustomerData, ours: CustomerData, procountor: CustomerData) -> CustomerMerge:
    """The conflict rule (I-02): a three-way merge per field group against the last synced state.

    A group changed on one side only takes that side's value. A group changed on both sides takes
    **Procountor's** value: the customer keeps its billing data in Procountor (B-22, basic info
    flows into billing), and invoicing hears of it. The company name is ours to push but never
    taken from Procountor onto invoices (B-22: that needs a change notice); a name changed in
    Procountor is still reported, and our next name change overwrites it.
    """
    ours_changed = _groups_changed(base, ours)
    theirs_changed = _groups_changed(base, procountor)
    result = procountor
    for group in ours_changed - theirs_changed:
        for name in CUSTOMER_FIELD_GROUPS[group]:
            result = replace(result, **{name: getattr(ours, name)})
    return CustomerMerge(
        result=result,
        push=bool(ours_changed - theirs_changed),
        procountor_changed=frozenset(theirs_changed),
        conflicts=frozenset(ours_changed & theirs_changed),
    )


# --- products (I-02, B-07) ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProductData:
    """A price-list product as Procountor's product register holds it."""

    code: str
    name: str
    unit_price: Decimal
    unit: str
    vat_rate: Decimal | None
    active: bool = True

    def as_json(self) -> JsonObject:
        return {
            "code": self.code,
            "name": self.name,
            "unit_price": format(self.unit_price, "f"),
            "unit": self.unit,
            "vat_rate": None if self.vat_rate is None else format(self.vat_rate, "f"),
            "active": self.active,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProductData:
        vat = data.get("vat_rate")
        return cls(
            code=data["code"],
            name=data["name"],
            unit_price=Decimal(data["unit_price"]),
            unit=data["unit"],
            vat_rate=None if vat is None else Decimal(vat),
            active=bool(data.get("active", True)),
        )


def product_of_line(line: InvoiceLine) -> ProductData:
    """The register entry of a price-list product, from the first invoice line that carries it."""
    return ProductData(
        code=line.product_code,
        name=line.product_code.replace("-", " ").title()[:100],
        unit_price=line.unit_price,
        unit=procountor_unit(line.unit),
        vat_rate=line.vat_rate,
    )


def product_of_procountor(product: Mapping[str, Any]) -> ProductData:
    vat = product.get("vat")
    return ProductData(
        code=str(product.get("code") or ""),
        name=str(product.get("name") or ""),
        unit_price=Decimal(str(product.get("price") or 0)),
        unit=str(product.get("unit") or "PIECE"),
        vat_rate=None if vat is None else Decimal(str(vat)),
        active=bool(product.get("active", True)),
    )


def product_body(product: ProductData) -> JsonObject:
    body: JsonObject = {
        "type": "SALES",
        "name": product.name,
        "code": product.code,
        "unit": product.unit,
        "price": product.unit_price,
        "discount": Decimal(0),
        "active": product.active,
        "currency": "EUR",
    }
    if product.vat_rate is not None:
        body["vat"] = product.vat_rate
    return body


PRODUCT_FIELDS = ("name", "unit_price", "unit", "vat_rate", "active")


def product_changes(base: ProductData, procountor: ProductData) -> list[str]:
    """Which fields of a product were changed in Procountor since we last knew it."""
    return [f for f in PRODUCT_FIELDS if getattr(base, f) != getattr(procountor, f)]


# --- invoices out (I-01, B-19…B-21) ------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryPolicy:
    """Settings that decide how an invoice goes out (B-20, B-21, I-01's optional approval)."""

    seller_iban: str
    vat_status: int
    first_invoice_einvoice: bool = True
    """B-20: a payer's first invoice goes by e-invoice into its own Procountor when its address was
    ordered through the vendor (unless agreed otherwise: set false, or use another operator)."""
    vendor_einvoice_operators: frozenset[str] = frozenset({"003723327487"})
    """Operators of e-invoice addresses ordered through the vendor (Procountor orders Apix ones)."""
    hold_channels: frozenset[BillingChannel] = frozenset()
    """Invoices by these channels wait for finance's approval in Procountor."""
    hold_first_invoices: bool = False
    """A payer's first invoice waits for finance's approval in Procountor."""


def invoice_channel(
    invoice: InvoiceIssuedV1, *, first_invoice: bool, policy: DeliveryPolicy
) -> BillingChannel:
    """B-21: the payer's chosen channel; B-20: the first invoice by e-invoice when the address came from us."""
    if (
        first_invoice
        and policy.first_invoice_einvoice
        and invoice.einvoice_address is not None
        and invoice.einvoice_address.operator in policy.vendor_einvoice_operators
    ):
        return BillingChannel.EINVOICE
    return invoice.billing_channel


def approval_hold(channel: BillingChannel, *, first_invoice: bool, policy: DeliveryPolicy) -> str | None:
    """Why an invoice waits for finance's approval in Procountor, or None."""
    if channel in policy.hold_channels:
        return f"approval hold for the {channel.value} channel"
    if first_invoice and policy.hold_first_invoices:
        return "approval hold for a payer's first invoice"
    return None


CHARGE_TEXT: Mapping[str, str] = {
    "monthly_fee": "kuukausimaksu",
    "extra_voucher": "lisätositteet yli paketin sisältämien (B-08)",
    "extra_payee": "lisäpalkansaajat yli paketin sisältämien (B-12)",
    "einvoice_sent": "lähetetyt verkkolaskut, kpl (B-13)",
    "einvoice_received": "vastaanotetut verkkolaskut, kpl (B-13)",
    "user": "käyttäjät kuun lopussa (B-16)",
    "signature": "allekirjoitukset",
    "minimum_charge": "vähimmäisveloituksen erotus (B-14)",
    "own_use_discount": "kumppanin oman käytön alennus (P-07)",
    "service_hours": "palvelutunnit (I-07)",
}


def _period(line: InvoiceLine) -> str:
    return f"{line.period_start:%d.%m.}–{line.period_end:%d.%m.%Y}"


def row_comment(line: InvoiceLine) -> str:
    """The printed comment of a row: environment, period and what the charge is (B-19 in brief)."""
    what = CHARGE_TEXT.get(line.charge_kind or "", line.description)
    extra = ""
    if line.is_correction:
        extra = ", oikaisu aiempaan kuukauteen"
    elif line.carried_from_period:
        extra = f", siirretty laskulta {line.carried_from_period} (B-15)"
    return f"{line.environment_id} {_period(line)}: {what}{extra}"[:512]


def additional_information(invoice: InvoiceIssuedV1) -> str:
    """The printed summary of the B-19 specification: per environment, what its lines charge.

    The full specification (every voucher, payee, message and fee) stays with invoicing
    (`GET /invoices/{id}/specification`); the text says so.
    """
    lines = [f"Laskun {invoice.invoice_number} erittely, laskutuskausi {invoice.billing_period}:"]
    by_env: dict[str, list[InvoiceLine]] = {}
    for line in invoice.lines:
        by_env.setdefault(line.environment_id, []).append(line)
    for env, env_lines in by_env.items():
        net = sum((ln.net for ln in env_lines), Decimal(0))
        lines.append(f"Ympäristö {env}: {format(cents(net), 'f')} € alv 0 %")
        for ln in env_lines:
            qty = format(ln.quantity.normalize(), "f")
            lines.append(
                f"- {ln.product_code}: {qty} × {format(ln.unit_price, 'f')} € = {format(ln.net, 'f')} €, {row_comment(ln).split(': ', 1)[1]}"
            )
    lines.append("Tarkka erittely (tositteet, palkansaajat, viestit) pyynnöstä laskuttajalta.")
    text = "\n".join(lines)
    return text if len(text) <= 10_000 else text[:9_990] + "\n…"


def _counter_party(invoice: InvoiceIssuedV1, channel: BillingChannel) -> JsonObject:
    address = _procountor_address(invoice.payer_name, _address(invoice))
    party: JsonObject = {"identifier": invoice.payer_business_id, "counterPartyAddress": address}
    if invoice.einvoice_address is not None and channel is BillingChannel.EINVOICE:
        party["einvoiceAddress"] = {
            "operator": invoice.einvoice_address.operator,
            "address": invoice.einvoice_address.address,
        }
    if invoice.billing_email:
        party["email"] = invoice.billing_email
    return party


def _address(invoice: InvoiceIssuedV1) -> Address:
    a = invoice.billing_address
    return Address(a.street, a.postal_code, a.city, a.country_code)


def invoice_body(
    invoice: InvoiceIssuedV1,
    *,
    partner_id: int,
    channel: BillingChannel,
    product_ids: Mapping[str, int],
    policy: DeliveryPolicy,
) -> JsonObject:
    """Procountor's sales-invoice body for one of our issued invoices (I-01).

    `originalInvoiceNumber` carries our invoice number: it is how a retry finds an invoice it
    already created (Procountor has no idempotency keys). Amounts stay Decimal.
    """
    party = _counter_party(invoice, channel)
    return {
        "type": "SALES_INVOICE",
        "partnerId": partner_id,
        "date": invoice.invoice_date.isoformat(),
        "counterParty": party,
        "billingAddress": party["counterPartyAddress"],
        "paymentInfo": {
            "paymentMethod": "BANK_TRANSFER",
            "currency": invoice.currency,
            "bankAccount": {"accountNumber": policy.seller_iban},
            "dueDate": invoice.due_date.isoformat(),
            "currencyRate": Decimal(1),
            "bankReferenceCode": invoice.reference_number,
            "bankReferenceCodeType": "FI",
        },
        "extraInfo": {"accountingByRow": False, "unitPricesIncludeVat": False},
        "discountPercent": Decimal(0),
        "vatStatus": policy.vat_status,
        "invoiceChannel": CHANNELS[channel],
        "language": "FINNISH",
        "originalInvoiceNumber": invoice.invoice_number,
        "deliveryStartDate": min(ln.period_start for ln in invoice.lines).isoformat(),
        "deliveryEndDate": max(ln.period_end for ln in invoice.lines).isoformat(),
        "additionalInformation": additional_information(invoice),
        "invoiceRows": [_row(ln, product_ids) for ln in invoice.lines],
    }


def _row(line: InvoiceLine, product_ids: Mapping[str, int], *, sign: int = 1) -> JsonObject:
    row: JsonObject = {
        "product": line.description[:100] or line.product_code,
        "productCode": line.product_code,
        "quantity": line.quantity * sign,
        "unit": procountor_unit(line.unit),
        "unitPrice": line.unit_price,
        "discountPercent": Decimal(0),
        "vatPercent": line.vat_rate,
        "startDate": line.period_start.isoformat(),
        "endDate": line.period_end.isoformat(),
        "comment": row_comment(line),
    }
    if line.product_code in product_ids:
        row["productId"] = product_ids[line.product_code]
    return row


def credit_invoice_body(
    note: CreditNoteIssuedV1,
    credited: InvoiceIssuedV1,
    *,
    partner_id: int,
    credited_procountor_number: int | None,
    product_ids: Mapping[str, int],
    policy: DeliveryPolicy,
) -> JsonObject:
    """A credit note as Procountor's credit invoice: a sales invoice with negative quantities.

    Procountor's API has no field linking a credit invoice to the credited one (reference §6).
    **Decision:** the link is printed in `additionalInformation` and kept in `notes`, and the two
    are settled against each other with `CREDIT_NOTE` offsets (`markpaid`), which is what lowers
    the original's open amount.
    """
    channel = credited.billing_channel
    party = _counter_party(credited, channel)
    party["counterPartyAddress"]["name"] = note.payer_name
    rows = []
    for ln in note.lines:
        rows.append(
            {
                "product": ln.description[:100] or ln.product_code,
                "productCode": ln.product_code,
                "quantity": -ln.quantity,
                "unit": procountor_unit(ln.unit),
                "unitPrice": ln.unit_price,
                "discountPercent": Decimal(0),
                "vatPercent": ln.vat_rate,
                "startDate": ln.period_start.isoformat(),
                "endDate": ln.period_end.isoformat(),
                "comment": f"{ln.environment_id} {ln.period_start:%d.%m.}–{ln.period_end:%d.%m.%Y}: hyvitys"[
                    :512
                ],
            }
            | ({"productId": product_ids[ln.product_code]} if ln.product_code in product_ids else {})
        )
    link = f"Hyvityslasku laskulle {note.credited_invoice_number}"
    if credited_procountor_number is not None:
        link += f" (Procountor-lasku {credited_procountor_number})"
    return {
        "type": "SALES_INVOICE",
        "partnerId": partner_id,
        "date": note.credit_date.isoformat(),
        "counterParty": party,
        "billingAddress": party["counterPartyAddress"],
        "paymentInfo": {
            "paymentMethod": "BANK_TRANSFER",
            "currency": note.currency,
            "bankAccount": {"accountNumber": policy.seller_iban},
            "dueDate": note.credit_date.isoformat(),
            "currencyRate": Decimal(1),
            "bankReferenceCode": note.reference_number,
            "bankReferenceCodeType": "FI",
        },
        "extraInfo": {"accountingByRow": False, "unitPricesIncludeVat": False},
        "discountPercent": Decimal(0),
        "vatStatus": policy.vat_status,
        "invoiceChannel": CHANNELS[channel],
        "language": "FINNISH",
        "originalInvoiceNumber": note.credit_note_number,
        "additionalInformation": f"{link}. Syy: {note.reason}"[:10_000],
        "notes": f"credit note {note.credit_note_id} of invoice {note.credited_invoice_id}",
        "invoiceRows": rows,
    }


def refund_marker(refund_id: str) -> str:
    """What identifies a refund's line in a Procountor invoice's notes (a retry writes it once)."""
    return f"[{refund_id}]"


def refund_note_line(refund: RefundRecordedV1) -> str:
    """B-06: the line noted on the Procountor invoice: an overpayment, or a credit on money paid."""
    what = "Hyvitys" if refund.credit_note_id else "Liikasuoritus"
    return (
        f"{refund_marker(refund.refund_id)} {what} {format(refund.amount, 'f')} € "
        f"({refund.payment_date:%d.%m.%Y}) palautetaan maksajalle: {refund.reason}"
    )


def credit_offset_description(credit_note_number: str) -> str:
    """The description of the CREDIT_NOTE offsets; how a retry recognises an offset already made."""
    return f"Hyvityslasku {credit_note_number}"


# --- totals (I-01) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Totals:
    net: Decimal
    vat: Decimal
    gross: Decimal


def totals_of_procountor(invoice: Mapping[str, Any]) -> Totals:
    """`invoiceSumInfo` in the invoice's currency (a list, one entry per currency)."""
    info = invoice.get("invoiceSumInfo")
    entries = info if isinstance(info, list) else [info] if isinstance(info, dict) else []
    if not entries:
        raise ValueError("Procountor returned no invoiceSumInfo")
    currency = (invoice.get("paymentInfo") or {}).get("currency")
    entry = next((e for e in entries if e.get("currency") == currency), entries[0])
    return Totals(
        Decimal(str(entry["excludingVatTotal"])),
        Decimal(str(entry["vatSumTotal"])),
        Decimal(str(entry["invoiceSumTotal"])),
    )


def totals_differ(ours: Totals, procountor: Totals) -> bool:
    """Any difference, a cent included: never silently (I-01)."""
    return (ours.net, ours.vat, ours.gross) != (procountor.net, procountor.vat, procountor.gross)


# --- payments (I-03, B-06) ---------------------------------------------------------------------


def payment_status(procountor_status: str, *, total: Decimal, settled: Decimal) -> ProcountorPaymentStatus:
    """Procountor's status as the four states invoicing needs."""
    if procountor_status in ("INVALIDATED", "DELETED"):
        return ProcountorPaymentStatus.INVALIDATED
    if abs(settled) >= abs(total) or procountor_status in ("PAID", "MARKED_PAID"):
        return ProcountorPaymentStatus.PAID
    if settled != 0 or procountor_status == "PARTLY_PAID":
        return ProcountorPaymentStatus.PARTLY_PAID
    return ProcountorPaymentStatus.OPEN


def open_amount(total: Decimal, settled: Decimal) -> Decimal:
    """What the payer still owes; never below 0 (an overpayment is a refund, B-06)."""
    return max(total - settled, Decimal(0)) if total >= 0 else Decimal(0)


def overdue_days(due_date: date, today: date) -> int:
    """Days past due for dunning; 0 while not due."""
    return max((today - due_date).days, 0)


# --- webhooks ----------------------------------------------------------------------------------


def webhook_signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over `"<timestamp>.<raw body>"`, as `sha256=<hex>` (our decision with the emulator)."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def webhook_refusal(
    *,
    secret: bytes,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now_unix: float,
    tolerance: float,
) -> str | None:
    """Why a webhook request is refused (forged, unsigned, stale or from the future), or None."""
    if not timestamp or not signature:
        return "unsigned"
    try:
        sent = float(timestamp)
    except ValueError:
        return "bad timestamp"
    if not hmac.compare_digest(webhook_signature(secret, timestamp, body), signature):
        return "bad signature"
    if abs(now_unix - sent) > tolerance:
        return "outside the replay window"
    return None


def signature_key(signature: str) -> str:
    """What a replay repeats: the signature (unique per body and timestamp), hashed for storage."""
    return hashlib.sha256(signature.encode()).hexdigest()
