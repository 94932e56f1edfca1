"""The emulator's HTTP surface: the Procountor API under `/api`, inspection under `/_emulator`."""

from __future__ import annotations

import asyncio
import copy
import html
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, RedirectResponse, Response

from procountor_emulator import rules, webhooks
from procountor_emulator.config import EmulatorConfig
from procountor_emulator.state import EmulatorState, Fault
from procountor_emulator.wire import (
    ApiError,
    FieldError,
    JsonObject,
    ProcountorJSONResponse,
    loads,
)

log = logging.getLogger("procountor_emulator")

EMULATOR_VERSION = "0.1.0"
PROCOUNTOR_VERSION = "26.04"
TOKEN_FORM_FIELDS = frozenset({"grant_type", "client_id", "client_secret", "api_key", "redirect_uri"})
PAYABLE_STATUSES = frozenset({"NOT_SENT", "SENT", "PARTLY_PAID"})
#: Statuses whose due date can still be moved (`paymentInfo.newDueDate`, see README).
DUE_DATE_MOVABLE_STATUSES = frozenset({"NOT_SENT", "SENT", "PARTLY_PAID"})
#: Payment event `type` by how the payment came: a customer's bank payment, a manual mark, a credit offset.
REFERENCE_PAYMENT = "REFERENCEPAYMENT_TO_INVOICE"
MANUAL_PAYMENT = "JOURNAL_TO_INVOICE"
CREDIT_OFFSET = "INVOICE_TO_INVOICE"
SENDABLE_STATUSES = frozenset({"NOT_SENT", "SENT"})
INVALIDATABLE_STATUSES = frozenset({"UNFINISHED", "NOT_SENT", "SENT", "PARTLY_PAID"})
PARTNER_PATCHABLE = ("name", "type", "address", "invoicingInfo", "paymentInfo")


def get_state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


State = Annotated[EmulatorState, Depends(get_state)]


def apply_faults(request: Request, state: State) -> None:
    fault = state.take_fault(request.method, request.url.path)
    if fault is None:
        return
    if fault.status == 0:
        # Handled normally, but the answer is held back: the client times out or dies waiting.
        request.state.delay_after = fault.delay_seconds
        return
    headers = {"Retry-After": str(int(fault.delay_seconds))} if fault.delay_seconds else None
    raise ApiError.single(fault.status, "Injected fault (emulator).", headers=headers)


async def authorize(request: Request, state: State) -> str:
    """Resolve the bearer token to its API client and count the request against the rate limit."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError.single(401, "Missing bearer access token.")
    client_id = state.client_for_token(token.strip())
    state.admit(client_id)
    route = request.scope.get("route")
    name = f"{request.method} {getattr(route, 'path', request.url.path)}"
    state.stats.requests_by_route[name] = state.stats.requests_by_route.get(name, 0) + 1
    if state.config.latency_seconds > 0:
        await asyncio.sleep(state.config.latency_seconds)
    return client_id


token_router = APIRouter(prefix="/api", dependencies=[Depends(apply_faults)])
api = APIRouter(prefix="/api", dependencies=[Depends(apply_faults), Depends(authorize)])
inspection = APIRouter(prefix="/_emulator")


# --- request helpers ---------------------------------------------------------------------------


async def json_object(request: Request, *, optional: bool = False) -> JsonObject:
    raw = await request.body()
    if not raw.strip():
        if optional:
            return {}
        raise ApiError.single(400, "Request body is required.")
    try:
        body = loads(raw)
    except ValueError:
        raise ApiError.single(400, "Request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError.single(400, "Request body must be a JSON object.")
    return body


def query_int(
    request: Request, name: str, default: int | None, *, minimum: int, maximum: int | None = None
) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise rules_error(name, "expected an integer") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and at most {maximum}"
        raise rules_error(name, f"must be at least {minimum}{upper}")
    return value


def rules_error(field: str, detail: str) -> ApiError:
    return ApiError(400, [rules.invalid(field, detail)])


def query_list(request: Request, name: str) -> list[str]:
    """Array parameters arrive either repeated or comma-separated."""
    return [
        part.strip() for raw in request.query_params.getlist(name) for part in raw.split(",") if part.strip()
    ]


def paginate(request: Request, items: list[JsonObject]) -> JsonObject:
    """`size` (default 50, max 200) and 0-based `page`, with Procountor's `meta` block."""
    size = query_int(request, "size", 50, minimum=1, maximum=200)
    page = query_int(request, "page", 0, minimum=0)
    assert size is not None
    assert page is not None
    previous_id = query_int(request, "previousId", None, minimum=0)
    if previous_id is not None:
        items = [i for i in items if i["id"] > previous_id]
    descending = request.query_params.get("orderById", "ASC").upper() == "DESC"
    items = sorted(items, key=lambda i: int(i["id"]), reverse=descending)
    chunk = items[page * size : (page + 1) * size]
    return {
        "results": chunk,
        "meta": {
            "pageNumber": page,
            "pageSize": size,
            "resultCount": len(chunk),
            "totalCount": len(items),
        },
    }


def version_window(request: Request) -> Callable[[JsonObject], bool]:
    """`versionStartDate`/`versionEndDate` (naive Helsinki datetimes, inclusive) as a filter."""
    start = request.query_params.get("versionStartDate")
    end = request.query_params.get("versionEndDate")

    def inside(item: JsonObject) -> bool:
        version = str(item.get("version") or "")
        return (not start or version >= start) and (not end or version <= end)

    return inside


def raise_if(errors: list[FieldError]) -> None:
    if errors:
        raise ApiError(400, errors)


def check_version(current: JsonObject, given: Any, *, required: bool) -> None:
    if given is None or given == "":
        if required:
            raise ApiError(400, [rules.blank("version")])
        return
    if given != current["version"]:
        raise ApiError.single(
            400,
            "The object has been modified by another request; fetch it again and retry with the "
            "current version.",
            "version",
        )


def ok(content: Any, status: int = 200) -> ProcountorJSONResponse:
    return ProcountorJSONResponse(content, status_code=status)


def message(text: str) -> ProcountorJSONResponse:
    return ok({"message": text})


# --- authentication ----------------------------------------------------------------------------


@token_router.post("/oauth/token")
async def issue_token(request: Request, state: State) -> ProcountorJSONResponse:
    if any(name in TOKEN_FORM_FIELDS for name in request.query_params):
        raise ApiError.single(400, "Parameters in the URL are not accepted; send them in the request body.")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise ApiError.single(400, "Content-Type must be application/x-www-form-urlencoded.")
    form = {
        key: values[0]
        for key, values in parse_qs((await request.body()).decode("utf-8"), keep_blank_values=True).items()
    }
    missing = [
        rules.blank(name)
        for name in ("grant_type", "client_id", "client_secret", "api_key")
        if not form.get(name)
    ]
    raise_if(missing)
    if form["grant_type"] != "client_credentials":
        raise ApiError.single(400, "Unsupported grant_type.", "grant_type")
    registration = state.config.client(form["client_id"])
    keys = (
        []
        if registration is None
        else [registration.api_key, *state.issued_api_keys.get(registration.client_id, ())]
    )
    authentic = (
        registration is not None
        and secrets.compare_digest(registration.client_secret, form["client_secret"])
        and any(secrets.compare_digest(key, form["api_key"]) for key in keys)
    )
    if registration is None or not authentic:
        # Never echo what was sent: it may be a secret that was pasted into the wrong field.
        raise ApiError.single(401, "Invalid client credentials or API key.")
    redirect_uri = form.get("redirect_uri")
    if redirect_uri and registration.redirect_uri and redirect_uri != registration.redirect_uri:
        raise ApiError.single(400, "redirect_uri does not match the registered one.", "redirect_uri")
    state.admit(registration.client_id)
    user_id = (
        state.config.api_user_id
        if secrets.compare_digest(registration.api_key, form["api_key"])
        else state.api_key_users.get(form["api_key"], state.config.api_user_id)
    )
    token, lifetime = state.issue_token(registration.client_id, user_id)
    log.info("token issued client_id=%s expires_in=%d", registration.client_id, lifetime)
    return ok({"access_token": token, "token_type": "bearer", "expires_in": lifetime})


@token_router.post("/oauth/key")
async def exchange_login_code(request: Request, state: State) -> ProcountorJSONResponse:
    """The key-login flow's second half (ref §2.2): a `code` from `/keylogin` becomes an API key."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise ApiError.single(400, "Content-Type must be application/x-www-form-urlencoded.")
    form = {
        k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8"), keep_blank_values=True).items()
    }
    raise_if(
        [
            rules.blank(name)
            for name in ("grant_type", "client_id", "client_secret", "redirect_uri", "code")
            if not form.get(name)
        ]
    )
    if form["grant_type"] != "authorization_code":
        raise ApiError.single(400, "Unsupported grant_type.", "grant_type")
    registration = state.config.client(form["client_id"])
    if registration is None or not secrets.compare_digest(registration.client_secret, form["client_secret"]):
        raise ApiError.single(401, "Invalid client credentials.")
    issued = state.login_codes.pop(form["code"], None)
    if issued is None or issued[0] != registration.client_id or state.config.monotonic() > issued[2]:
        raise ApiError.single(400, "Invalid or expired code.", "code")
    if issued[1] != form["redirect_uri"]:
        raise ApiError.single(400, "redirect_uri does not match the one of the login.", "redirect_uri")
    api_key = secrets.token_urlsafe(32)
    state.issued_api_keys.setdefault(registration.client_id, set()).add(api_key)
    state.api_key_users[api_key] = issued[3]  # the key is the signed-in user's (ref §2.1)
    log.info("api key issued by key login client_id=%s", registration.client_id)
    return ok({"api_key": api_key})


@token_router.get("/status")
async def status() -> ProcountorJSONResponse:
    return ok(
        {
            "name": "Procountor API (emulator)",
            "version": EMULATOR_VERSION,
            "status": "OK",
            "procountorVersion": PROCOUNTOR_VERSION,
        }
    )


@api.get("/sessioninfo")
async def session_info(request: Request, state: State) -> ProcountorJSONResponse:
    """Ref §7: whose session this is: the company and the user the API key belongs to."""
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    issued = state.tokens.get(token)
    return ok(
        {
            "companyId": 1,
            "name": state.config.company_name,
            "country": "FINLAND",
            "userId": 0 if issued is None else issued.user_id,
        }
    )


@api.get("/vats/default")
async def default_vats(state: State) -> ProcountorJSONResponse:
    return ok(
        {
            "countryCode": "FINLAND",
            "vatRates": list(state.config.vat_rates),
            "vatStatuses": [
                {
                    "vatStatus": s.code,
                    "description": s.description,
                    "sales": s.sales,
                    "purchase": s.purchase,
                }
                for s in state.config.vat_statuses
            ],
        }
    )


# --- webhooks ----------------------------------------------------------------------------------


@api.get("/webhooks")
async def list_webhooks(request: Request, state: State) -> ProcountorJSONResponse:
    return ok(paginate_uuid(request, list(state.webhooks.values())))


def paginate_uuid(request: Request, items: list[JsonObject]) -> JsonObject:
    return {
        "results": items,
        "meta": {
            "pageNumber": 0,
            "pageSize": len(items),
            "resultCount": len(items),
            "totalCount": len(items),
        },
    }


@api.post("/webhooks")
async def create_webhook(request: Request, state: State) -> ProcountorJSONResponse:
    body = await json_object(request)
    raise_if(webhooks.validate(body))
    hook = webhooks.stored(body)
    state.webhooks[hook["uuid"]] = hook
    return ok({"status": 200, "uuid": hook["uuid"]})


@api.put("/webhooks/{uuid}")
async def replace_webhook(uuid: str, request: Request, state: State) -> ProcountorJSONResponse:
    if uuid not in state.webhooks:
        raise ApiError.single(404, f"Webhook {uuid} not found.", "uuid")
    body = await json_object(request)
    raise_if(webhooks.validate(body))
    state.webhooks[uuid] = webhooks.stored(body, uuid)
    return message(f"Webhook {uuid} updated.")


@api.delete("/webhooks/{uuid}")
async def delete_webhook(uuid: str, state: State) -> Response:
    if state.webhooks.pop(uuid, None) is None:
        raise ApiError.single(404, f"Webhook {uuid} not found.", "uuid")
    return Response(status_code=204)


# --- business partners -------------------------------------------------------------------------


def partner_basic_info(partner: JsonObject) -> JsonObject:
    invoicing = partner.get("invoicingInfo") or {}
    return {
        "id": partner["id"],
        "name": partner["name"],
        "type": partner["type"],
        "billingAddress": partner.get("billingAddress"),
        "invoicingInfo": {
            "customerNumber": invoicing.get("customerNumber"),
            "identifier": invoicing.get("identifier"),
            "identifierType": invoicing.get("identifierType"),
        },
        "registryInfo": {"active": partner["registryInfo"]["active"]},
        "version": partner["version"],
    }


def store_partner(state: EmulatorState, body: JsonObject, partner_id: int) -> JsonObject:
    partner = copy.deepcopy(body)
    partner["id"] = partner_id
    registry = partner.get("registryInfo")
    registry = dict(registry) if isinstance(registry, dict) else {}
    registry.setdefault("active", True)
    partner["registryInfo"] = registry
    partner["version"] = state.new_version()
    state.partners[partner_id] = partner
    return partner


@api.post("/businesspartners")
async def create_partner(request: Request, state: State) -> ProcountorJSONResponse:
    body = await json_object(request)
    raise_if(rules.validate_business_partner(body))
    return ok(store_partner(state, body, state.new_id()))


@api.get("/businesspartners")
async def search_partners(request: Request, state: State) -> ProcountorJSONResponse:
    partner_type = request.query_params.get("type")
    if partner_type is not None and partner_type not in rules.PARTNER_TYPES:
        raise rules_error("type", f"'{partner_type}' is not a partner type")
    customer_number = request.query_params.get("customerNumber")
    active = request.query_params.get("active", "true").lower() != "false"
    # Procountor takes these two filters as HTTP headers so that they stay out of access logs.
    name = request.headers.get("name")
    identifier = request.headers.get("identifier")

    def wanted(p: JsonObject) -> bool:
        invoicing = p.get("invoicingInfo") or {}
        return (
            (partner_type is None or p["type"] == partner_type)
            and (customer_number is None or invoicing.get("customerNumber") == customer_number)
            and (identifier is None or invoicing.get("identifier") == identifier)
            and (name is None or name.casefold() in str(p["name"]).casefold())
            and bool(p["registryInfo"].get("active", True)) == active
            and in_window(p)
        )

    in_window = version_window(request)
    found = [partner_basic_info(p) for p in state.partners.values() if wanted(p)]
    return ok(paginate(request, found))


@api.get("/businesspartners/{partner_id}")
async def get_partner(partner_id: int, state: State) -> ProcountorJSONResponse:
    return ok(state.partner(partner_id))


@api.put("/businesspartners/{partner_id}")
async def replace_partner(partner_id: int, request: Request, state: State) -> ProcountorJSONResponse:
    current = state.partner(partner_id)
    body = await json_object(request)
    check_version(current, body.get("version"), required=False)
    raise_if(rules.validate_business_partner(body))
    return ok(store_partner(state, body, partner_id))


@api.patch("/businesspartners/{partner_id}")
async def patch_partner(partner_id: int, request: Request, state: State) -> ProcountorJSONResponse:
    current = state.partner(partner_id)
    body = await json_object(request)
    check_version(current, body.get("version") or request.query_params.get("version"), required=True)
    unknown = sorted(set(body) - set(PARTNER_PATCHABLE) - {"version"})
    if unknown:
        raise ApiError(400, [rules.invalid(f, "cannot be changed with PATCH") for f in unknown])
    merged = copy.deepcopy(current)
    merged.update({k: copy.deepcopy(v) for k, v in body.items() if k in PARTNER_PATCHABLE})
    raise_if(rules.validate_business_partner(merged))
    return ok(store_partner(state, merged, partner_id))


# --- products ----------------------------------------------------------------------------------


def store_product(state: EmulatorState, body: JsonObject, product_id: int) -> JsonObject:
    product = copy.deepcopy(body)
    product["id"] = product_id
    product["version"] = state.new_version()
    state.products[product_id] = product
    return product


@api.post("/products")
async def create_product(request: Request, state: State) -> ProcountorJSONResponse:
    body = await json_object(request)
    raise_if(rules.validate_product(body))
    return ok(store_product(state, body, state.new_id()))


@api.get("/products")
async def search_products(request: Request, state: State) -> ProcountorJSONResponse:
    name = request.query_params.get("name")
    code = request.query_params.get("code")
    types = query_list(request, "type") or ["SALES", "PURCHASE"]
    active = request.query_params.get("active")

    def wanted(p: JsonObject) -> bool:
        return (
            p["type"] in types
            and (name is None or name.casefold() in str(p["name"]).casefold())
            and (code is None or code.casefold() in str(p.get("code") or "").casefold())
            and (active is None or bool(p["active"]) == (active.lower() == "true"))
            and in_window(p)
        )

    in_window = version_window(request)
    return ok(paginate(request, [p for p in state.products.values() if wanted(p)]))


@api.get("/products/{product_id}")
async def get_product(product_id: int, state: State) -> ProcountorJSONResponse:
    return ok(state.product(product_id))


@api.put("/products/{product_id}")
async def replace_product(product_id: int, request: Request, state: State) -> ProcountorJSONResponse:
    current = state.product(product_id)
    body = await json_object(request)
    check_version(current, body.get("version"), required=False)
    raise_if(rules.validate_product(body))
    return ok(store_product(state, body, product_id))


@api.delete("/products/{product_id}")
async def delete_product(product_id: int, state: State) -> Response:
    state.product(product_id)
    del state.products[product_id]
    return Response(status_code=204)


# --- invoices ----------------------------------------------------------------------------------


def validate_invoice(state: EmulatorState, body: JsonObject) -> None:
    raise_if(
        rules.validate_sales_invoice(
            body,
            vat_rates=state.config.vat_rates,
            vat_statuses={s.code for s in state.config.vat_statuses if s.sales},
            partner_exists=lambda pid: pid in state.partners,
            partner_active=lambda pid: bool(state.partners[pid]["registryInfo"].get("active", True)),
        )
    )


def build_invoice(
    state: EmulatorState, body: JsonObject, *, invoice_id: int, invoice_number: int
) -> JsonObject:
    invoice = copy.deepcopy(body)
    invoice.pop("status", None)
    party_address = invoice["counterParty"]["counterPartyAddress"]
    # Omitted addresses are copied from the counterparty; `{}` keeps one empty.
    for key in ("billingAddress", "deliveryAddress"):
        if key not in invoice or invoice[key] is None:
            invoice[key] = copy.deepcopy(party_address)
    payment = invoice["paymentInfo"]
    if payment.get("bankReferenceCode") == "":
        payment["bankReferenceCode"] = rules.finnish_reference(1000 + invoice_number)
        payment.setdefault("bankReferenceCodeType", "FI")
    for row in invoice["invoiceRows"]:
        row.setdefault("id", state.new_id())
    invoice["id"] = invoice_id
    invoice["invoiceNumber"] = invoice_number
    invoice["invoiceSumInfo"] = [rules.invoice_sum_info(invoice)]
    invoice["version"] = state.new_version()
    return invoice


def invoice_list_item(invoice: JsonObject) -> JsonObject:
    return {
        "id": invoice["id"],
        "partnerId": invoice.get("partnerId"),
        "type": invoice["type"],
        "status": invoice["status"],
        "invoiceNumber": invoice["invoiceNumber"],
        "originalInvoiceNumber": invoice.get("originalInvoiceNumber"),
        "invoiceChannel": invoice["invoiceChannel"],
        "date": invoice["date"],
        "dueDate": invoice["paymentInfo"]["dueDate"],
        "newDueDate": invoice["paymentInfo"].get("newDueDate"),
        "created": invoice["created"],
        "version": invoice["version"],
        "invoiceSumInfo": invoice["invoiceSumInfo"],
        "counterParty": invoice["counterParty"],
    }


def transition(
    state: EmulatorState, invoice_id: int, allowed: Iterable[str], target: str, action: str
) -> JsonObject:
    invoice = state.invoice(invoice_id)
    if invoice["status"] not in set(allowed):
        raise ApiError.single(403, f"Cannot {action} an invoice in status {invoice['status']}.", "status")
    invoice["status"] = target
    invoice["version"] = state.new_version()
    return invoice


@api.post("/invoices")
async def create_invoice(request: Request, state: State) -> ProcountorJSONResponse:
    body = await json_object(request)
    validate_invoice(state, body)
    invoice = build_invoice(state, body, invoice_id=state.new_id(), invoice_number=state.new_invoice_number())
    invoice["status"] = "UNFINISHED"
    invoice["created"] = state.now_text()
    state.invoices[invoice["id"]] = invoice
    state.payment_events[invoice["id"]] = []
    return ok(invoice)


@api.get("/invoices")
async def search_invoices(request: Request, state: State) -> ProcountorJSONResponse:
    statuses = query_list(request, "status")
    unknown = [s for s in statuses if s not in rules.INVOICE_STATUSES]
    if unknown:
        raise rules_error("status", f"unknown status {', '.join(unknown)}")
    types = query_list(request, "types")
    partner_id = query_int(request, "businessPartnerId", None, minimum=0)
    invoice_number = query_int(request, "invoiceNumber", None, minimum=0)
    original = request.query_params.get("originalInvoiceNumber")

    def wanted(i: JsonObject) -> bool:
        return (
            (not statuses or i["status"] in statuses)
            and (not types or i["type"] in types)
            and (partner_id is None or i.get("partnerId") == partner_id)
            and (invoice_number is None or i["invoiceNumber"] == invoice_number)
            and (original is None or i.get("originalInvoiceNumber") == original)
            and in_window(i)
        )

    in_window = version_window(request)
    found = [invoice_list_item(i) for i in state.invoices.values() if wanted(i)]
    return ok(paginate(request, found))


@api.get("/invoices/{invoice_id}")
async def get_invoice(invoice_id: int, state: State) -> ProcountorJSONResponse:
    return ok(state.invoice(invoice_id))


@api.put("/invoices/{invoice_id}")
async def update_invoice(invoice_id: int, request: Request, state: State) -> ProcountorJSONResponse:
    current = state.invoice(invoice_id)
    body = await json_object(request)
    if current["status"] != "UNFINISHED":
        return move_due_date(state, current, body)
    check_version(current, body.get("version"), required=True)
    body["partnerId"] = current.get("partnerId")  # not editable by PUT
    validate_invoice(state, body)
    invoice = build_invoice(state, body, invoice_id=invoice_id, invoice_number=current["invoiceNumber"])
    invoice["status"] = current["status"]
    invoice["created"] = current["created"]
    state.invoices[invoice_id] = invoice
    return ok(invoice)


def move_due_date(state: EmulatorState, current: JsonObject, body: JsonObject) -> ProcountorJSONResponse:
    """A sent invoice takes one change only: `paymentInfo.newDueDate` (the emulator's decision, README).

    The body is the invoice as read, with the current `version`; reminders then use the new date.
    """
    if current["status"] not in DUE_DATE_MOVABLE_STATUSES:
        raise ApiError.single(403, f"Cannot edit an invoice in status {current['status']}.", "status")
    payment = body.get("paymentInfo")
    new_due = payment.get("newDueDate") if isinstance(payment, dict) else None
    changed = {
        k
        for k in set(body) | set(current)
        if k not in ("version", "paymentInfo") and body.get(k) != current.get(k)
    }
    changed |= {
        f"paymentInfo.{k}"
        for k in set(payment or {}) | set(current["paymentInfo"])
        if k != "newDueDate" and (payment or {}).get(k) != current["paymentInfo"].get(k)
    }
    if changed or not new_due:
        raise ApiError.single(
            403,
            f"Only paymentInfo.newDueDate can change on an invoice in status {current['status']}"
            + (f"; also changed: {', '.join(sorted(changed))}" if changed else ""),
            "paymentInfo.newDueDate",
        )
    check_version(current, body.get("version"), required=True)
    check = rules.Checker()
    moved = check.day(payment or {}, "newDueDate", "paymentInfo.newDueDate", required=True)
    raise_if(check.errors)
    if moved is not None and moved.isoformat() < current["date"]:
        raise ApiError.single(400, "DUE_DATE_BEFORE_BILL_DATE", "paymentInfo.newDueDate")
    current["paymentInfo"]["newDueDate"] = new_due
    current["version"] = state.new_version()
    return ok(current)


@api.put("/invoices/{invoice_id}/approve")
async def approve_invoice(invoice_id: int, request: Request, state: State) -> ProcountorJSONResponse:
    await json_object(request, optional=True)  # `{comment}` is ignored for sales invoices
    transition(state, invoice_id, {"UNFINISHED"}, "NOT_SENT", "approve")
    return message(f"Invoice {invoice_id} approved.")


@api.put("/invoices/{invoice_id}/send")
async def send_invoice(invoice_id: int, state: State) -> ProcountorJSONResponse:
    invoice = transition(state, invoice_id, SENDABLE_STATUSES, "SENT", "send")
    state.stats.sends.append(
        {"invoiceId": invoice_id, "invoiceChannel": invoice["invoiceChannel"], "at": state.now_text()}
    )
    return message(f"Invoice {invoice_id} sent.")


@api.put("/invoices/{invoice_id}/invalidate")
async def invalidate_invoice(invoice_id: int, state: State) -> ProcountorJSONResponse:
    transition(state, invoice_id, INVALIDATABLE_STATUSES, "INVALIDATED", "invalidate")
    return message(f"Invoice {invoice_id} invalidated.")


@api.put("/invoices/{invoice_id}/unfinished")
async def reopen_invoice(invoice_id: int, state: State) -> ProcountorJSONResponse:
    transition(state, invoice_id, {"NOT_SENT"}, "UNFINISHED", "return to unfinished")
    return message(f"Invoice {invoice_id} returned to unfinished.")


def open_amount(state: EmulatorState, invoice: JsonObject) -> Decimal:
    """What is left to settle: the total less every payment event (negative for a credit invoice)."""
    total = Decimal(invoice["invoiceSumInfo"][0]["invoiceSumTotal"])
    paid = sum((Decimal(e["amount"]) for e in state.payment_events.get(invoice["id"], [])), Decimal(0))
    return total - paid


def record_payment(state: EmulatorState, invoice_id: int, body: JsonObject, *, event_type: str) -> JsonObject:
    """Add a payment event; PAID once settled, else PARTLY_PAID; push `INVOICE_PAYMENT_CREATED`.

    A payment beyond the open amount is recorded as paid (an overpayment: the customer paid more).
    A credit invoice (negative total) is settled only with negative `CREDIT_NOTE` amounts, and a
    `CREDIT_NOTE` offset on an ordinary invoice may not exceed what is open on it.
    """
    invoice = state.invoice(invoice_id)
    if invoice["status"] not in PAYABLE_STATUSES:
        raise ApiError.single(403, f"Cannot mark paid an invoice in status {invoice['status']}.", "status")
    sums = invoice["invoiceSumInfo"][0]
    credit_invoice = Decimal(sums["invoiceSumTotal"]) < 0
    raise_if(rules.validate_payment(body, credit_invoice=credit_invoice))
    if body["currency"] != sums["currency"]:
        raise rules_error("currency", f"the invoice is in {sums['currency']}")
    amount = Decimal(body["amount"])
    left = open_amount(state, invoice)
    if body.get("paymentMethodType") == "CREDIT_NOTE" and abs(amount) > abs(left):
        raise rules_error("amount", f"a credit note offset cannot exceed the open amount {left}")
    event = {
        "id": state.new_id(),
        "invoiceId": invoice_id,
        "type": CREDIT_OFFSET if body.get("paymentMethodType") == "CREDIT_NOTE" else event_type,
        "paymentDate": body["paymentDate"],
        "status": "MARKED_PAID",
        "amount": amount,
        "currency": body["currency"],
        "description": body.get("description"),
        "paidAmount": amount,
        "paidCurrency": body["currency"],
    }
    state.payment_events.setdefault(invoice_id, []).append(event)
    settled = open_amount(state, invoice) * (-1 if credit_invoice else 1) <= 0
    invoice["status"] = "PAID" if settled else "PARTLY_PAID"
    invoice["paymentDate"] = body["paymentDate"]
    invoice["version"] = state.new_version()
    webhooks.push(state, "INVOICE_PAYMENT_CREATED", event)
    return event


@api.put("/invoices/{invoice_id}/paymentevents/markpaid")
async def mark_paid(invoice_id: int, request: Request, state: State) -> ProcountorJSONResponse:
    body = await json_object(request)
    return ok(record_payment(state, invoice_id, body, event_type=MANUAL_PAYMENT))


@api.get("/invoices/{invoice_id}/paymentevents")
async def payment_events(invoice_id: int, request: Request, state: State) -> ProcountorJSONResponse:
    state.invoice(invoice_id)
    return ok(paginate(request, list(state.payment_events.get(invoice_id, []))))


@api.put("/invoices/{invoice_id}/notes")
async def invoice_notes(invoice_id: int, request: Request, state: State) -> ProcountorJSONResponse:
    """Notes change whatever the status (not printed); finance reads them in Procountor."""
    invoice = state.invoice(invoice_id)
    body = await json_object(request)
    check = rules.Checker()
    check.unknown(body, {"notes"})
    check.text(body, "notes", "notes", required=True, max_length=10000)
    raise_if(check.errors)
    invoice["notes"] = body["notes"]
    invoice["version"] = state.new_version()
    return message(f"Invoice {invoice_id} notes updated.")


# --- key login (ref §2.2): served at the host root, like https://api.procountor.com/keylogin ------


keylogin_router = APIRouter()


_LOGIN_FIELDS = ("response_type", "client_id", "redirect_uri", "state")


def _login_request(params: Mapping[str, str], state: EmulatorState) -> tuple[str, str]:
    """The registered client and its redirect_uri of a key-login request, or 400."""
    registration = state.config.client(params.get("client_id", ""))
    redirect_uri = params.get("redirect_uri")
    if params.get("response_type") != "code" or registration is None or not redirect_uri:
        raise ApiError.single(
            400, "response_type=code, a registered client_id and redirect_uri are required."
        )
    if registration.redirect_uri and redirect_uri != registration.redirect_uri:
        raise ApiError.single(400, "redirect_uri does not match the registered one.", "redirect_uri")
    return registration.client_id, redirect_uri


def _back(redirect_uri: str, query: dict[str, str], params: Mapping[str, str], status: int) -> Response:
    if params.get("state"):
        query["state"] = params["state"]
    separator = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(f"{redirect_uri}{separator}{urlencode(query)}", status_code=status)


def _consented(
    state: EmulatorState,
    client_id: str,
    redirect_uri: str,
    params: Mapping[str, str],
    user_id: int,
    status: int,
) -> Response:
    code = secrets.token_urlsafe(24)
    lifetime = state.config.login_code_lifetime_seconds
    state.login_codes[code] = (client_id, redirect_uri, state.config.monotonic() + lifetime, user_id)
    return _back(redirect_uri, {"code": code, "expires_in": str(lifetime)}, params, status)


def _login_page(
    params: Mapping[str, str], *, client_id: str, error: str | None, username: str
) -> HTMLResponse:
    """The key-login form: every value from the request is escaped (it is the caller's text)."""
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(params.get(name, ""))}">'
        for name in _LOGIN_FIELDS
    )
    alert = f'<p role="alert" class="error">{html.escape(error)}</p>' if error else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Procountor – sign in (emulator)</title></head>
<body>
<h1>Procountor</h1>
<p>The application <strong>{html.escape(client_id)}</strong> asks for an API key of your user.</p>
{alert}
<form method="post" action="/keylogin">
{hidden}
<label>Username <input name="username" autocomplete="username" value="{html.escape(username)}" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit" name="decision" value="allow">Sign in and allow</button>
<button type="submit" name="decision" value="deny" formnovalidate>Deny</button>
</form>
</body></html>"""
    return HTMLResponse(page, status_code=401 if error else 200, headers={"Cache-Control": "no-store"})


@keylogin_router.get("/keylogin")
async def key_login(request: Request, state: State) -> Response:
    """The key-login page (ref §2.2): a sign-in form of Procountor's users; consent sends the browser
    back with a one-time `code`. With `keylogin_auto_consent` (tests only) it consents at once."""
    params = request.query_params
    client_id, redirect_uri = _login_request(params, state)
    if state.config.keylogin_auto_consent:
        first = state.config.login_users[0].user_id if state.config.login_users else state.config.api_user_id
        return _consented(state, client_id, redirect_uri, params, first, 302)
    return _login_page(params, client_id=client_id, error=None, username="")


@keylogin_router.post("/keylogin")
async def key_login_signed_in(request: Request, state: State) -> Response:
    """The form sent: a wrong username or password shows the form again with the error (401);
    `deny` goes back with `error=access_denied`; the right ones consent: 303 back with the code."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise ApiError.single(400, "Content-Type must be application/x-www-form-urlencoded.")
    form = {
        k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8"), keep_blank_values=True).items()
    }
    client_id, redirect_uri = _login_request(form, state)
    if form.get("decision") == "deny":
        return _back(redirect_uri, {"error": "access_denied"}, form, 303)
    username, password = form.get("username", ""), form.get("password", "")
    user = next(
        (
            u
            for u in state.config.login_users
            if secrets.compare_digest(u.username.encode(), username.encode())
            and secrets.compare_digest(u.password.encode(), password.encode())
        ),
        None,
    )
    if user is None:
        log.info("key login refused client_id=%s", client_id)  # never the username or password
        return _login_page(form, client_id=client_id, error="Wrong username or password.", username=username)
    log.info("key login consented client_id=%s user_id=%d", client_id, user.user_id)
    return _consented(state, client_id, redirect_uri, form, user.user_id, 303)


# --- emulator-only inspection ------------------------------------------------------------------


@inspection.get("/invoices")
async def inspect_invoices(state: State) -> ProcountorJSONResponse:
    return ok(list(state.invoices.values()))


@inspection.get("/businesspartners")
async def inspect_partners(state: State) -> ProcountorJSONResponse:
    return ok(list(state.partners.values()))


@inspection.post("/businesspartners")
async def seed_partners(request: Request, state: State) -> ProcountorJSONResponse:
    """`[partner, …]`: customers that exist already (benchmarks seed thousands without the rate limit)."""
    body = loads(await request.body())
    if not isinstance(body, list):
        raise ApiError.single(400, "Request body must be a JSON array of business partners.")
    created = []
    for partner in body:
        raise_if(rules.validate_business_partner(partner))
        created.append(store_partner(state, partner, state.new_id()))
    return ok(created)


@inspection.get("/invoice-numbers")
async def inspect_invoice_numbers(state: State) -> ProcountorJSONResponse:
    """Every invoice as `{id, originalInvoiceNumber, status}`: duplicates are counted from it."""
    return ok(
        [
            {"id": i["id"], "originalInvoiceNumber": i.get("originalInvoiceNumber"), "status": i["status"]}
            for i in state.invoices.values()
        ]
    )


@inspection.get("/products")
async def inspect_products(state: State) -> ProcountorJSONResponse:
    return ok(list(state.products.values()))


@inspection.get("/stats")
async def inspect_stats(state: State) -> ProcountorJSONResponse:
    return ok(
        {
            "tokensIssued": state.stats.tokens_issued,
            "activeTokens": len(state.tokens),
            "rateLimited": state.stats.rate_limited,
            "unauthorized": state.stats.unauthorized,
            "requestsByClient": state.stats.requests_by_client,
            "maxRequestsInWindow": state.stats.max_in_window,
            "requestsByRoute": state.stats.requests_by_route,
            "webhookDeliveries": len(state.webhook_deliveries),
            "sends": state.stats.sends,
        }
    )


@inspection.post("/reset")
async def reset(state: State) -> ProcountorJSONResponse:
    state.reset()
    return message("Emulator state cleared.")


@inspection.post("/tokens/expire")
async def expire_tokens(state: State) -> ProcountorJSONResponse:
    return message(f"{state.expire_tokens()} access tokens expired.")


@inspection.post("/faults")
async def inject_fault(request: Request, state: State) -> ProcountorJSONResponse:
    """`{"status": 503, "times": 2, "method": "PUT", "pathPrefix": "/api/invoices"}`."""
    body = await json_object(request)
    check = rules.Checker()
    status_code = check.integer(body, "status", "status", required=True)
    times = check.integer(body, "times", "times", required=False)
    method = check.text(body, "method", "method", required=False)
    prefix = check.text(body, "pathPrefix", "pathPrefix", required=False)
    delay = check.number(body, "delaySeconds", "delaySeconds", required=False)
    raise_if(check.errors)
    assert status_code is not None
    state.faults.append(Fault(status_code, times or 1, method, prefix, float(delay or 0)))
    return message("Fault injected.")


@inspection.post("/invoices/{invoice_id}/payments")
async def simulate_customer_payment(
    invoice_id: int, request: Request, state: State
) -> ProcountorJSONResponse:
    """A customer pays: the invoice gets a payment event as if a reference payment arrived."""
    body = await json_object(request)
    invoice = state.invoice(invoice_id)
    body.setdefault("currency", invoice["invoiceSumInfo"][0]["currency"])
    body.setdefault("paymentDate", state.now().date().isoformat())
    body.setdefault("description", "Reference payment (emulated)")
    if isinstance(body.get("amount"), float | str):
        body["amount"] = Decimal(str(body["amount"]))  # a test's convenience; the API itself wants numbers
    record_payment(state, invoice_id, body, event_type=REFERENCE_PAYMENT)
    return ok(state.invoice(invoice_id))


@inspection.patch("/businesspartners/{partner_id}")
async def edit_partner_in_procountor(
    partner_id: int, request: Request, state: State
) -> ProcountorJSONResponse:
    """A person edits a customer in Procountor's UI: merged one level deep, new `version`."""
    partner = copy.deepcopy(state.partner(partner_id))
    for key, value in (await json_object(request)).items():
        if isinstance(value, dict) and isinstance(partner.get(key), dict):
            partner[key] = {**partner[key], **value}
        else:
            partner[key] = value
    raise_if(rules.validate_business_partner(partner))
    return ok(store_partner(state, partner, partner_id))


@inspection.patch("/products/{product_id}")
async def edit_product_in_procountor(
    product_id: int, request: Request, state: State
) -> ProcountorJSONResponse:
    """A person edits a product in Procountor's UI: new `version`."""
    product = {**state.product(product_id), **(await json_object(request))}
    raise_if(rules.validate_product(product))
    return ok(store_product(state, product, product_id))


@inspection.post("/clock")
async def set_clock(request: Request, state: State) -> ProcountorJSONResponse:
    """`{"now": "2026-11-02T06:00:00+02:00"}`: the emulator's wall clock (versions, webhooks) from then on."""
    from datetime import datetime

    body = await json_object(request)
    at = datetime.fromisoformat(str(body["now"]))
    if at.tzinfo is not None:
        from procountor_emulator.config import HELSINKI

        at = at.astimezone(HELSINKI).replace(tzinfo=None)
    state.clock_offset = at - state.config.now()
    return message(f"Emulator clock set to {at.isoformat()}.")


@inspection.get("/webhooks/deliveries")
async def inspect_webhook_deliveries(state: State) -> ProcountorJSONResponse:
    """Every push the emulator made: event, URL, answer status, attempts (bodies included)."""
    return ok(state.webhook_deliveries)


@inspection.post("/webhooks/redeliver")
async def redeliver_webhook(request: Request, state: State) -> ProcountorJSONResponse:
    """`{"index": -1, "sameSignature": false}`: push an earlier event again (a duplicate delivery)."""
    body = await json_object(request, optional=True)
    index = int(body.get("index", -1))
    try:
        delivery = state.webhook_deliveries[index]
    except IndexError:
        raise ApiError.single(404, "No such webhook delivery.") from None
    webhooks.redeliver(state, delivery, same_signature=bool(body.get("sameSignature", False)))
    return message("Webhook event pushed again.")


# --- the application ---------------------------------------------------------------------------


async def api_error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return ProcountorJSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def http_error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    error = ApiError.single(exc.status_code, str(exc.detail))
    return ProcountorJSONResponse(error.body(), status_code=exc.status_code)


async def validation_error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        FieldError(".".join(str(p) for p in e.get("loc", ())[1:]) or None, str(e.get("msg", "Invalid")))
        for e in exc.errors()
    ]
    return ProcountorJSONResponse(ApiError(400, errors).body(), status_code=400)


def create_app(config: EmulatorConfig | None = None) -> FastAPI:
    """A fresh emulator with its own in-memory company; nothing is shared between apps."""
    app = FastAPI(
        title="Procountor API emulator",
        version=EMULATOR_VERSION,
        default_response_class=ProcountorJSONResponse,
        docs_url="/_emulator/docs",
        openapi_url="/_emulator/openapi.json",
        redoc_url=None,
    )
    app.state.emulator = EmulatorState(config or EmulatorConfig())
    app.include_router(token_router)
    app.include_router(keylogin_router)
    app.include_router(api)
    app.include_router(inspection)
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)

    @app.middleware("http")
    async def log_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        delay = getattr(request.state, "delay_after", 0)
        if delay:
            await asyncio.sleep(delay)
        # The path only: a misbehaving client may have put credentials in the query string.
        log.info("%s %s -> %d", request.method, request.url.path, response.status_code)
        return response

    return app
