"""Rules carried by the contract commands themselves (B-29)."""

import json

import pytest
from pydantic import ValidationError

from billing_contracts.contracts import ApprovingFirm, TallennusFirmChangeApprovedV1
from billing_contracts.examples import example_of


def test_the_new_firms_tallennus_approval_must_name_the_package_it_wants() -> None:
    wire = json.loads(example_of(TallennusFirmChangeApprovedV1).model_dump_json())
    with pytest.raises(ValidationError, match="B-29"):
        TallennusFirmChangeApprovedV1.model_validate_json(json.dumps(wire | {"new_package": None}))


def test_the_old_firms_tallennus_approval_needs_no_package() -> None:
    wire = json.loads(example_of(TallennusFirmChangeApprovedV1).model_dump_json())
    approval = TallennusFirmChangeApprovedV1.model_validate_json(
        json.dumps(wire | {"approving_firm": "old", "new_package": None})
    )
    assert approval.approving_firm is ApprovingFirm.OLD
