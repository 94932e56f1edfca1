"""Who may call each of metering's routes (issue 12); the app is not built while a route has none."""

from __future__ import annotations

from service_runtime.auth import Role, RoutePolicies, allow

ROUTE_POLICIES: RoutePolicies = {
    # Reads: people with viewer, and invoicing's service account for specifications (B-19).
    "GET /environments/{environment_id}/usage/{month}": allow(Role.VIEWER, Role.USAGE_READER),
    "GET /environments/{environment_id}/usage/{month}/items/{kind}": allow(Role.VIEWER, Role.USAGE_READER),
    # Closing a month by hand (the scheduler closes it by itself): it starts the billing.
    "POST /months/{month}/close": allow(Role.BILLING_OPERATOR),
}
