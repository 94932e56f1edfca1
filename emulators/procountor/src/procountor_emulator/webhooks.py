"""Webhook subscriptions and pushes, signed with HMAC-SHA256 (the scheme is the emulator's decision, README)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import uuid
from typing import TYPE_CHECKING, Any

import httpx

from procountor_emulator import rules
from procountor_emulator.config import HELSINKI
from procountor_emulator.wire import FieldError, JsonObject, dumps

if TYPE_CHECKING:
    from procountor_emulator.state import EmulatorState

log = logging.getLogger("procountor_emulator.webhooks")

EVENT_TYPES = frozenset(
    {
        "DIRECTBANKDATATRANSFER_PAYMENT_CREATED",
        "DIRECT_SALARY_PAYMENTS_CANCELED",
        "DIRECT_SALARY_PAYMENTS_CREATED",
        "INVOICE_PAYMENTEVENTS_DELETED",
        "INVOICE_PAYMENT_CREATED",
        "PAYMENT_DELETED",
        "PAYMENT_UPDATED",
        "TRACKING_PERIOD_STATUS_UPDATED",
        "USER_UPDATED",
    }
)
TIMESTAMP_HEADER = "X-Procountor-Timestamp"
SIGNATURE_HEADER = "X-Procountor-Signature"
MIN_SECRET_LENGTH = 16

# Pushes still running: referenced so that the event loop does not drop them.
_RUNNING: set[asyncio.Task[None]] = set()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=` + hex HMAC-SHA256 over `"<timestamp>.<raw body>"` with the subscription's secret."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def validate(body: JsonObject) -> list[FieldError]:
    """`{url, authenticationType: HMAC|NONE, authenticationMeta: {secret}, subscriptions: [...]}`."""
    check = rules.Checker()
    check.unknown(body, {"uuid", "url", "authenticationType", "authenticationMeta", "subscriptions"})
    url = check.text(body, "url", "url", required=True, max_length=2000)
    if url is not None and not url.startswith(("http://", "https://")):
        check.add(rules.invalid("url", "expected an http(s) URL"))
    kind = check.enum(body, "authenticationType", "authenticationType", {"HMAC", "NONE"}, required=True)
    meta = check.obj(body, "authenticationMeta", "authenticationMeta", required=kind == "HMAC")
    if kind == "HMAC" and meta is not None:
        secret = meta.get("secret")
        if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
            check.add(rules.invalid("authenticationMeta.secret", f"at least {MIN_SECRET_LENGTH} characters"))
    subscriptions = body.get("subscriptions")
    if not isinstance(subscriptions, list) or not subscriptions:
        check.add(FieldError("subscriptions", "At least one subscription is required."))
    else:
        for n, event in enumerate(subscriptions):
            if event not in EVENT_TYPES:
                check.add(rules.invalid(f"subscriptions[{n}]", f"unknown event type {event!r}"))
    return check.errors


def stored(body: JsonObject, uid: str | None = None) -> JsonObject:
    return {
        "uuid": uid or str(uuid.uuid4()),
        "url": body["url"],
        "authenticationType": body["authenticationType"],
        "authenticationMeta": dict(body.get("authenticationMeta") or {}),
        "subscriptions": list(body["subscriptions"]),
    }


def push(state: EmulatorState, event_type: str, payload: JsonObject) -> None:
    """Send `{eventType, webhookUuid, payload, meta: {version, timestamp}}` to every subscriber, in the background."""
    for hook in list(state.webhooks.values()):
        if event_type not in hook["subscriptions"]:
            continue
        at = state.now()
        body = dumps(
            {
                "eventType": event_type,
                "webhookUuid": hook["uuid"],
                "payload": payload,
                "meta": {"version": "1", "timestamp": at.isoformat(timespec="seconds")},
            }
        ).encode()
        delivery: JsonObject = {
            "eventType": event_type,
            "webhookUuid": hook["uuid"],
            "url": hook["url"],
            "body": body.decode(),
            "statuses": [],
        }
        state.webhook_deliveries.append(delivery)
        _start(state, hook, delivery, _unix(at))


def redeliver(state: EmulatorState, delivery: JsonObject, *, same_signature: bool) -> None:
    hook = state.webhooks.get(delivery["webhookUuid"])
    if hook is None:
        return
    again = {**delivery, "statuses": [], "redelivery": True}
    state.webhook_deliveries.append(again)
    timestamp = delivery.get("timestamp") if same_signature else None
    _start(state, hook, again, timestamp or _unix(state.now()))


def _unix(at: Any) -> str:
    """Unix seconds with milliseconds: two pushes of one event never share a timestamp."""
    return f"{at.replace(tzinfo=HELSINKI).timestamp():.3f}"


def _start(state: EmulatorState, hook: JsonObject, delivery: JsonObject, timestamp: str) -> None:
    delivery["timestamp"] = timestamp
    task = asyncio.get_running_loop().create_task(_send(state, hook, delivery, timestamp))
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)


async def _send(state: EmulatorState, hook: JsonObject, delivery: JsonObject, timestamp: str) -> None:
    body = delivery["body"].encode()
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp}
    if hook["authenticationType"] == "HMAC":
        headers[SIGNATURE_HEADER] = signature(hook["authenticationMeta"]["secret"], timestamp, body)
    async with httpx.AsyncClient(timeout=10) as http:
        for attempt in range(state.config.webhook_attempts):
            try:
                response = await http.post(hook["url"], content=body, headers=headers)
                delivery["statuses"].append(response.status_code)
                if response.status_code < 500:
                    return
            except httpx.HTTPError as exc:
                delivery["statuses"].append(type(exc).__name__)
            if attempt + 1 < state.config.webhook_attempts:
                await asyncio.sleep(1.0)
    log.warning("webhook push gave up event=%s url=%s", delivery["eventType"], hook["url"])
