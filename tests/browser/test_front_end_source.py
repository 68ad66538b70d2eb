"""The front-end's own checks, run from the project's files: eslint is clean, and the API types the
dashboard compiles against (dashboard/src/api/schema.d.ts) are exactly what openapi-typescript generates
from today's OpenAPI document (gateway/openapi.py), so a changed endpoint cannot drift from its callers.
The type check itself (tsc --noEmit) is part of `npm run build`, which `deploy/stack test` runs first."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway import openapi

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard"


def npx(*args: str, **kwargs) -> subprocess.CompletedProcess:
    if shutil.which("npx") is None or not (DASHBOARD / "node_modules").is_dir():
        pytest.fail("node modules are missing: deploy/stack test installs them, or: cd dashboard && npm ci")
    return subprocess.run(["npx", "--no-install", *args], cwd=DASHBOARD, capture_output=True, text=True,
                          timeout=300, **kwargs)


def test_eslint_is_clean():
    result = npx("eslint", "--max-warnings=0", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_api_types_match_the_openapi_document(tmp_path):
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(openapi.DOCUMENT, indent=1))
    out = tmp_path / "schema.d.ts"
    result = npx("openapi-typescript", str(document), "-o", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    committed = (DASHBOARD / "src" / "api" / "schema.d.ts").read_text()
    assert out.read_text() == committed, (
        "dashboard/src/api/schema.d.ts is stale: regenerate it with `cd dashboard && npm run gen` "
        "(README.md, Dashboard)")
