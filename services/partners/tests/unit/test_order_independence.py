"""P-05: the tier comes from the stored facts, so arrival order and duplicates never change it (hypothesis).

The fold below is what the service does per input, on the domain's functions: an agreement fact is
stored, a contract state is kept unless a later one is stored, an expert fact is checked against
what is known of the person (P-04) and stored. The properties:

1. Kafka keeps order only per key (a firm's partner-program facts, an environment's states), so
   any interleaving of the keys' streams, with any message delivered again, gives every firm the
   same standing, and no input is refused that the publishing order accepted.
2. Facts that do not depend on each other (agreements, contract states, certifications, withdrawals,
   joins) give the same standing in *any* order, even within one key: late and out-of-order inputs.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from billing_contracts.contracts import PackageCode
from billing_contracts.invoicing import ContractStatus
from billing_contracts.partners import ExamKind, ExpertSoftware
from partners.domain import (
    AgreementEvent,
    AgreementFact,
    EnvironmentState,
    ExpertCounts,
    ExpertFact,
    ExpertFactKind,
    ProgramRefusedError,
    Standing,
    check_expert_fact,
    end_customers_by_firm,
    expert_counts_by_firm,
    newest_states,
    standing_of,
)

TODAY = dt.date(2026, 11, 20)
T0 = dt.datetime(2026, 1, 1, 8, tzinfo=dt.UTC)
FIRMS = ("f0", "f1", "f2")
_ids = itertools.count()


@dataclass(frozen=True)
class Input:
    """One message: its idempotency key, its Kafka key, and the fact it carries."""

    event_id: int
    key: str
    fact: Any  # (firm, AgreementFact) | EnvironmentState | ExpertFact


def _input(key: str, fact: Any) -> Input:
    return Input(next(_ids), key, fact)


@dataclass
class Outcome:
    standings: dict[str, Standing]
    refused: list[Input]


def fold(inputs: Sequence[Input]) -> Outcome:
    seen: set[int] = set()
    agreements: dict[str, list[AgreementFact]] = defaultdict(list)
    states: list[EnvironmentState] = []
    people: dict[str, list[ExpertFact]] = defaultdict(list)
    refused = []
    for i in inputs:
        if i.event_id in seen:  # the consumer's claim: an event id applies once
            continue
        seen.add(i.event_id)
        match i.fact:
            case (str() as firm, AgreementFact() as a):
                agreements[firm].append(a)
            case EnvironmentState() as s:
                states.append(s)
            case ExpertFact() as f:
                try:
                    check_expert_fact(f, people[f.expert_id])
                except ProgramRefusedError:
                    refused.append(i)
                    continue
                people[f.expert_id].append(f)
    customers = end_customers_by_firm(newest_states(states))
    experts = expert_counts_by_firm(people, TODAY)
    return Outcome(
        {
            firm: standing_of(
                agreement=agreements[firm],
                experts=experts.get(firm, ExpertCounts()),
                end_customers=customers.get(firm, 0),
                on=TODAY,
            )
            for firm in FIRMS
        },
        refused,
    )


# ---------------------------------------------------------------- a world of facts


days = st.integers(min_value=0, max_value=600).map(lambda n: dt.date(2025, 6, 1) + dt.timedelta(days=n))


@st.composite
def agreements(draw: st.DrawFn, firm: str) -> list[Input]:
    if not draw(st.booleans()) and firm != "f0":
        return []
    signed = draw(days)
    facts = [AgreementFact(AgreementEvent.SIGNED, signed, T0)]
    if draw(st.booleans()):
        ended = signed + dt.timedelta(days=draw(st.integers(1, 400)))
        facts.append(AgreementFact(AgreementEvent.ENDED, ended, T0 + dt.timedelta(hours=1)))
        if draw(st.booleans()):
            again = ended + dt.timedelta(days=draw(st.integers(0, 200)))
            facts.append(AgreementFact(AgreementEvent.SIGNED, again, T0 + dt.timedelta(hours=2)))
    return [_input(firm, (firm, a)) for a in facts]


LIFE = (
    ContractStatus.SIGNED,
    ContractStatus.ACTIVE,
    ContractStatus.TERMINATION_NOTICED,
    ContractStatus.TERMINATED,
)


@st.composite
def environment(draw: st.DrawFn, n: int) -> list[Input]:
    firm = draw(st.sampled_from((*FIRMS, None)))
    package = draw(st.sampled_from(list(PackageCode)))
    own_use = draw(st.booleans()) and draw(st.booleans())
    steps = draw(st.integers(1, 4))
    at = T0 + dt.timedelta(minutes=draw(st.integers(0, 10_000)))
    inputs = []
    for status in LIFE[:steps]:
        if draw(st.booleans()) and draw(st.booleans()):
            firm = draw(st.sampled_from(FIRMS))  # an accounting-firm change (B-29, B-26)
        at += dt.timedelta(minutes=draw(st.integers(1, 10_000)))
        key = f"env-{n}"
        inputs.append(_input(key, EnvironmentState(key, f"c-{n}", firm, status, package, own_use, at)))
    return inputs


@st.composite
def person(draw: st.DrawFn, n: int, *, ordered: bool) -> list[Input]:
    """A person's facts in the order the training platform publishes them (valid in that order)."""
    expert = f"p{n}"
    home = draw(st.sampled_from(FIRMS))
    software = draw(st.sampled_from(list(ExpertSoftware)))
    day = draw(days)
    at = T0
    facts: list[ExpertFact] = []

    def add(kind: ExpertFactKind, firm: str, on: dt.date, **kw: Any) -> None:
        nonlocal at
        at += dt.timedelta(hours=1)
        facts.append(ExpertFact(expert, firm, kind, on, at, **kw))

    if draw(st.booleans()):
        add(ExpertFactKind.JOINED, home, day)
    if draw(st.booleans()):
        add(ExpertFactKind.PASSED, home, day, software=software, exam=ExamKind.CERTIFICATION)
    if draw(st.booleans()):
        day += dt.timedelta(days=draw(st.integers(0, 60)))
        add(ExpertFactKind.PASSED, home, day, software=software, exam=ExamKind.AUTHORIZATION_ONLINE)
        if ordered and draw(st.booleans()):
            day += dt.timedelta(days=draw(st.integers(0, 60)))
            add(ExpertFactKind.PASSED, home, day, software=software, exam=ExamKind.AUTHORIZATION_IN_PERSON)
    if bool(facts) and draw(st.booleans()):
        exam = draw(
            st.sampled_from([f.exam for f in facts if f.exam is not None] or [ExamKind.CERTIFICATION])
        )
        add(
            ExpertFactKind.WITHDRAWN,
            home,
            day + dt.timedelta(days=draw(st.integers(0, 30))),
            software=software,
            exam=exam,
        )
    if draw(st.booleans()):
        moved_on = day + dt.timedelta(days=draw(st.integers(1, 90)))
        other = draw(st.sampled_from([f for f in FIRMS if f != home]))
        add(ExpertFactKind.JOINED, other, moved_on)
        if ordered and draw(st.booleans()):  # at the new firm: after the move is known
            add(ExpertFactKind.PASSED, other, moved_on, software=software, exam=ExamKind.CERTIFICATION)
    elif ordered and bool(facts) and draw(st.booleans()):
        add(ExpertFactKind.LEFT, home, day + dt.timedelta(days=draw(st.integers(1, 90))))
    # Partner-program facts are keyed by firm: each firm's stream keeps its order on Kafka.
    return [_input(f.firm_id, f) for f in facts]


@st.composite
def world(draw: st.DrawFn, *, ordered: bool) -> list[Input]:
    inputs: list[Input] = []
    for firm in FIRMS:
        inputs += draw(agreements(firm))
    for n in range(draw(st.integers(0, 30))):
        inputs += draw(environment(n))
    for n in range(draw(st.integers(0, 8))):
        inputs += draw(person(n, ordered=ordered))
    return inputs


@st.composite
def delivered_by_kafka(draw: st.DrawFn, inputs: list[Input]) -> list[Input]:
    """An interleaving that keeps each key's order, with some messages delivered twice."""
    streams: dict[str, list[Input]] = defaultdict(list)
    for i in inputs:
        streams[i.key].append(i)
    queues = {k: list(v) for k, v in streams.items()}
    out: list[Input] = []
    while queues:
        key = draw(st.sampled_from(sorted(queues)))
        out.append(queues[key].pop(0))
        if not queues[key]:
            del queues[key]
        if out and draw(st.integers(0, 9)) == 0:  # a redelivery after a crash, or a producer retry
            out.append(draw(st.sampled_from(out)))
    return out


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_interleaving_of_the_keys_with_redeliveries_gives_every_firm_the_same_standing(
    data: st.DataObject,
) -> None:
    inputs = data.draw(world(ordered=True))
    published = fold(inputs)
    assert published.refused == []  # the generated world is valid in its publishing order
    delivered = data.draw(delivered_by_kafka(inputs))
    outcome = fold(delivered)
    assert outcome.refused == []
    assert outcome.standings == published.standings


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_facts_that_do_not_depend_on_each_other_give_the_same_standing_in_any_order(
    data: st.DataObject,
) -> None:
    # Without the facts that need an earlier one (an in-person part its online part, a leave or an
    # exam at a new firm the person's arrival there): per-key order guarantees those.
    inputs = data.draw(world(ordered=False))
    shuffled = data.draw(st.permutations(inputs))
    duplicated = shuffled + data.draw(st.lists(st.sampled_from(inputs), max_size=5)) if inputs else shuffled
    expected = fold(inputs)
    outcome = fold(duplicated)
    assert outcome.refused == expected.refused == []
    assert outcome.standings == expected.standings
