"""The README's configuration table and `schemas/settings.py` agree on every process variable's default.

Why: each variable has one default, in `schemas.settings.VARIABLES`; the README shows it to operators. A
default changed in the code but not in the README (or the reverse) is caught here.
"""

from __future__ import annotations

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


def test_no_process_module_reads_the_environment_directly() -> None:
    """Engine, handlers, gateway and projector read variables through `schemas.settings` only."""
    root = README.parent
    offenders = []
    for package in ("streams", "gateway", "store"):
        for path in (root / package).rglob("*.py"):
            if "os.environ" in path.read_text() or "getenv(" in path.read_text():
                offenders.append(str(path.relative_to(root)))
    assert offenders == []
