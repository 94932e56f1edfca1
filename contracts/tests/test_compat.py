"""Consumer compatibility against the released baseline: additive changes pass, breaking ones fail."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from billing_contracts import compat, export
from billing_contracts.contracts import ContractSignedV1
from billing_contracts.invoicing import InvoiceIssuedV1
from billing_contracts.registry import topic_for

CONTRACTS_DIR = Path(__file__).resolve().parents[1]
COMMAND = topic_for(ContractSignedV1)  # published by CRM, consumed by invoicing
EVENT = topic_for(InvoiceIssuedV1)  # published by invoicing, consumed by procountor-sync and partners
DIRECTIONS = compat.topic_directions()

Schema = dict[str, Any]


def schema_of(contract: type[Any], topic: str) -> Schema:
    return export.json_schema(contract, name=topic)


def released() -> dict[str, Schema]:
    return {COMMAND: schema_of(ContractSignedV1, COMMAND), EVENT: schema_of(InvoiceIssuedV1, EVENT)}


def breaking(current: dict[str, Schema]) -> list[str]:
    return [str(p) for p in compat.compare(released(), current, DIRECTIONS)]


def changed(topic: str, edit: Any) -> dict[str, Schema]:
    current = copy.deepcopy(released())
    edit(current[topic])
    return current


def test_the_repository_is_compatible_with_its_released_baseline() -> None:
    assert compat.main(["--check"]) == 0


def test_commands_are_checked_one_way_and_our_events_both_ways() -> None:
    assert DIRECTIONS[COMMAND] == "consumed"
    assert DIRECTIONS[EVENT] == "both"
    assert DIRECTIONS["invoicing.dead-letter.v1"] == "both"


def test_nothing_changed_is_compatible() -> None:
    assert breaking(released()) == []


# --- what other engineers add this stop must pass ------------------------------------------------


def test_a_new_optional_field_keeps_the_version_on_commands_and_events() -> None:
    class ContractSignedWithNote(ContractSignedV1):
        sales_note: str | None = Field(default=None, max_length=200, description="Free text from sales.")

    class InvoiceIssuedWithNote(InvoiceIssuedV1):
        customer_note: str | None = Field(default=None, description="Printed on the invoice.")

    current = {
        COMMAND: schema_of(ContractSignedWithNote, COMMAND),
        EVENT: schema_of(InvoiceIssuedWithNote, EVENT),
    }
    assert breaking(current) == []


def test_a_new_topic_is_compatible() -> None:
    current = released() | {"invoicing.invoice-issued.v2": {"type": "object", "required": ["x"]}}
    assert breaking(current) == []


def test_a_new_enum_value_on_a_command_only_we_consume_is_compatible() -> None:
    def add_package(schema: Schema) -> None:
        schema["$defs"]["PackageCode"]["enum"].append("mega")

    assert breaking(changed(COMMAND, add_package)) == []


def test_a_wider_limit_on_a_command_we_consume_is_compatible() -> None:
    def widen(schema: Schema) -> None:
        schema["properties"]["company_name"]["maxLength"] = 200

    assert breaking(changed(COMMAND, widen)) == []


def test_a_required_field_becoming_optional_on_a_command_is_compatible() -> None:
    def relax(schema: Schema) -> None:
        schema["required"].remove("billing_address")

    assert breaking(changed(COMMAND, relax)) == []


# --- what breaks consumers must fail -------------------------------------------------------------


def test_a_new_required_field_breaks_publishers_of_a_command() -> None:
    class ContractSignedWithCostCentre(ContractSignedV1):
        cost_centre: str = Field(description="Now mandatory.")

    assert breaking(
        {COMMAND: schema_of(ContractSignedWithCostCentre, COMMAND), EVENT: released()[EVENT]}
    ) == [f"{COMMAND}: cost_centre: required now, but could be left out"]


def test_a_removed_field_of_an_event_breaks_its_consumers() -> None:
    def drop(schema: Schema) -> None:
        del schema["properties"]["due_date"]
        schema["required"].remove("due_date")

    assert breaking(changed(EVENT, drop)) == [f"{EVENT}: due_date: required now, but could be left out"]


def test_a_changed_type_breaks() -> None:
    def retype(schema: Schema) -> None:
        schema["properties"]["company_name"] = {"type": "integer", "description": "oops"}

    problems = breaking(changed(COMMAND, retype))
    assert f"{COMMAND}: company_name: type 'string' no longer accepted" in problems


def test_a_narrower_limit_on_a_command_breaks_its_publishers() -> None:
    def narrow(schema: Schema) -> None:
        schema["properties"]["company_name"]["maxLength"] = 40

    assert breaking(changed(COMMAND, narrow)) == [f"{COMMAND}: company_name: maxLength 80 narrowed to 40"]


def test_a_wider_limit_on_an_event_breaks_its_consumers() -> None:
    def widen(schema: Schema) -> None:
        schema["properties"]["payer_name"]["maxLength"] = 500

    assert any("payer_name: maxLength" in p for p in breaking(changed(EVENT, widen)))


def test_a_new_enum_value_on_an_event_breaks_consumers_on_the_release() -> None:
    def add_channel(schema: Schema) -> None:
        schema["$defs"]["BillingChannel"]["enum"].append("carrier-pigeon")

    assert breaking(changed(EVENT, add_channel)) == [
        f"{EVENT}: billing_channel: the value 'carrier-pigeon' is no longer accepted"
    ]


def test_a_removed_enum_value_on_a_command_breaks_its_publishers() -> None:
    def drop_package(schema: Schema) -> None:
        schema["$defs"]["PackageCode"]["enum"].remove("kevyt")

    assert breaking(changed(COMMAND, drop_package)) == [
        f"{COMMAND}: package: the value 'kevyt' is no longer accepted"
    ]


def test_a_changed_pattern_breaks() -> None:
    def repattern(schema: Schema) -> None:
        schema["properties"]["business_id"]["pattern"] = r"^FI\d{8}$"

    assert any("business_id: pattern" in p for p in breaking(changed(COMMAND, repattern)))


def test_a_removed_topic_breaks() -> None:
    assert breaking({COMMAND: released()[COMMAND]}) == [f"{EVENT}: <message>: a released topic was removed"]


def test_the_check_command_fails_on_a_breaking_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = release_tree(tmp_path)
    baseline = json.loads((root / compat.BASELINE).read_text(encoding="utf-8"))
    baseline["schemas"][COMMAND]["properties"]["company_name"]["maxLength"] = 200  # we now accept less
    (root / compat.BASELINE).write_text(json.dumps(baseline), encoding="utf-8")

    assert compat.main(["--check", "--root", str(root)]) == 1
    assert "company_name: maxLength 200 narrowed to 80" in capsys.readouterr().err


# --- releasing -----------------------------------------------------------------------------------


def release_tree(tmp_path: Path) -> Path:
    root = tmp_path / "contracts"
    (root / "released").mkdir(parents=True)
    for name in ("pyproject.toml", "CHANGELOG.md", str(compat.BASELINE)):
        shutil.copy(CONTRACTS_DIR / name, root / name)
    return root


def test_a_release_needs_a_changelog_section_for_its_version(tmp_path: Path) -> None:
    root = release_tree(tmp_path)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text(encoding="utf-8").replace('version = "1.0.0"', 'version = "1.1.0"')
    )
    assert compat.main(["--release", "--root", str(root)]) == 1

    changelog = root / "CHANGELOG.md"
    changelog.write_text(
        changelog.read_text(encoding="utf-8").replace(
            "## Unreleased\n", "## Unreleased\n\n## 1.1.0 — 2027-01-04\n"
        )
    )
    assert compat.main(["--release", "--root", str(root)]) == 0
    version, schemas = compat.load_baseline(root)
    assert version == "1.1.0"
    assert schemas == compat.current_schemas()


def test_the_wheel_is_built_offline_with_its_version_schemas_and_changelog(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    assert uv, "uv is not on PATH (scripts/bootstrap installs it)"
    result = subprocess.run(
        [uv, "build", "--package", "billing-contracts", "--wheel", "--offline", "--out-dir", str(tmp_path)],
        cwd=CONTRACTS_DIR.parent,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("billing_contracts-*.whl")
    assert wheel.name == f"billing_contracts-{compat.package_version()}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "billing_contracts/CHANGELOG.md" in names
    assert "billing_contracts/asyncapi.yaml" in names
    assert f"billing_contracts/schemas/{COMMAND}.json" in names
    assert "billing_contracts/registry.py" in names
