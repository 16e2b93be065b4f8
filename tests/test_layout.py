"""The layout holds: no import cycle in ``sing_synth`` and ``train``, no module over 400 lines.

The imports are read with ``ast`` from the source (nothing is imported): those at module level
and those inside functions (lazy imports count: a cycle through one is still a cycle), absolute
and relative. ``from . import x`` is an edge to the submodule ``x`` where there is one, else to
the package. Cycles are the strongly connected components of the graph (Tarjan).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sing_synth", "train")
MAX_LINES = 400
SIZED = ("sing_synth", "train", "bench", "tests")  # the folders whose modules are held to MAX_LINES


def modules(root: Path, packages) -> dict[str, Path]:
    """Every module of ``packages`` under ``root``: dotted name -> file (a package is its ``__init__``)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def import_graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports, anywhere in its source."""
    known = modules(root, packages)
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]  # the package of relative imports
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(here.split(".")[: len(here.split(".")) - (node.level - 1)])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
            for target in targets:
                while target and target not in known:  # ``import a.b.c`` of a name inside a module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
                elif target == name:
                    graph[name].add(name)  # a module importing itself: a cycle of one
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: strongly connected components of more than one module, or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:  # Tarjan's algorithm (the graph is small: recursion is fine)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def oversized(root: Path, folders=SIZED, most: int = MAX_LINES) -> dict[str, int]:
    """The modules under ``folders`` longer than ``most`` lines: path -> lines."""
    sizes = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            lines = len(path.read_text().splitlines())
            if lines > most:
                sizes[str(path.relative_to(root))] = lines
    return sizes


def test_no_import_cycle():
    graph = import_graph(ROOT)
    assert len(graph) > 50 and sum(map(len, graph.values())) > 100  # the packages were read
    found = cycles(graph)
    assert not found, f"import cycles: {found}"


def test_no_module_over_400_lines():
    found = oversized(ROOT)
    assert not found, f"modules over {MAX_LINES} lines: {found}; split them along a seam"


def test_the_checks_find_a_planted_cycle_and_a_long_module(tmp_path):
    """A cycle through a lazy import (a -> b at module level, b -> a inside a function), a relative
    import of a name, and a module of 401 lines: each is found."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("import os\n\n\ndef f():\n    from .sub.c import g\n    return g\n")
    (pkg / "sub" / "c.py").write_text("from ..a import something\n\n\ndef g():\n    pass\n")
    (pkg / "d.py").write_text("import pkg.a\n" + "x = 1\n" * 400)
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.sub.c"} and graph["pkg.sub.c"] == {"pkg.a"}
    assert graph["pkg.d"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    (pkg / "sub" / "c.py").write_text("import os\n")  # the cycle broken
    assert cycles(import_graph(tmp_path, ["pkg"])) == []
    (pkg / "e.py").write_text("from . import e\n")  # a module importing itself
    assert cycles(import_graph(tmp_path, ["pkg"])) == [["pkg.e"]]
    assert oversized(tmp_path, ["pkg"]) == {"pkg/d.py": 401}
