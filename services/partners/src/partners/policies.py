"""Who may call each of partners' routes (issue 12); the app is not built while a route has none."""

from __future__ import annotations

from service_runtime.auth import Role, RoutePolicies, allow

ROUTE_POLICIES: RoutePolicies = {
    "GET /firms/{firm_id}": allow(Role.VIEWER, Role.PARTNER_MANAGER),
}
