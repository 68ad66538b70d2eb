"""`GET /v1/workflows/step-types`: every step type with the config schema the core validates by."""

from __future__ import annotations

import jsonschema
import pytest

from core.steps import STEP_KINDS

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_step_types_lists_every_type_with_its_config_schema(api_world, tenant):
    _, body = await api_world.call("GET", "/v1/workflows/step-types", tenant, who="agent", expect=200)
    listed = {item["type"]: item for item in body["items"]}
    assert set(listed) == {t.value for t in STEP_KINDS}
    for step_type, kind in STEP_KINDS.items():
        schema = listed[step_type.value]["config_schema"]
        jsonschema.Draft202012Validator.check_schema(schema)
        assert set(schema["properties"]) == kind.config_keys
    assert listed["approval"]["handler"] == "approval" and listed["wait"]["handler"] is None


async def test_step_types_need_a_token(api_world):
    status, _ = await api_world.call("GET", "/v1/workflows/step-types")
    assert status == 401
