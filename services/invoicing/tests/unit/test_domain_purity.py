"""The invoicing domain modules import no I/O, framework or settings library."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src" / "invoicing"
DOMAIN_MODULES = ["calendar", "references", "money", "pricing", "billing", "price_list_loader"]
# billing_contracts: the wire vocabulary (enums such as PackageCode), itself free of I/O.
THIRD_PARTY_ALLOWED = {"holidays", "stdnum", "billing_contracts"}


def _imported_roots(module: str) -> set[str]:
    tree = ast.parse((SRC / f"{module}.py").read_text(encoding="utf-8"))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", DOMAIN_MODULES)
def test_domain_modules_import_only_stdlib_holidays_stdnum_and_each_other(module: str) -> None:
    allowed = set(sys.stdlib_module_names) | THIRD_PARTY_ALLOWED | {"invoicing", "__future__"}
    if module == "price_list_loader":
        allowed.add("yaml")
    assert _imported_roots(module) - allowed == set()
    assert "asyncio" not in _imported_roots(module)
    assert "logging" not in _imported_roots(module)
