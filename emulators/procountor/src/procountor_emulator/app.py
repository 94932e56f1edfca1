"""The emulator's HTTP surface: the Procountor API under `/api`, inspection under `/_emulator`."""

from __future__ import annotations

import copy
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from procountor_emulator import rules
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
SENDABLE_STATUSES = frozenset({"NOT_SENT", "SENT"})
INVALIDATABLE_STATUSES = frozenset({"UNFINISHED", "NOT_SENT", "SENT", "PARTLY_PAID"})
PARTNER_PATCHABLE = ("name", "type", "address", "invoicingInfo", "paymentInfo")


def get_state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


State = Annotated[EmulatorState, Depends(get_state)]


def apply_faults(request: Request, state: State) -> None:
    fault = state.take_fault(request.method, request.url.path)
    if fault is not None:
        raise ApiError.single(fault.status, "Injected fault (emulator).")


async def authorize(request: Request, state: State) -> str:
    """Resolve the bearer token to its API client and count the request against the rate limit."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError.single(401, "Missing bearer access token.")
    client_id = state.client_for_token(token.strip())
    state.admit(client_id)
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
    authentic = (
        registration is not None
        and secrets.compare_digest(registration.client_secret, form["client_secret"])
        and secrets.compare_digest(registration.api_key, form["api_key"])
    )
    if registration is None or not authentic:
        # Never echo what was sent: it may be a secret that was pasted into the wrong field.
        raise ApiError.single(401, "Invalid client credentials or API key.")
    redirect_uri = form.get("redirect_uri")
    if redirect_uri and registration.redirect_uri and redirect_uri != registration.redirect_uri:
        raise ApiError.single(400, "redirect_uri does not match the registered one.", "redirect_uri")
    state.admit(registration.client_id)
    token, lifetime = state.issue_token(registration.client_id)
    log.info("token issued client_id=%s expires_in=%d", registration.client_id, lifetime)
    return ok({"access_token": token, "token_type": "bearer", "expires_in": lifetime})


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
        )

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
        )

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
        )

    found = [invoice_list_item(i) for i in state.invoices.values() if wanted(i)]
    return ok(paginate(request, found))


@api.get("/invoices/{invoice_id}")
async def get_invoice(invoice_id: int, state: State) -> ProcountorJSONResponse:
    return ok(state.invoice(invoice_id))


@api.put("/invoices/{invoice_id}")
async def update_invoice(invoice_id: int, request: Request, state: State) -> ProcountorJSONResponse:
    current = state.invoice(invoice_id)
    if current["status"] != "UNFINISHED":
        raise ApiError.single(403, f"Cannot edit an invoice in status {current['status']}.", "status")
    body = await json_object(request)
    check_version(current, body.get("version"), required=True)
    body["partnerId"] = current.get("partnerId")  # not editable by PUT
    validate_invoice(state, body)
    invoice = build_invoice(state, body, invoice_id=invoice_id, invoice_number=current["invoiceNumber"])
    invoice["status"] = current["status"]
    invoice["created"] = current["created"]
    state.invoices[invoice_id] = invoice
    return ok(invoice)


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


def record_payment(
    state: EmulatorState, invoice_id: int, body: JsonObject, *, default_method: str
) -> JsonObject:
    invoice = state.invoice(invoice_id)
    if invoice["status"] not in PAYABLE_STATUSES:
        raise ApiError.single(403, f"Cannot mark paid an invoice in status {invoice['status']}.", "status")
    raise_if(rules.validate_payment(body))
    sums = invoice["invoiceSumInfo"][0]
    if body["currency"] != sums["currency"]:
        raise rules_error("currency", f"the invoice is in {sums['currency']}")
    event = {
        "id": state.new_id(),
        "paymentDate": body["paymentDate"],
        "amount": Decimal(body["amount"]),
        "currency": body["currency"],
        "description": body.get("description"),
        "paymentMethodType": body.get("paymentMethodType") or default_method,
        "created": state.now_text(),
    }
    events = state.payment_events.setdefault(invoice_id, [])
    events.append(event)
    paid = sum((Decimal(e["amount"]) for e in events), Decimal(0))
    invoice["status"] = "PAID" if paid >= Decimal(sums["invoiceSumTotal"]) else "PARTLY_PAID"
    invoice["version"] = state.new_version()
    return invoice


@api.put("/invoices/{invoice_id}/paymentevents/markpaid")
async def mark_paid(invoice_id: int, request: Request, state: State) -> ProcountorJSONResponse:
    body = await json_object(request)
    invoice = record_payment(state, invoice_id, body, default_method="BANK_TRANSFER")
    return message(f"Invoice {invoice_id} marked paid; status {invoice['status']}.")


@api.get("/invoices/{invoice_id}/paymentevents")
async def payment_events(invoice_id: int, state: State) -> ProcountorJSONResponse:
    state.invoice(invoice_id)
    return ok(state.payment_events.get(invoice_id, []))


# --- emulator-only inspection ------------------------------------------------------------------


@inspection.get("/invoices")
async def inspect_invoices(state: State) -> ProcountorJSONResponse:
    return ok(list(state.invoices.values()))


@inspection.get("/businesspartners")
async def inspect_partners(state: State) -> ProcountorJSONResponse:
    return ok(list(state.partners.values()))


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
    raise_if(check.errors)
    assert status_code is not None
    state.faults.append(Fault(status_code, times or 1, method, prefix))
    return message("Fault injected.")


@inspection.post("/invoices/{invoice_id}/payments")
async def simulate_customer_payment(
    invoice_id: int, request: Request, state: State
) -> ProcountorJSONResponse:
    """A customer pays: the invoice gets a payment event as if a reference payment arrived."""
    body = await json_object(request)
    invoice = state.invoice(invoice_id)
    body.setdefault("currency", invoice["invoiceSumInfo"][0]["currency"])
    body.setdefault("paymentDate", state.config.now().date().isoformat())
    body.setdefault("description", "Reference payment (emulated)")
    invoice = record_payment(state, invoice_id, body, default_method="REFERENCE_PAYMENT")
    return ok(invoice)


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
    app.include_router(api)
    app.include_router(inspection)
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)

    @app.middleware("http")
    async def log_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        # The path only: a misbehaving client may have put credentials in the query string.
        log.info("%s %s -> %d", request.method, request.url.path, response.status_code)
        return response

    return app
