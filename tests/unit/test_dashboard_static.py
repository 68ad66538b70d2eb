"""The gateway serves the built dashboard: assets as files, client routes as index.html, and nothing of the
front-end shadows the API (an unknown /v1 path stays a 404 problem, a wrong method a 405)."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.dashboard import front_end
from gateway.problems import problems_middleware

pytestmark = pytest.mark.asyncio(loop_scope="session")
INDEX = '<!doctype html><div id="root"></div>'


@pytest.fixture
async def client(tmp_path):
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(INDEX)
    (tmp_path / "assets" / "index-abc123.js").write_text("console.log(1)")
    (tmp_path / "favicon.svg").write_text("<svg/>")
    (tmp_path.parent / "secret.txt").write_text("outside")

    async def api(_request):
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[problems_middleware, front_end(tmp_path)])
    app.router.add_route("POST", "/v1/workflows/things", api)
    app.router.add_route("GET", "/health", api)
    async with TestClient(TestServer(app)) as c:
        yield c


@pytest.mark.parametrize("path", ["/", "/instances/wfi_1", "/templates/wft_1/2", "/analytics?x=1"])
async def test_client_routes_answer_the_app(client, path):
    response = await client.get(path)
    assert response.status == 200 and await response.text() == INDEX
    assert response.headers["Cache-Control"] == "no-cache"


async def test_assets_are_files_and_hashed_ones_are_immutable(client):
    response = await client.get("/assets/index-abc123.js")
    assert response.status == 200 and await response.text() == "console.log(1)"
    assert "immutable" in response.headers["Cache-Control"]
    favicon = await client.get("/favicon.svg")
    assert favicon.status == 200 and favicon.headers["Cache-Control"] == "no-cache"


async def test_missing_asset_and_escapes_are_not_the_app(client):
    assert (await client.get("/assets/index-gone.js")).status == 404
    escaped = await client.get("/%2e%2e/secret.txt")
    assert escaped.status == 200 and await escaped.text() == INDEX  # never the file outside dist


async def test_api_paths_are_never_shadowed(client):
    unknown = await client.get("/v1/nope")
    assert unknown.status == 404 and unknown.content_type == "application/problem+json"
    wrong_method = await client.get("/v1/workflows/things")
    assert wrong_method.status == 405
    assert (await client.post("/v1/workflows/things")).status == 200
    assert (await client.get("/health")).status == 200


async def test_not_built_says_how_to_build(tmp_path):
    app = web.Application(middlewares=[problems_middleware, front_end(tmp_path / "missing")])
    async with TestClient(TestServer(app)) as c:
        response = await c.get("/")
        assert response.status == 503 and "npm run build" in await response.text()
