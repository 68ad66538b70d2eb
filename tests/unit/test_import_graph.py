"""The import graph has the core at the bottom, the adapters above it, and no arrow between adapters.

Why: an adapter that imports another adapter (the handlers importing the engine, the gateway importing the
store) drags that process's dependencies and start-up side effects along, and the layering the style guide
asks for (pure core, thin adapters) erodes one convenient import at a time. Shared code that two adapters
need lives in `schemas/` (topics, codec, dead letters, sealed secrets, error classification) or `core/`.

The graph is read with `ast` from the source files, so the test needs nothing installed and sees imports
inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("core", "schemas", "streams", "handlers", "gateway", "store", "deploy", "flowline")
ADAPTERS = ("streams", "handlers", "gateway", "store")

# What each package may import of ours (besides itself).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "schemas": {"core"},
    **{adapter: {"core", "schemas"} for adapter in ADAPTERS},
    # deploy is the tooling on top: it composes every process.
    "deploy": {"core", "schemas", *ADAPTERS, "flowline"},
    # The SDK, CLI and MCP server never import an adapter or the deploy tooling.
    "flowline": {"core", "schemas"},
}


def imports_of(path: Path) -> set[str]:
    """Top-level packages of ours that `path` imports (absolute imports, anywhere in the module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(name.split(".")[0] for name in names if name.split(".")[0] in OURS)
    return found


def graph() -> dict[str, list[tuple[str, str]]]:
    """For each package of ours: (file, imported package) for every import of another package of ours."""
    edges: dict[str, list[tuple[str, str]]] = {package: [] for package in OURS}
    for package in OURS:
        for path in sorted((ROOT / package).rglob("*.py")):
            for imported in imports_of(path) - {package}:
                edges[package].append((str(path.relative_to(ROOT)), imported))
    return edges


@pytest.mark.parametrize("package", OURS)
def test_package_imports_only_what_its_layer_allows(package: str) -> None:
    wrong = [(file, imported) for file, imported in graph()[package] if imported not in ALLOWED[package]]
    assert wrong == [], f"{package} may import only {sorted(ALLOWED[package])} of ours; found {wrong}"


def test_every_package_of_ours_has_a_layer() -> None:
    """A new top-level package (say `engine/` for `streams/`) is layered here before it ships, or the graph
    would not look at it: every package the wheel installs is in OURS, with its allowed imports."""
    import tomllib

    found = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    installed = {pattern.rstrip("*") for pattern in include}
    assert found <= set(OURS) and installed <= set(OURS), f"unlayered: {sorted((found | installed) - set(OURS))}"
    assert set(ALLOWED) == set(OURS)


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself: an adapter importing another adapter or deploy is found, inside functions too."""
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom streams.errors import x\ndef f():\n    import deploy.cli\n")
    assert imports_of(module) == {"streams", "deploy"}


def _runtime_imports(path: Path, package: str) -> set[str]:
    """Modules of `package` that `path` imports at run time (anywhere but an `if TYPE_CHECKING:` block)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING") for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(package + "."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == package:
                found.update(f"{package}.{a.name}" for a in node.names)
            elif node.module.startswith(package + "."):
                found.add(node.module)
    return found


def find_cycle(package: str) -> list[str] | None:
    """One import cycle among `package`'s modules, or None."""
    modules = {f"{package}.{p.stem}": p for p in (ROOT / package).glob("*.py") if p.stem != "__init__"}
    edges = {m: sorted(_runtime_imports(p, package) & modules.keys()) for m, p in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for nxt in edges[module]:
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(modules):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_gateway_has_no_import_cycle() -> None:
    """The handlers import `gateway.calls`, never the composition root (`gateway.app`) that imports them."""
    assert find_cycle("gateway") is None


@pytest.mark.parametrize("package", ADAPTERS)
def test_no_adapter_has_an_import_cycle(package: str) -> None:
    assert find_cycle(package) is None
