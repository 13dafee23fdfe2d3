"""The package's import structure: no module imports another that (directly or not) imports it back, and the
schedule, the estimators and the writers never depend on the training module."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "labelscrub"
# Pure stages: numbers in, numbers or files out, testable without a model.
PURE = ["schedule", "ranking", "suggest", "noise", "confusion", "measurement", "report", "manifest", "summary"]


def imports() -> dict[str, set[str]]:
    """Each labelscrub module's labelscrub imports, type-only ones included (a TYPE_CHECKING block is ast too)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("labelscrub", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("labelscrub"):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names if alias.name.startswith("labelscrub"))
        graph[name] = found
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, stack = set(), list(graph[start])
    while stack:
        module = stack.pop()
        if module in graph and module not in seen:
            seen.add(module)
            stack.extend(graph[module])
    return seen


def test_no_module_imports_itself_through_others():
    graph = imports()
    cycles = sorted(module for module in graph if module in reachable(graph, module))
    assert cycles == []


@pytest.mark.parametrize("module", PURE)
def test_pure_stages_never_reach_the_training_module(module):
    assert "labelscrub.train" not in reachable(imports(), f"labelscrub.{module}")
