"""The README's configuration table and `schemas/settings.py` agree on every process variable's default.

Why: each variable has one default, in `schemas.settings.VARIABLES`; the README shows it to operators. A
default changed in the code but not in the README (or the reverse) is caught here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from schemas.settings import VARIABLES, env

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| `(?P<name>[A-Z_<>]+)` \| (?P<default>.*?) \| .* \|$")


def readme_defaults() -> dict[str, str]:
    return {m["name"]: m["default"] for line in README.read_text().splitlines() if (m := ROW.match(line))}


@pytest.mark.parametrize("name", VARIABLES)
def test_readme_shows_the_registered_default(name: str) -> None:
    variable = VARIABLES[name]
    rows = readme_defaults()
    assert name in rows, f"README's configuration table has no row for {name}"
    assert rows[name] == variable.readme_default
    if variable.default and variable.shown and "development key" not in variable.shown:
        assert f"`{variable.default}`" in variable.shown, "the README text must show the default itself"


def test_env_gives_the_default_when_unset_or_empty_and_the_value_otherwise() -> None:
    assert env("FLOWLINE_ENGINE_MAX_BATCH", {}) == "500"
    assert env("FLOWLINE_ENGINE_MAX_BATCH", {"FLOWLINE_ENGINE_MAX_BATCH": ""}) == "500"
    assert env("FLOWLINE_ENGINE_MAX_BATCH", {"FLOWLINE_ENGINE_MAX_BATCH": "7"}) == "7"
    assert env("FLOWLINE_ENGINE_HTTP_PORT", {"FLOWLINE_ENGINE_METRICS_PORT": "9"}) == "9"
    assert env("FLOWLINE_HANDLER_<KIND>_METRICS_PORT", {"FLOWLINE_HANDLER_ACTION_METRICS_PORT": "5"},
               kind="action") == "5"
    with pytest.raises(KeyError):
        env("FLOWLINE_NOT_REGISTERED", {})


RUNTIME = ("core", "schemas", "streams", "handlers", "gateway", "store", "deploy", "flowline")
REGISTRY = Path("schemas/settings.py")


def environment_reads(source: str) -> list[int]:
    """Lines of `source` that touch the process environment: `os.environ` (read, copied or passed on),
    `os.getenv`, `os.environb`, or `environ`/`getenv` imported from `os`."""
    names = ("environ", "environb", "getenv")
    lines = []
    for node in ast.walk(ast.parse(source)):
        attribute = isinstance(node, ast.Attribute) and node.attr in names \
            and isinstance(node.value, ast.Name) and node.value.id == "os"
        imported = isinstance(node, ast.ImportFrom) and node.module == "os" \
            and any(alias.name in names for alias in node.names)
        if attribute or imported:
            lines.append(node.lineno)
    return lines


def test_no_runtime_module_reads_the_environment_but_the_registry() -> None:
    """Every process, the stack and the tools read variables through `schemas.settings` only, so each has
    one default in one place (the README shows it)."""
    root = README.parent
    offenders = []
    for package in RUNTIME:
        for path in sorted((root / package).rglob("*.py")):
            if path.relative_to(root) == REGISTRY:
                continue
            offenders += [f"{path.relative_to(root)}:{line}" for line in environment_reads(path.read_text())]
    assert offenders == [], "read variables with schemas.settings.env/given (register new ones there)"


@pytest.mark.parametrize("source", [
    "import os\nx = os.environ.get('FLOWLINE_X')\n",
    "import os\ndef f():\n    return os.getenv('FLOWLINE_X', '1')\n",
    "import os\nchild = {**os.environ}\n",
    "from os import environ\n",
    "from os import getenv as g\n",
])
def test_the_check_sees_a_stray_read(source: str) -> None:
    assert environment_reads(source)
    assert environment_reads("import os\nx = os.path.join('a', 'b')\n") == []
