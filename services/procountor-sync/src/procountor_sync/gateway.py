"""The Procountor gateway backed by the REST client."""

from __future__ import annotations

from typing import Any

from procountor_sync.procountor_client import ProcountorClient, ProcountorError, deliver_invoice
from procountor_sync.service import DeliveryRefusedError


class RestProcountorGateway:
    """`ProcountorGateway` over Procountor's REST API; 4xx answers are final refusals."""

    def __init__(self, client: ProcountorClient) -> None:
        self._client = client

    async def find_customer(self, business_id: str) -> int | None:
        found = await self._client.find_business_partner_by_identifier(business_id)
        return int(found["id"]) if found else None

    async def create_customer(self, body: dict[str, Any]) -> int:
        try:
            created = await self._client.create_business_partner(body)
        except ProcountorError as exc:
            raise _refusal(exc) from exc
        return int(created["id"])

    async def deliver_invoice(self, body: dict[str, Any]) -> tuple[int, str]:
        try:
            invoice = await deliver_invoice(self._client, body)
        except ProcountorError as exc:
            raise _refusal(exc) from exc
        return int(invoice["id"]), str(invoice["status"])


def _refusal(exc: ProcountorError) -> Exception:
    status = getattr(exc, "status", 0)
    if isinstance(status, int) and 400 <= status < 500 and status not in (401, 408, 429):
        return DeliveryRefusedError(str(exc))
    return exc
