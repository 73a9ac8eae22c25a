"""The core's import graph: floors with no cycle, imports pointing down, no built-in plugin imported.

Every import in ``dynlearn/`` is read (function-level ones too, docstrings excluded) and mapped to the module it
names; the graph must be acyclic, each module may import only modules on its own floor or below (the floors
are those of docs/architecture.md), and the core never imports ``dynlearn_builtins`` or ``dynlearn_datasets``
(built-ins are plugins: they come through entry points).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

CORE = Path(__file__).resolve().parents[1] / "dynlearn"

#: floor of every core module, bottom first (docs/architecture.md, "Layers")
FLOORS = [
    {"errors", "_version", "progress", "threads", "params", "outcome", "safety", "provenance", "periodic"},
    {"stepper", "system", "task", "sweep", "analyzer", "optim", "schedule", "matching", "epochs", "module",
     "torch_cells"},
    {"simulate", "lyapunov", "integrity", "store", "layout", "repair", "summary", "reproduce",
     "recorder"},
    {"registry", "plugins"},
    {"config", "train"},
    {"api", "distributed", "testing"},
    {"views", "page", "page_frames", "page_ranges", "page_sliders", "page_sweep", "cli", "__init__"},
]


def _floor(module: str) -> int:
    for i, names in enumerate(FLOORS):
        if module in names:
            return i
    raise AssertionError(f"dynlearn/{module}.py has no floor: add it to FLOORS and docs/architecture.md")


def _imports(path: Path) -> list[tuple[str, int]]:
    """``(imported core module, line)`` for every import in ``path`` (``__init__`` for the package itself)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 or (node.level == 0 and node.module and node.module.split(".")[0] == "dynlearn"):
                base = node.module if node.level == 1 else ".".join(node.module.split(".")[1:])
                if base:
                    out.append((base.split(".")[0], node.lineno))
                else:  # from . import a, b   /   from dynlearn import x
                    for alias in node.names:
                        name = alias.name
                        out.append((name if (CORE / f"{name}.py").exists() else "__init__", node.lineno))
            elif node.level == 0 and node.module and node.module.split(".")[0] in ("dynlearn_builtins",
                                                                                      "dynlearn_datasets"):
                out.append(("!" + node.module, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")
                if top[0] == "dynlearn":
                    out.append((top[1] if len(top) > 1 else "__init__", node.lineno))
                elif top[0] in ("dynlearn_builtins", "dynlearn_datasets"):
                    out.append(("!" + alias.name, node.lineno))
    return out


def _graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for path in sorted(CORE.glob("*.py")):
        g.add_node(path.stem)
        for target, line in _imports(path):
            g.add_edge(path.stem, target, line=line)
    return g


def test_the_core_never_imports_a_builtin_plugin():
    bad = [f"dynlearn/{a}.py:{d['line']} imports {b[1:]}" for a, b, d in _graph().edges(data=True) if b.startswith("!")]
    assert not bad, bad


def test_the_core_import_graph_has_no_cycle():
    g = _graph()
    g.remove_nodes_from([n for n in list(g) if n.startswith("!")])
    cycles = list(nx.simple_cycles(g))
    assert not cycles, [" -> ".join([*c, c[0]]) for c in cycles[:10]]


@pytest.mark.parametrize("module", sorted(p.stem for p in CORE.glob("*.py")))
def test_imports_point_down(module):
    up = []
    for target, line in _imports(CORE / f"{module}.py"):
        if target.startswith("!") or target == module:
            continue
        if _floor(target) > _floor(module):
            up.append(f"dynlearn/{module}.py:{line} imports {target} (floor {_floor(target)} > {_floor(module)})")
    assert not up, up
