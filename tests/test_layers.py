"""The package reads as the data flows: no import runs back up, and no two modules import each other
(function-level imports count: a cycle hidden in a function is still a cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

from s3d.config import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "s3d"
# a module of the left may not import one of the right (the flow io -> depth -> stereo -> layout -> io; training beside)
NEVER = {
    "s3d.io": ("s3d.depth", "s3d.stereo", "s3d.layout", "s3d.pipeline", "s3d.convert", "s3d.models", "s3d.data", "s3d.app"),
    "s3d.depth": ("s3d.stereo", "s3d.layout", "s3d.pipeline", "s3d.convert", "s3d.app", "s3d.data"),
    "s3d.stereo": ("s3d.pipeline", "s3d.convert", "s3d.app", "s3d.depth", "s3d.data"),
    "s3d.layout": ("s3d.pipeline", "s3d.convert", "s3d.app", "s3d.depth", "s3d.data"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Every s3d module -> the s3d modules it imports anywhere in its body."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def test_no_two_modules_import_each_other_through_any_path():
    graph = imports()

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            for n in graph.get(m, ()):
                if n == goal:
                    return True
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return False

    packages = {m for m in graph if (PACKAGE / Path(*m.split(".")[1:]) / "__init__.py").exists()}
    cycles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if a < b and b not in packages and a not in packages and reaches(b, a))
    assert cycles == []


def test_no_import_runs_back_up_the_flow():
    wrong = sorted(
        f"{m} imports {n}"
        for m, targets in imports().items()
        for layer, banned in NEVER.items()
        if m == layer or m.startswith(layer + ".")
        for n in targets
        if any(n == b or n.startswith(b + ".") for b in banned)
    )
    assert wrong == []
