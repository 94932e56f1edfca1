"""Who may call each of partners' routes (issue 12); the app is not built while a route has none."""

from __future__ import annotations

from service_runtime.auth import Role, RoutePolicies, allow, public

READ = allow(Role.VIEWER)
#: The partner program's inputs and the statements made by hand are the partner managers'.
MANAGE = allow(Role.PARTNER_MANAGER)

ROUTE_POLICIES: RoutePolicies = {
    "POST /firms": MANAGE,
    "POST /firms/{firm_id}/agreement-end": MANAGE,
    "PUT /firms/{firm_id}/details": MANAGE,
    "POST /firms/{firm_id}/experts/{expert_id}/exam-results": MANAGE,
    "POST /firms/{firm_id}/experts/{expert_id}/withdrawals": MANAGE,
    "POST /firms/{firm_id}/experts/{expert_id}/joined": MANAGE,
    "POST /firms/{firm_id}/experts/{expert_id}/left": MANAGE,
    "GET /firms/{firm_id}": READ,
    "GET /firms/{firm_id}/tiers": READ,
    "GET /firms/{firm_id}/tiers/{month}": READ,
    "GET /firms/{firm_id}/benefits": READ,
    "GET /benefits": READ,
    "GET /commission-statements": READ,
    "GET /commission-statements/{statement_id}": READ,
    "GET /commission-statements/{statement_id}/csv": READ,
    "GET /commission-months/{month}": READ,
    "POST /commission-months/{month}/issue": MANAGE,
    # Operators see what waits before it becomes a dead letter (read only, like the dead letters' list).
    "GET /parked-inputs": READ,
    # P-09: the directory is for the public (customers looking for an accounting firm).
    "GET /directory": public(
        "P-09: the public accounting-firm directory, public fields of Silver and up only"
    ),
}
