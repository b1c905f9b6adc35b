"""The package's architecture, as a test: layers import downwards only, and nothing imports in a
cycle. Pure (no server): it reads the source with ``ast``."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dbtools"

# Lowest first. A module may import its own package and anything in a lower layer, never a
# sibling package of its own layer nor a higher one.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("dbtools", "dbtools.errors"),
    ("dbtools.redaction", "dbtools.output", "dbtools.config", "dbtools.findings"),
    ("dbtools.db", "dbtools.sandbox", "dbtools.sqltext"),
    ("dbtools.schema",),
    # the statistics, stage by stage: read from the server; the pure arithmetic of a window
    # (what it is, its deltas, sums and figures); the store that keeps samples and answers
    # with those figures
    ("dbtools.reading", "dbtools.metrics"),
    ("dbtools.figures",),
    ("dbtools.store",),
    ("dbtools.verify", "dbtools.safety", "dbtools.workload", "dbtools.doctor"),
    ("dbtools.report",),
    # rollout runs migrations, doctor, snapshots and verify in turn: above them, beside demo
    ("dbtools.demo", "dbtools.rollout"),
    ("dbtools.cli",),
    ("dbtools.__main__",),
)  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def component(module: str) -> str:
    """The layer entry a module belongs to (its package, or itself for top-level modules)."""
    entries = [entry for layer in LAYERS for entry in layer]
    owners = [e for e in entries if module == e or module.startswith(e + ".")]
    return max(owners, key=len)


def layer_of(module: str) -> int:
    owner = component(module)
    return next(i for i, layer in enumerate(LAYERS) if owner in layer)


def imports_of(module: str) -> Iterator[str]:
    """The dbtools modules *module* imports (anywhere in it, functions included)."""
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from pkg import submodule` imports the submodule; `from pkg import name`, pkg.
            names = [
                submodule
                if (submodule := f"{node.module}.{alias.name}") in MODULES
                else node.module
                for alias in node.names
            ]
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name.startswith("dbtools") and name != module:
                yield name


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        assert layer_of(module) >= 0, module


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module: str) -> None:
    mine, own = layer_of(module), component(module)
    for target in imports_of(module):
        theirs = component(target)
        if theirs == own or target == "dbtools":
            continue
        assert layer_of(target) < mine, f"{module} (layer {mine}) imports {target} ({theirs})"


def test_no_import_cycles() -> None:
    graph = {module: set(imports_of(module)) for module in MODULES}
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in done:
            return
        assert module not in visiting, "import cycle: " + " -> ".join((*path, module))
        visiting.add(module)
        for target in sorted(graph[module]):
            visit(target, (*path, module))
        visiting.discard(module)
        done.add(module)

    for module in sorted(graph):
        visit(module, ())


def test_every_package_says_what_it_owns() -> None:
    for path in PACKAGE.rglob("__init__.py"):
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert docstring, f"{path.relative_to(PACKAGE.parent)} has no docstring"
