"""The framework's modules import each other in one direction only: no import circles (counting
every import statement, in functions and under TYPE_CHECKING too), declarations at the bottom,
and no node pack imported by the framework."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "graphflow"
BOTTOM = {"graphflow.messages", "graphflow.params", "graphflow.samples", "graphflow.tap", "graphflow.files",
          "graphflow.models"}


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the graphflow modules it imports (a module's own parent packages left out: they
    are initialised before it in any case)."""
    files = {module_name(f, package): f for f in package.rglob("*.py")}
    graph = {}
    for name, file in files.items():
        own_package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = own_package.split(".")[: len(own_package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                candidates = [f"{target}.{alias.name}" for alias in node.names]
                candidates = [c for c in candidates if c in files] or [target]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
            imported |= {c for c in candidates if c.startswith("graphflow") and c != name and c not in ancestors}
        graph[name] = imported
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


@pytest.mark.timeout(30)
def test_no_import_circles_in_the_framework():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


@pytest.mark.timeout(30)
def test_the_cycle_finder_finds_a_circle(tmp_path):
    package = tmp_path / "graphflow"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from .b import g\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from graphflow import a\n")
    graph = import_graph(package)
    assert graph["graphflow.a"] == {"graphflow.b"} and graph["graphflow.b"] == {"graphflow.a"}
    assert find_cycle(graph) == ["graphflow.a", "graphflow.b", "graphflow.a"]


@pytest.mark.timeout(30)
def test_declarations_are_the_bottom_layer_and_no_pack_is_imported():
    graph = import_graph()
    for module in BOTTOM:
        assert graph[module] == set(), f"{module} imports {graph[module]}"
    for module, imported in graph.items():
        assert not {i for i in imported if i.startswith("graphflow.packs.")}, f"{module} imports a node pack"
