"""The package's layers import one way: physics <- io/data <- models <- tasks <- engine <- cli.

config (plain dataclasses) is importable from models upwards.

metrics and simulate may use physics and io only. Parsed from the source, so it cannot be fooled by
lazy imports at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "hetacumn"

# For each layer, the layers it must not import.
FORBIDDEN = {
    "physics": {"io", "data", "config", "simulate", "metrics", "models", "tasks", "engine", "analysis", "cli"},
    "config": {"physics", "io", "data", "simulate", "metrics", "models", "tasks", "engine", "analysis", "cli"},
    "io": {"data", "simulate", "metrics", "models", "tasks", "engine", "analysis", "cli"},
    "data": {"simulate", "metrics", "models", "tasks", "engine", "analysis", "cli"},
    "metrics": {"data", "simulate", "models", "tasks", "engine", "analysis", "cli"},
    "simulate": {"data", "metrics", "models", "tasks", "engine", "analysis", "cli"},
    "models": {"tasks", "engine", "analysis", "cli"},
    "tasks": {"engine", "analysis", "cli"},
    "engine": {"analysis", "cli"},
    "analysis": {"cli"},
}


def _imported_layers(path: Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "hetacumn" and len(parts) > 1:
                layers.add(parts[1])
    return layers


def test_layers_import_one_way():
    violations = []
    checked = 0
    for layer, forbidden in FORBIDDEN.items():
        for path in sorted((PACKAGE / layer).glob("**/*.py")):
            checked += 1
            bad = _imported_layers(path) & forbidden
            if bad:
                violations.append(f"{path.relative_to(PACKAGE)} imports {sorted(bad)}")
    assert checked >= 5
    assert violations == []


def test_no_relative_imports_hide_layers():
    relative = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.glob("**/*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert relative == []
