"""Who may call each of invoicing's routes (issue 12), every context in one table.

Reads are for `viewer` (people get it beside their other roles); each change is for the one role
that owns it. The app is not built while a route has no policy here.
"""

from __future__ import annotations

from service_runtime.auth import Role, RoutePolicies, allow

READ = allow(Role.VIEWER)
OPERATE = allow(Role.BILLING_OPERATOR)
#: Contract commands come from the systems of record (CRM, support tool), which assert the
#: customer's requester (B-25); the audit records both (docs/architecture.md, "Who asked").
CONTRACT_COMMAND = allow(Role.CONTRACT_SYSTEM)

ROUTE_POLICIES: RoutePolicies = {
    # billing
    "POST /billing-runs": OPERATE,
    "POST /billing-runs/scheduled": allow(Role.BILLING_RUN_TRIGGER, Role.BILLING_OPERATOR),
    "POST /billing-runs/dry-run": OPERATE,
    "GET /billing-runs/{period}": READ,
    "GET /invoices": READ,
    "GET /invoices/{invoice_id}": READ,
    "GET /invoices/{invoice_id}/specification": READ,
    "GET /held": READ,
    "GET /payers/{payer_id}/held": READ,
    # receivables
    "POST /invoices/{invoice_id}/credit-notes": OPERATE,
    "GET /credit-notes": READ,
    "GET /credit-notes/{credit_note_id}": READ,
    "GET /refunds": READ,
    "POST /refunds/{refund_id}/paid": OPERATE,
    "POST /invoices/{invoice_id}/due-date": OPERATE,
    "GET /invoices/{invoice_id}/due-date-changes": READ,
    # contracts
    "POST /contracts": CONTRACT_COMMAND,
    "GET /contracts": READ,
    "GET /contracts/{contract_id}": READ,
    "GET /contracts/{contract_id}/history": READ,
    "GET /contracts/{contract_id}/terms/{month}": READ,
    "POST /contracts/{contract_id}/production-date": CONTRACT_COMMAND,
    "POST /contracts/{contract_id}/package-changes": CONTRACT_COMMAND,
    "POST /contracts/{contract_id}/accounting-firm-changes": CONTRACT_COMMAND,
    "POST /contracts/{contract_id}/termination": CONTRACT_COMMAND,
    "POST /contracts/{contract_id}/business-id-changes": CONTRACT_COMMAND,
    "POST /contracts/{contract_id}/tallennus-firm-approvals": CONTRACT_COMMAND,
    "POST /contracts/{contract_id}/billing-contact": CONTRACT_COMMAND,
    "POST /contracts/{contract_id}/company-name": CONTRACT_COMMAND,
    "POST /contracts/{contract_id}/advance-billing": CONTRACT_COMMAND,
    # Bringing every contract up to today is what the scheduler does daily; by hand, an operator.
    "POST /contracts/refresh": OPERATE,
    # prices (B-07); VAT rates are a file of the deployment (INVOICING_VAT_RATES_FILE), no route
    "GET /price-lists": READ,
    "GET /price-lists/{price_list_id}": READ,
    "POST /price-lists": allow(Role.PRICE_ADMINISTRATOR),
}
