"""Imports point one way (issue 15 item 3, docs: DESIGN "Imports flow one way").

Every ``import`` of every module under ``src/mechscope`` is read from its source (module level and inside functions,
so lazy imports count; imports under ``if TYPE_CHECKING:`` are left out, since they never run). The tests fail on
- an import cycle between packages, lazy imports included;
- an import against the layering: a package may import only packages of a lower layer (or its own), lazy imports
  included;
- an import cycle between modules at import time (module-level imports). Lazy imports inside one package may loop
  (the dictionary registry imports each architecture, which registers itself); dictionaries.base and io
  may not (io imports base, and base reaches io.save through ``set_saver``).

Imports of the root package ``mechscope`` (``from .. import __version__``) are left out: Python initialises the
root before any of its modules anyway.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "mechscope"

# Lowest first. A package (or top-level module) may import those of lower layers only. The leaves import nothing
# from mechscope. ``mechscope`` itself (the package ``__init__``, the public API) sits above everything but the surfaces.
LAYERS: list[set[str]] = [
    {"files", "validation", "model_files", "metrics"},
    {"display"},
    {"models"},
    {"data"},
    {"activations"},
    {"dictionaries", "interventions"},
    {"lens", "probes", "heads"},
    {"training", "evals", "toy"},
    {"features", "circuits", "sets"},
    {"mechscope"},
    {"report"},
    {"server"},
    {"cli"},
]
LAYER = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _runtime_imports(tree: ast.AST, lazy: bool = True) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if not lazy and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.If) and _is_type_checking(child):
                for orelse in child.orelse:
                    visit(orelse)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> mechscope modules it imports (``from pkg import name`` counts as importing ``pkg.name`` when that
    is a module, else ``pkg``)."""
    return _graph(_runtime_imports)


def import_time_graph() -> dict[str, set[str]]:
    """Like :func:`import_graph`, with only the imports run when the module is imported (not inside functions)."""
    return _graph(lambda tree: _runtime_imports(tree, lazy=False))


def _graph(imports) -> dict[str, set[str]]:
    paths = {module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in paths.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        targets: set[str] = set()
        for node in imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.split(".")[0] == "mechscope")
                continue
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            if stem.split(".")[0] != "mechscope":
                continue
            for a in node.names:
                sub = f"{stem}.{a.name}"
                targets.add(sub if sub in paths else stem)
        graph[mod] = {t for t in targets if t not in (mod, "mechscope")}
    return graph


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "mechscope"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    pkgs: dict[str, set[str]] = {}
    for mod, targets in graph.items():
        src = package_of(mod)
        pkgs.setdefault(src, set()).update(package_of(t) for t in targets if package_of(t) != src)
    return pkgs


def test_every_package_has_a_layer():
    missing = set(_package_graph(import_graph())) - set(LAYER)
    assert not missing, f"place these in LAYERS: {sorted(missing)}"


def _without_parents(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    # A package __init__ re-exports its modules, so module -> own parent package edges are left out (a module's
    # parent package is initialised before it anyway).
    return {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}


def test_no_module_import_cycle_at_import_time():
    found = cycles(_without_parents(import_time_graph()))
    assert not found, f"import cycles between modules: {found}"


def test_no_lazy_cycle_between_dictionary_base_and_io():
    """io imports base; Dictionary.save reaches io.save through base.set_saver, not a lazy import."""
    graph = import_graph()
    base, io = "mechscope.dictionaries.base", "mechscope.dictionaries.io"
    assert not (io in graph[base] and base in graph[io])


def test_no_package_import_cycle():
    found = cycles(_package_graph(import_graph()))
    assert not found, f"import cycles between packages: {found}"


def test_imports_point_down_the_layers():
    bad = []
    for mod, targets in import_graph().items():
        src = package_of(mod)
        for t in targets:
            dst = package_of(t)
            if dst != src and LAYER[dst] >= LAYER[src]:
                bad.append(f"{mod} imports {t}")
    assert not bad, "imports against the layering (lowest first: " + " < ".join(
        "/".join(sorted(layer)) for layer in LAYERS) + "):\n" + "\n".join(sorted(bad))


def test_the_checker_sees_lazy_imports_and_cycles():
    """The checker itself: a lazy import inside a function is an edge, a TYPE_CHECKING one is not, and a cycle is
    found."""
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n"
                     "def f():\n    from .b import y\n")
    names = [n.module for n in _runtime_imports(tree)]
    assert names == ["typing", "b"]
    assert [n.module for n in _runtime_imports(tree, lazy=False)] == ["typing"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
