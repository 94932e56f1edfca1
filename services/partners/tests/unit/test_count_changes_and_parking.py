"""P-03 counts kept by their changes (B-28 included), and when a parked input is given up on (P-02, P-04)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from billing_contracts.contracts import PackageCode
from billing_contracts.invoicing import ContractStatus
from partners.domain import (
    EnvironmentState,
    count_changes,
    counted_for,
    end_customers_by_firm,
    expired_parking_reason,
    parking_expires_at,
)
from partners.policies import ROUTE_POLICIES
from service_runtime.auth import Role

T0 = dt.datetime(2026, 1, 1, 8, tzinfo=dt.UTC)
ENVIRONMENTS = tuple(f"e{n}" for n in range(6))


def _state(
    n: int, firm: str | None, status: ContractStatus, contract: int, successor: int | None
) -> EnvironmentState:
    return EnvironmentState(
        environment_id=ENVIRONMENTS[n],
        contract_id=f"c{contract}",
        accounting_firm_id=firm,
        status=status,
        package=PackageCode.KEVYT,
        own_use=False,
        changed_at=T0,
        successor_contract_id=f"c{successor}" if successor is not None else None,
    )


_firms = st.sampled_from([None, "f0", "f1"])
_statuses = st.sampled_from([ContractStatus.ACTIVE, ContractStatus.TERMINATED])


@st.composite
def _world(draw: st.DrawFn) -> dict[str, EnvironmentState]:
    """Up to six environments, each with a contract of its own (c<n>, or c<n+10> after a change)
    and maybe a B-28 successor among the others' contracts."""
    states = {}
    for n in range(draw(st.integers(0, len(ENVIRONMENTS)))):
        contract = n + draw(st.sampled_from([0, 10]))
        successor = draw(st.one_of(st.none(), st.sampled_from([k for k in range(20) if k != contract])))
        states[ENVIRONMENTS[n]] = _state(n, draw(_firms), draw(_statuses), contract, successor)
    return states


def _counted(states: dict[str, EnvironmentState], ids: set[str]) -> dict[str, str | None]:
    by_contract = {s.contract_id: s for s in states.values()}
    return {e: counted_for(states[e], by_contract) for e in ids if e in states}


@settings(max_examples=300, deadline=None)
@given(before=_world(), after=_world())
def test_a_count_plus_its_changes_is_the_count_of_the_new_states(
    before: dict[str, EnvironmentState], after: dict[str, EnvironmentState]
) -> None:
    # What the contract intake reads: the environments changed, and those whose successor is a
    # contract of one changed (before or after), before and after the change.
    changed = {e for e in before.keys() | after.keys() if before.get(e) != after.get(e)}
    contracts = {w[e].contract_id for w in (before, after) for e in changed if e in w}
    read = changed | {
        e for w in (before, after) for e, s in w.items() if s.successor_contract_id in contracts
    }
    changes = count_changes(_counted(before, read), _counted(after, read))

    old, new = end_customers_by_firm(before), end_customers_by_firm(after)
    for firm in old.keys() | new.keys() | changes.keys():
        assert old.get(firm, 0) + changes.get(firm, 0) == new.get(firm, 0), firm
    assert all(changes.values()), "only firms whose count changes"


def test_b28_an_old_contract_stops_counting_when_its_successor_counts_for_the_same_firm() -> None:
    old = _state(0, "f0", ContractStatus.ACTIVE, 0, 1)
    new = _state(1, "f0", ContractStatus.ACTIVE, 1, None)
    before = {"e0": counted_for(old, {"c0": old})}
    after = {"e0": counted_for(old, {"c0": old, "c1": new}), "e1": counted_for(new, {"c0": old, "c1": new})}
    assert count_changes(before, after) == {}, "one client before and after: no firm is recomputed"
    gone = _state(1, "f1", ContractStatus.ACTIVE, 1, None)  # the successor serves another firm
    assert count_changes(before, {"e0": "f0", "e1": counted_for(gone, {"c0": old, "c1": gone})}) == {"f1": 1}


def test_a_parked_input_expires_after_its_parking_with_its_rule_and_reason() -> None:
    parked_at = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)
    parking = dt.timedelta(days=14)
    assert parking_expires_at(parked_at, parking) == dt.datetime(2026, 12, 4, 12, tzinfo=dt.UTC)
    reason = expired_parking_reason(
        "P-02", "firm f-1 is not registered in the partner program", parked_at, parking
    )
    assert reason == (
        "P-02: firm f-1 is not registered in the partner program (parked 2026-11-20T12:00:00+00:00; "
        "nothing it needs arrived within 14 days)"
    )


def test_operators_with_the_viewer_role_see_the_parked_inputs() -> None:
    policy = ROUTE_POLICIES["GET /parked-inputs"]
    assert not policy.is_public
    assert policy.roles == frozenset({Role.VIEWER})
