"""Who may call each of procountor-sync's routes (issue 12); the app is not built while a route has none."""

from __future__ import annotations

from service_runtime.auth import Role, RoutePolicies, allow

ROUTE_POLICIES: RoutePolicies = {
    "GET /deliveries/{invoice_id}": allow(Role.VIEWER),
}
