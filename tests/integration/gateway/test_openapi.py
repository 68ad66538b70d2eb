"""The OpenAPI document is the single source of the route list, and it is a valid OpenAPI 3.1 document."""

from __future__ import annotations

import pytest

from gateway import openapi

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_router_routes_are_exactly_the_documented_operations(api_world):
    app = api_world.client.server.app
    served = {(r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}
    documented = {(method, path) for method, path, _ in openapi.operations()}
    assert served == documented


async def test_document_is_served_and_valid(api_world):
    from jsonschema import Draft202012Validator

    status, doc = await api_world.call("GET", "/v1/openapi.json")
    assert status == 200 and doc["openapi"] == "3.1.0"
    for name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema({**schema, "$id": name})
    ids = [op["operationId"] for _, _, op in openapi.operations()]
    assert len(ids) == len(set(ids))
    status, page = await api_world.call("GET", "/docs")
    assert status == 200 and all(path.replace("{", "").split("}")[0] in page.replace("{", "")
                                 for _, path, _ in openapi.operations())
