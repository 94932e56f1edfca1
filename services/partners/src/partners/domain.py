"""Pure partner-program rules (SPEC P-01…P-09)."""

from __future__ import annotations

from billing_contracts.invoicing import ContractStatus

#: P-03: environments in production and not terminated count as end customers.
ACTIVE_STATUSES: frozenset[ContractStatus] = frozenset(
    {ContractStatus.ACTIVE, ContractStatus.TERMINATION_NOTICED}
)


def is_end_customer(status: ContractStatus, accounting_firm_id: str | None, own_use: bool) -> bool:
    """P-03: an active environment served by the firm; the firm's own bookkeeping is not an end customer."""
    return accounting_firm_id is not None and status in ACTIVE_STATUSES and not own_use
