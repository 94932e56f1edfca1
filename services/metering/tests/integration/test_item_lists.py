"""The items behind every figure can be listed, page by page (B-19 specification)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from billing_contracts.usage import (
    DocumentKind,
    EInvoiceSentV1,
    InvoiceChannel,
    PayCalculatedV1,
    UserRole,
    UserRolesChangedV1,
    VoucherCreatedV1,
    VoucherVoidedV1,
)
from devstack.testing import wait_until
from metering.domain import HELSINKI

from ..conftest import Metering

pytestmark = pytest.mark.integration

AT = datetime(2026, 9, 7, 10, 0, tzinfo=HELSINKI)


def envelope() -> dict[str, Any]:
    return {"event_id": uuid.uuid4(), "occurred_at": AT, "producer": "test"}


async def all_pages(metering: Metering, env: str, kind: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        response = await metering.http.get(f"/environments/{env}/usage/2026-09/items/{kind}", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= limit
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


async def test_every_voucher_payee_message_and_user_behind_the_figures_is_listed(metering: Metering) -> None:
    env = f"env-{uuid.uuid4().hex[:8]}"
    vouchers = [
        VoucherCreatedV1(
            **envelope(),
            environment_id=env,
            voucher_id=f"V{n:02d}",
            document_kind=DocumentKind.MEMO_VOUCHER,
            created_at=AT + timedelta(minutes=n),
        )
        for n in range(7)
    ]
    await metering.publisher.publish(
        *vouchers,
        VoucherCreatedV1(
            **envelope(),
            environment_id=env,
            voucher_id="X-bank",
            document_kind=DocumentKind.BANK_STATEMENT,
            created_at=AT,
        ),
        VoucherVoidedV1(**envelope(), environment_id=env, voucher_id="V03", voided_at=AT + timedelta(days=1)),
        PayCalculatedV1(**envelope(), environment_id=env, payslip_id="PS1", person_id="p1", calculated_at=AT),
        PayCalculatedV1(
            **envelope(),
            environment_id=env,
            payslip_id="PS2",
            person_id="p1",
            calculated_at=AT + timedelta(days=2),
        ),
        EInvoiceSentV1(
            **envelope(), environment_id=env, voucher_id="S1", channel=InvoiceChannel.OPERATOR, sent_at=AT
        ),
        EInvoiceSentV1(
            **envelope(), environment_id=env, voucher_id="S2", channel=InvoiceChannel.EMAIL, sent_at=AT
        ),
        UserRolesChangedV1(
            **envelope(), environment_id=env, user_id="u1", roles=[UserRole.ACCOUNTANT], changed_at=AT
        ),
        UserRolesChangedV1(
            **envelope(), environment_id=env, user_id="u2", roles=[UserRole.STAFF_ENTRY], changed_at=AT
        ),
        UserRolesChangedV1(
            **envelope(), environment_id=env, user_id="u3", roles=[UserRole.MAIN_USER], changed_at=AT
        ),
        UserRolesChangedV1(
            **envelope(), environment_id=env, user_id="u3", roles=[], changed_at=AT + timedelta(days=3)
        ),
    )

    async def all_in() -> bool:
        usage = (await metering.usage(env, "2026-09"))["usage"]
        assert isinstance(usage, dict)
        return bool(usage["vouchers"] == 8 and usage["billable_users"] == 1 and usage["einvoices_sent"] == 1)

    await wait_until(all_in, what="the month's usage applied")

    listed = await all_pages(metering, env, "vouchers", limit=3)
    assert [v["voucher_id"] for v in listed] == ["S1", "S2", *(f"V{n:02d}" for n in range(7)), "X-bank"]
    counted = {v["voucher_id"] for v in listed if v["counted"]}
    assert counted == {"S1", "S2", "V00", "V01", "V02", "V04", "V05", "V06"}  # B-10 bank statement, B-11 void

    payees = await all_pages(metering, env, "payees", limit=10)
    assert [(p["person_id"], p["first_payslip_id"]) for p in payees] == [("p1", "PS1")]  # B-12

    messages = await all_pages(metering, env, "messages", limit=1)
    assert [(m["voucher_id"], m["channel"], m["charged"]) for m in messages] == [
        ("S1", "operator", True),
        ("S2", "email", False),
    ]

    users = await all_pages(metering, env, "users", limit=10)
    assert [(u["user_id"], u["roles_at_month_end"], u["billable"]) for u in users] == [
        ("u1", ["accountant"], True),
        ("u2", ["staff_entry"], False),
    ]


async def test_a_bad_cursor_is_refused_with_the_reason(metering: Metering) -> None:
    response = await metering.http.get(
        "/environments/e/usage/2026-09/items/vouchers", params={"cursor": "%%%"}
    )
    assert response.status_code == 400
    assert "cursor" in response.json()["detail"]
