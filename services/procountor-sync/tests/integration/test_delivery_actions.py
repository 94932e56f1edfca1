"""Every operator's requeue and cancel of a delivery is audited: who (the token), when, why (issue 12)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from devstack.testing import wait_until

from .conftest import SyncStack, invoice

pytestmark = pytest.mark.integration


async def delivery(stack: SyncStack, delivery_id: str, status: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        response = await stack.http.get(f"/deliveries/{delivery_id}")
        body: dict[str, Any] = response.json()
        return body if response.status_code == 200 and body["status"] == status else None

    return await wait_until(check, within=30, what=f"delivery {delivery_id} {status}")


async def test_each_requeue_and_cancel_is_kept_with_the_callers_subject_the_time_and_the_reason(
    stack: SyncStack,
) -> None:
    refused = invoice(country="QQ")  # no such country in Procountor's list: refused, not retried
    await stack.publisher.publish(refused)
    delivery_id = f"invoice:{refused.invoice_id}"
    await delivery(stack, delivery_id, "refused")
    operator = stack.issuer.user_auth("olli.operator")
    viewer = stack.issuer.user_auth("ville.viewer")

    forbidden = await stack.http.post(f"/deliveries/{delivery_id}/requeue", json={}, auth=viewer)
    requeued = await stack.http.post(
        f"/deliveries/{delivery_id}/requeue",
        # A name typed in the body is not who did it: the token says that.
        json={"reason": "the customer's country is fixed in CRM", "actor": "someone.else"},
        auth=operator,
    )
    await delivery(stack, delivery_id, "refused")  # still QQ: refused again
    cancelled = await stack.http.post(f"/deliveries/{refused.invoice_id}/cancel", auth=operator)  # no reason
    again = await stack.http.post(f"/deliveries/{delivery_id}/cancel", json={"reason": "x"}, auth=operator)
    actions = await stack.http.get(f"/deliveries/{refused.invoice_id}/actions", auth=viewer)
    unknown = await stack.http.get("/deliveries/invoice:INV-NOPE/actions", auth=viewer)
    anonymous = await stack.http.get(f"/deliveries/{delivery_id}/actions", auth=None)

    assert forbidden.status_code == 403
    assert requeued.status_code == 200, requeued.text
    assert cancelled.status_code == 200, cancelled.text
    assert again.status_code == 409  # nothing happened: nothing audited
    assert actions.status_code == 200
    history = actions.json()
    assert [(a["action"], a["actor"], a["reason"], a["status_after"]) for a in history] == [
        ("requeue", "olli.operator", "the customer's country is fixed in CRM", "pending"),
        ("cancel", "olli.operator", None, "cancelled"),
    ]
    assert {a["delivery_id"] for a in history} == {delivery_id}
    times = [dt.datetime.fromisoformat(a["at"]) for a in history]
    assert times == sorted(times)
    assert all(t.tzinfo is not None for t in times)
    assert cancelled.json()["last_error"] == "cancelled by olli.operator"
    assert unknown.status_code == 404
    assert anonymous.status_code == 401
