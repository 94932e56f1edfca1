"""An async client of the Procountor REST API: token, throttling, retries, typed errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Protocol, Self

import httpx
import structlog
from pydantic import SecretStr

from service_runtime.metrics import ProcountorMetrics

log = structlog.get_logger(__name__)

JsonObject = dict[str, Any]

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Ids in a path (`/invoices/123/approve`) become `{id}`, so that the 429 metric has few endpoints.
_PATH_ID = re.compile(r"/\d+(?=/|$)")


def endpoint_of(path: str) -> str:
    """The endpoint of a request path, ids replaced: the `endpoint` label of `procountor_throttled`."""
    return _PATH_ID.sub("/{id}", path.split("?", 1)[0])


class Throttle(Protocol):
    """Where a request waits for its turn under the rate limit (in process, or shared in PostgreSQL)."""

    def slot(self) -> AbstractAsyncContextManager[None]: ...


#: Gives the API key to use now: the configured one, or the one stored by the key-login flow (I-06).
ApiKeySource = Callable[[], Awaitable[SecretStr]]


@dataclass(frozen=True)
class ProcountorClientConfig:
    """Where Procountor is and who we are there; secrets stay `SecretStr` end to end."""

    base_url: str
    """API root including the base path, e.g. `https://pts-api.procountor.com/api`."""
    client_id: str
    client_secret: SecretStr
    api_key: SecretStr
    redirect_uri: str | None = None
    """Sent with the token request when Procountor registered one for the client."""
    token_renewal_margin_seconds: float = 300.0
    """A cached token is replaced this long before Procountor says it expires."""
    max_requests_per_second: int = 20
    max_attempts: int = 6
    """Attempts per request, the first included, for 429, 5xx and connection errors."""
    backoff_initial_seconds: float = 0.25
    backoff_max_seconds: float = 8.0
    timeout_seconds: float = 30.0
    page_size: int = 200


@dataclass(frozen=True)
class ProcountorErrorDetail:
    """One entry of Procountor's `errors` list."""

    status: int
    field: str | None
    message: str


class ProcountorError(Exception):
    """Procountor answered with an error status; `errors` is its parsed error body.

    Built from the method, the path and the response only, so neither credentials nor tokens can
    end up in its text.
    """

    def __init__(
        self,
        status: int,
        errors: Sequence[ProcountorErrorDetail],
        *,
        method: str = "",
        path: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.errors = tuple(errors)
        self.method = method
        self.path = path
        self.retry_after = retry_after
        """Seconds Procountor asked us to wait (`Retry-After`, either form), if it said."""
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.method} {self.path} " if self.method else ""
        details = "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in self.errors)
        return f"Procountor {where}answered {self.status}: {details or 'no error body'}"

    def __repr__(self) -> str:
        return f"ProcountorError({self.status!r}, {list(self.errors)!r})"

    def has_field(self, name: str) -> bool:
        return any(e.field == name for e in self.errors)


class ProcountorUnavailableError(ProcountorError):
    """Procountor could not be reached, even after retries (status 0: no response)."""


@dataclass
class _Token:
    value: SecretStr
    renew_at: float


class _Throttle:
    """At most `limit` requests inside any `window` seconds as Procountor could count them.

    A slot is held from the moment a request starts until `window` after its response arrived.
    Counting from the start alone is not enough: a burst queued in the network reaches Procountor
    late, and the next burst, sent a window after the first one *started*, would overlap it there.
    """

    def __init__(self, limit: int, clock: Callable[[], float], window: float = 1.0) -> None:
        self._limit = limit
        self._clock = clock
        self._window = window
        self._in_flight = 0
        self._finished: deque[float] = deque()
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self._acquire()
        try:
            yield
        finally:
            async with self._changed:
                self._in_flight -= 1
                self._finished.append(self._clock())
                self._changed.notify_all()

    async def _acquire(self) -> None:
        async with self._changed:
            while True:
                now = self._clock()
                while self._finished and self._finished[0] <= now - self._window:
                    self._finished.popleft()
                if self._in_flight + len(self._finished) < self._limit:
                    self._in_flight += 1
                    return
                timeout = self._finished[0] + self._window - now if self._finished else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout)


def dumps(value: Any) -> bytes:
    """JSON with Decimals written as plain numbers with their exact digits, never via float."""
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts).encode("utf-8")


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("JSON has no representation for a non-finite number")
        out.append(format(value, "f"))
    elif isinstance(value, Mapping):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            out.append("," if index else "")
            out.append(json.dumps(str(key), ensure_ascii=False) + ":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            out.append("," if index else "")
            _encode(item, out)
        out.append("]")
    else:
        # None, bool, int, str (and a stray float) are json's own business.
        out.append(json.dumps(value, ensure_ascii=False, allow_nan=False))


def loads(content: bytes) -> Any:
    """Procountor's JSON with every non-integer number as a Decimal."""
    return json.loads(content, parse_float=Decimal)


class ProcountorClient:
    """The Procountor REST API as async methods returning parsed JSON (Decimals for amounts).

    The access token is fetched on first use, cached, renewed `token_renewal_margin_seconds` before
    it expires and once more if Procountor answers 401 anyway. Requests are throttled client-side to
    `max_requests_per_second`; 429, 5xx and connection failures are retried with bounded
    exponential backoff, except that a POST is not repeated after a 5xx or a timeout, which might
    have created the object already.
    """

    def __init__(
        self,
        config: ProcountorClientConfig,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        throttle: Throttle | None = None,
        api_key: ApiKeySource | None = None,
        metrics: ProcountorMetrics | None = None,
    ) -> None:
        self._config = config
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=config.timeout_seconds)
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()
        self._throttle: Throttle = throttle or _Throttle(config.max_requests_per_second, clock)
        self._api_key = api_key
        self._metrics = metrics
        self._base = config.base_url.rstrip("/")

    def __repr__(self) -> str:
        return f"ProcountorClient(base_url={self._base!r}, client_id={self._config.client_id!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it; an injected one belongs to the caller."""
        if self._owns_http:
            await self._http.aclose()

    # --- business partners ---------------------------------------------------------------------

    async def find_business_partner_by_identifier(self, business_id: str) -> JsonObject | None:
        """The full customer whose `invoicingInfo.identifier` is this business ID, active or not.

        Procountor takes `identifier` as a header so that it stays out of URLs and access logs;
        its search lists active partners by default, so an inactive one is looked for next.
        """
        for active in ("true", "false"):
            page = await self._request_json(
                "GET",
                "/businesspartners",
                params={"type": "CUSTOMER", "active": active},
                headers={"identifier": business_id},
            )
            for basic in page.get("results", []):
                if (basic.get("invoicingInfo") or {}).get("identifier") == business_id:
                    return await self.get_business_partner(int(basic["id"]))
        return None

    async def get_business_partner(self, partner_id: int) -> JsonObject:
        return await self._request_json("GET", f"/businesspartners/{partner_id}")

    async def create_business_partner(self, body: Mapping[str, Any]) -> JsonObject:
        return await self._request_json("POST", "/businesspartners", json_body=body)

    async def patch_business_partner(
        self, partner_id: int, body: Mapping[str, Any], version: str
    ) -> JsonObject:
        """Change name, type, address, invoicingInfo or paymentInfo; 400 if `version` is stale."""
        return await self._request_json(
            "PATCH", f"/businesspartners/{partner_id}", json_body={**body, "version": version}
        )

    async def replace_business_partner(self, partner_id: int, body: Mapping[str, Any]) -> JsonObject:
        """`PUT`: the whole partner replaced, `version` in the body (400 if stale). The way to set
        `billingAddress` and `registryInfo.active`, which PATCH does not take (reference §4)."""
        return await self._request_json("PUT", f"/businesspartners/{partner_id}", json_body=body)

    async def business_partners_changed_since(self, version: str) -> list[JsonObject]:
        """Customers (basic info) whose `version` is at or after this one (the polling backstop)."""
        return await self._list_all("/businesspartners", {"type": "CUSTOMER", "versionStartDate": version})

    # --- products ------------------------------------------------------------------------------

    async def create_product(self, body: Mapping[str, Any]) -> JsonObject:
        return await self._request_json("POST", "/products", json_body=body)

    async def list_products(self, **filters: str) -> list[JsonObject]:
        """Every product matching the filters (`name`, `code`, `type`, `versionStartDate`, …), all pages."""
        return await self._list_all("/products", filters)

    async def find_product_by_code(self, code: str) -> JsonObject | None:
        """The sales product with exactly this code (Procountor's `code` filter is a substring match)."""
        return next(
            (p for p in await self.list_products(code=code, type="SALES") if p.get("code") == code), None
        )

    # --- invoices ------------------------------------------------------------------------------

    async def find_invoice_by_original_number(self, number: str) -> JsonObject | None:
        """The full invoice with this `originalInvoiceNumber`, preferring one not invalidated."""
        found = [
            item
            for item in await self._list_all("/invoices", {"originalInvoiceNumber": number})
            if item.get("originalInvoiceNumber") == number
        ]
        if not found:
            return None
        found.sort(key=lambda i: (i.get("status") == "INVALIDATED", int(i["id"])))
        return await self.get_invoice(int(found[0]["id"]))

    async def invoices_changed_since(self, version: str) -> list[JsonObject]:
        """Sales invoices (list items) whose `version` is at or after this one: payments change it."""
        return await self._list_all("/invoices", {"types": "SALES_INVOICE", "versionStartDate": version})

    async def create_invoice(self, body: Mapping[str, Any]) -> JsonObject:
        """POST a sales invoice; Procountor answers with it in status UNFINISHED."""
        return await self._request_json("POST", "/invoices", json_body=body)

    async def approve_invoice(self, invoice_id: int) -> JsonObject:
        return await self._request_json("PUT", f"/invoices/{invoice_id}/approve", json_body={})

    async def send_invoice(self, invoice_id: int) -> JsonObject:
        return await self._request_json("PUT", f"/invoices/{invoice_id}/send")

    async def get_invoice(self, invoice_id: int) -> JsonObject:
        return await self._request_json("GET", f"/invoices/{invoice_id}")

    async def update_invoice(self, invoice_id: int, body: Mapping[str, Any]) -> JsonObject:
        """PUT the whole invoice with its current `version` (a sent one takes `newDueDate` only)."""
        return await self._request_json("PUT", f"/invoices/{invoice_id}", json_body=body)

    async def set_invoice_notes(self, invoice_id: int, notes: str) -> None:
        await self._request_json("PUT", f"/invoices/{invoice_id}/notes", json_body={"notes": notes})

    async def mark_paid(self, invoice_id: int, body: Mapping[str, Any]) -> JsonObject:
        """A payment event (Procountor answers with it); a `CREDIT_NOTE` one settles a credit offset."""
        return await self._request_json(
            "PUT", f"/invoices/{invoice_id}/paymentevents/markpaid", json_body=body
        )

    async def list_payment_events(self, invoice_id: int) -> list[JsonObject]:
        """Every payment event of an invoice (`{results, meta}`, all pages)."""
        return await self._list_all(f"/invoices/{invoice_id}/paymentevents", {})

    # --- webhooks ------------------------------------------------------------------------------

    async def list_webhooks(self) -> list[JsonObject]:
        answer = await self._request_json("GET", "/webhooks")
        hooks: list[JsonObject] = answer.get("results", [])
        return hooks

    async def create_webhook(self, body: Mapping[str, Any]) -> JsonObject:
        return await self._request_json("POST", "/webhooks", json_body=body)

    async def replace_webhook(self, uuid: str, body: Mapping[str, Any]) -> None:
        await self._request_json("PUT", f"/webhooks/{uuid}", json_body=body)

    # --- key login (I-06) ----------------------------------------------------------------------

    async def session_info(self) -> JsonObject:
        """`GET /sessioninfo` (ref §7): the company and the user the API key belongs to."""
        return await self._request_json("GET", "/sessioninfo")

    async def exchange_login_code(self, code: str, redirect_uri: str) -> SecretStr:
        """`POST /oauth/key`: the one-time code of the key-login page becomes an API key."""
        form = {
            "grant_type": "authorization_code",
            "client_id": self._config.client_id,
            "client_secret": self._config.client_secret.get_secret_value(),
            "redirect_uri": redirect_uri,
            "code": code,
        }
        response = await self._send(
            "POST", "/oauth/key", form=form, headers={"Accept": "application/json"}, repeatable=False
        )
        if response.status_code >= 400:
            raise _error_from(response, method="POST", path="/oauth/key", retry_after=None)
        return SecretStr(str(loads(response.content)["api_key"]))

    # --- transport -----------------------------------------------------------------------------

    async def _list_all(self, path: str, params: Mapping[str, str]) -> list[JsonObject]:
        items: list[JsonObject] = []
        page = 0
        while True:
            answer = await self._request_json(
                "GET", path, params={**params, "size": str(self._config.page_size), "page": str(page)}
            )
            results: list[JsonObject] = answer.get("results", [])
            items.extend(results)
            meta = answer.get("meta") or {}
            total = meta.get("totalCount")
            if not results or len(results) < self._config.page_size:
                return items
            if isinstance(total, int) and len(items) >= total:
                return items
            page += 1

    async def _request_json(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> JsonObject:
        body = await self._request(method, path, json_body=json_body, params=params, headers=headers)
        if not isinstance(body, dict):
            raise ProcountorError(
                200,
                [ProcountorErrorDetail(200, None, "expected a JSON object")],
                method=method,
                path=path,
            )
        return body

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        content = None if json_body is None else dumps(json_body)
        renewed_after_401 = False
        while True:
            token = await self._access_token()
            request_headers = {
                "Authorization": f"Bearer {token.get_secret_value()}",
                "Accept": "application/json",
                **(headers or {}),
            }
            if content is not None:
                request_headers["Content-Type"] = "application/json"
            response = await self._send(method, path, content=content, params=params, headers=request_headers)
            if response.status_code == 401 and not renewed_after_401:
                renewed_after_401 = True
                log.info("procountor.token.rejected", method=method, path=path)
                self._token = None
                continue
            if response.status_code >= 400:
                raise _error_from(
                    response,
                    method=method,
                    path=path,
                    retry_after=_retry_after_seconds(response, self._wall_clock()),
                )
            if response.status_code == 204 or not response.content:
                return None
            return loads(response.content)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str],
        form: Mapping[str, str] | None = None,
        repeatable: bool | None = None,
    ) -> httpx.Response:
        """One logical request: throttled, retried on 429, 5xx and connection failures.

        `repeatable` says whether a request that may have reached Procountor can be sent again;
        by default everything but POST.
        """
        url = self._base + path
        if repeatable is None:
            repeatable = method != "POST"
        attempt = 0
        while True:
            attempt += 1
            try:
                queued = self._clock()
                async with self._throttle.slot():
                    self._waited(self._clock() - queued)
                    response = await self._http.request(
                        method, url, content=content, data=form, params=params, headers=headers
                    )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                failure = f"{type(exc).__name__}"
                retry_after = None
            except httpx.TransportError as exc:
                # The request may have reached Procountor; only repeat what is safe to repeat.
                if not repeatable:
                    raise _unavailable(method, path, type(exc).__name__) from None
                failure = f"{type(exc).__name__}"
                retry_after = None
            else:
                status = response.status_code
                if status == 429 and self._metrics is not None:
                    self._metrics.throttled.labels(endpoint=endpoint_of(path)).inc()
                if status not in RETRYABLE_STATUSES or (status != 429 and not repeatable):
                    return response
                failure = str(status)
                retry_after = _retry_after_seconds(response, self._wall_clock())
            if attempt >= self._config.max_attempts:
                if failure.isdigit():
                    return response
                raise _unavailable(method, path, failure)
            delay = self._backoff(attempt, retry_after)
            log.warning(
                "procountor.request.retrying",
                method=method,
                path=path,
                failure=failure,
                attempt=attempt,
                delay_seconds=round(delay, 3),
            )
            if failure == "429":
                self._waited(delay)  # Procountor's own rate limit: waiting out its Retry-After
            await self._sleep(delay)

    def _waited(self, seconds: float) -> None:
        """`procountor_rate_limit_wait_seconds`: a turn of our limiter, or a 429's Retry-After."""
        if self._metrics is not None:
            self._metrics.rate_limit_wait.observe(max(0.0, seconds))

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(
            self._config.backoff_max_seconds,
            self._config.backoff_initial_seconds * 2.0 ** (attempt - 1),
        )
        # Jitter spreads the retries of parallel callers; Retry-After, when given, is a floor.
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._config.backoff_max_seconds))
        return delay

    async def _access_token(self) -> SecretStr:
        token = self._token
        if token is not None and self._clock() < token.renew_at:
            return token.value
        async with self._token_lock:
            token = self._token
            if token is not None and self._clock() < token.renew_at:
                return token.value
            self._token = await self._fetch_token()
            return self._token.value

    async def _fetch_token(self) -> _Token:
        config = self._config
        api_key = await self._api_key() if self._api_key is not None else config.api_key
        form = {
            "grant_type": "client_credentials",
            "client_id": config.client_id,
            "client_secret": config.client_secret.get_secret_value(),
            "api_key": api_key.get_secret_value(),
        }
        if config.redirect_uri:
            form["redirect_uri"] = config.redirect_uri
        requested_at = self._clock()
        # Credentials go in the form body: Procountor refuses them in the URL since 23.09.
        response = await self._send(
            "POST",
            "/oauth/token",
            form=form,
            headers={"Accept": "application/json"},
            repeatable=True,  # a second token does no harm
        )
        if response.status_code >= 400:
            raise _error_from(
                response,
                method="POST",
                path="/oauth/token",
                retry_after=_retry_after_seconds(response, self._wall_clock()),
            )
        body = loads(response.content)
        expires_in = float(body.get("expires_in") or 3600)
        lifetime = max(expires_in - config.token_renewal_margin_seconds, 0.0)
        log.info("procountor.token.fetched", client_id=config.client_id, expires_in=expires_in)
        return _Token(SecretStr(str(body["access_token"])), renew_at=requested_at + lifetime)


def _retry_after_seconds(response: httpx.Response, now_unix: float) -> float | None:
    """`Retry-After` in both of its forms (RFC 9110): delay-seconds or an HTTP-date."""
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - now_unix, 0.0)


def _unavailable(method: str, path: str, failure: str) -> ProcountorUnavailableError:
    return ProcountorUnavailableError(
        0, [ProcountorErrorDetail(0, None, f"no answer ({failure})")], method=method, path=path
    )


def _error_from(
    response: httpx.Response, *, method: str, path: str, retry_after: float | None
) -> ProcountorError:
    status = response.status_code
    details: list[ProcountorErrorDetail] = []
    try:
        body = loads(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        for item in body["errors"]:
            if isinstance(item, dict):
                details.append(
                    ProcountorErrorDetail(
                        status=int(item.get("status") or status),
                        field=item.get("field") if isinstance(item.get("field"), str) else None,
                        message=str(item.get("message") or ""),
                    )
                )
    if not details:
        details.append(ProcountorErrorDetail(status, None, response.reason_phrase or "error"))
    return ProcountorError(status, details, method=method, path=path, retry_after=retry_after)
