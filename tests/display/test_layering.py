"""Imports point one way: display imports no other mechscope package, and analysis packages do not import the
report (issue 15 item 3)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "mechscope"


def imported_packages(package: str) -> dict[str, set[str]]:
    """File -> mechscope packages it imports (relative and absolute imports, inside functions too)."""
    out = {}
    for path in (SRC / package).rglob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level >= 2 and node.module:  # from ..pkg import x
                    found.add(node.module.split(".")[0])
                elif node.level >= 2:  # from .. import pkg
                    found.update(a.name.split(".")[0] for a in node.names)
                elif node.level == 0 and (node.module or "").startswith("mechscope."):
                    found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("mechscope."))
        out[str(path.relative_to(SRC))] = found
    return out


# Leaf modules that import nothing from mechscope: every package may use them.
LEAVES = {"files"}


def test_display_imports_no_other_mechscope_package():
    bad = {f: pkgs - LEAVES for f, pkgs in imported_packages("display").items() if pkgs - LEAVES}
    assert not bad, f"display must sit below every package: {bad}"


def test_analysis_packages_do_not_import_report_or_server():
    for package in ("lens", "probes", "interventions", "heads", "activations", "features", "evals", "dictionaries"):
        bad = {f: pkgs & {"report", "server", "cli"} for f, pkgs in imported_packages(package).items()
               if pkgs & {"report", "server", "cli"}}
        assert not bad, f"{package} imports a surface: {bad}"
