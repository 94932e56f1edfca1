"""The invoicing domain modules import no I/O, framework or settings library.

Every context's `domain.py` is found by walking the package, so a new context is checked without
editing this list; the shared pure modules are named.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src" / "invoicing"
# Pure modules beside the domain modules: shared ones, the price and VAT data loaders, billing's rules.
SHARED_PURE = [
    "calendar",
    "references",
    "money",
    "prices/loader",
    "prices/vat",
    "contracts/contract",
    "billing/charges",
    "billing/invoice",
    "billing/run",
]
DOMAIN_MODULES = (
    sorted(str(p.relative_to(SRC).with_suffix("")) for p in SRC.glob("*/domain.py")) + SHARED_PURE
)
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


def test_every_context_has_a_domain_module() -> None:
    assert {m.split("/")[0] for m in DOMAIN_MODULES if m.endswith("/domain")} >= {
        "prices",
        "contracts",
        "billing",
        "receivables",
    }


@pytest.mark.parametrize("module", DOMAIN_MODULES)
def test_domain_modules_import_only_stdlib_holidays_stdnum_and_each_other(module: str) -> None:
    allowed = set(sys.stdlib_module_names) | THIRD_PARTY_ALLOWED | {"invoicing", "__future__"}
    if module.startswith("prices/"):
        allowed.add("yaml")  # the price book and VAT rate loaders parse YAML text, they read no file
    assert _imported_roots(module) - allowed == set()
    assert "asyncio" not in _imported_roots(module)
    assert "logging" not in _imported_roots(module)
