"""The two reads the dashboard adds (gateway/dashboard.py): who am I, and validate a template without an id."""

from __future__ import annotations

import pytest

from core.builtin import builtin_template

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_me_tells_tenant_roles_and_permissions(api_world, tenant):
    _, viewer = await api_world.call("GET", "/v1/me", tenant, "viewer", expect=200)
    assert viewer == {"id": tenant.ids["viewer"], "tenant_id": tenant.id, "kind": "human", "roles": ["viewer"],
                      "display_name": "viewer", "permissions": ["read"]}
    _, cfo = await api_world.call("GET", "/v1/me", tenant, "cfo", expect=200)
    assert cfo["permissions"] == ["decide", "read"]


async def test_validate_a_new_document_reports_pointers(api_world, tenant):
    document = builtin_template("procurement_approval")
    _, ok = await api_world.call("POST", "/v1/workflows/templates/validate", tenant, json=document, expect=200)
    assert ok == {"valid": True, "errors": []}
    del document["steps"][1]["config"]["approvers"]
    document["steps"].append({"type": "wait", "name": "Nap"})
    _, bad = await api_world.call("POST", "/v1/workflows/templates/validate", tenant, json=document, expect=200)
    assert bad["valid"] is False
    assert {e["pointer"] for e in bad["errors"]} == {"/steps/1/config/approvers", "/steps/4/config"}
    # a shape the JSON schema would refuse is still answered with pointers, not a 422
    _, shapeless = await api_world.call("POST", "/v1/workflows/templates/validate", tenant,
                                        json={"steps": [{"type": "teleport"}]}, expect=200)
    assert {"/name", "/steps/0/type", "/steps/0/name"} <= {e["pointer"] for e in shapeless["errors"]}
