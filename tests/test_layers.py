"""The house's layers, read from the code's imports (docs/architecture.md): each folder imports only
the folders below it, and no two modules import each other, directly or round a loop."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("voicefleet", "control_plane", "edge_agent", "models", "firmware_images", "voicefleet_cli")
# What each folder may import from the project (itself included), bottom to top.
ALLOWED = {
    "voicefleet": {"voicefleet"},
    "control_plane": {"voicefleet", "control_plane"},
    "edge_agent": {"voicefleet", "edge_agent"},
    "models": {"voicefleet", "edge_agent", "models"},
    "firmware_images": {"voicefleet", "edge_agent", "firmware_images"},
    "voicefleet_cli": set(PROJECT),
}
# Libraries the edge install does not have (pyproject's [edge] extra): the agent must run without them.
NOT_ON_THE_EDGE = {"torch", "fastapi", "starlette", "sqlmodel", "sqlalchemy", "alembic", "uvicorn", "httpx",
                   "faster_whisper", "ctranslate2"}
CLOUD_ONLY = {"edge_agent.engines.cosyvoice3"}  # the GPU worker's engine: the cloud install brings PyTorch


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return found


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for top in PROJECT for p in (ROOT / top).rglob("*.py")
            if "migrations" not in p.parts}


SOURCES = _sources()
GRAPH = {name: {m for m in _imports(path) if m in SOURCES and m != name} for name, path in SOURCES.items()}


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_a_folder_imports_only_the_folders_below_it(folder: str) -> None:
    wrong = sorted(f"{name} imports {m}" for name, targets in GRAPH.items() if name.split(".")[0] == folder
                   for m in targets if m.split(".")[0] not in ALLOWED[folder])
    assert not wrong, wrong


def test_the_edge_agent_imports_nothing_the_edge_install_lacks() -> None:
    wrong = sorted(f"{name} imports {m}" for name, path in SOURCES.items() if name.startswith("edge_agent")
                   and name not in CLOUD_ONLY for m in _imports(path) if m.split(".")[0] in NOT_ON_THE_EDGE)
    assert not wrong, wrong


def test_no_modules_import_each_other_round_a_loop() -> None:
    """Tarjan's strongly connected components over module imports; a package's __init__ that only
    hands its modules' names on is left out (its modules never import it back for those names)."""
    faces = {name for name, path in SOURCES.items() if path.name == "__init__.py"}
    graph = {n: {m for m in ts if m not in faces} for n, ts in GRAPH.items() if n not in faces}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    loops: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth is bounded by the module count (a few hundred)
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not loops, loops
