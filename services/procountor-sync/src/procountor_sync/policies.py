"""Who may call each of procountor-sync's routes (issue 12); the app is not built while a route has none."""

from __future__ import annotations

from service_runtime.auth import Role, RoutePolicies, allow, public

READ = allow(Role.VIEWER)
OPERATE = allow(Role.BILLING_OPERATOR)

ROUTE_POLICIES: RoutePolicies = {
    "GET /deliveries": READ,
    "GET /deliveries/summary": READ,
    "GET /deliveries/{delivery_id}": READ,
    "GET /deliveries/{delivery_id}/actions": READ,
    "POST /deliveries/{delivery_id}/requeue": OPERATE,
    "POST /deliveries/{delivery_id}/cancel": OPERATE,
    "GET /mismatches": READ,
    "GET /overdue": READ,
    "POST /webhooks/procountor": public(
        "Procountor calls it with no token of our issuer; each request is verified by its HMAC "
        "signature, its timestamp window and its id (replays refused)"
    ),
    "GET /transfer-files/invoices": READ,
    "GET /transfer-files/payroll": READ,
    # I-06: an operator starts the key login (the API key it stores is used for every delivery).
    "GET /procountor/key-login": OPERATE,
    "GET /procountor/connection": READ,
    "GET /procountor/key-login/callback": public(
        "Procountor's key-login page redirects the operator's browser here, which carries no bearer "
        "token; the single-use `state` issued to the authenticated operator who started the login "
        "binds it to them, and the stored key is attributed to that operator"
    ),
}
