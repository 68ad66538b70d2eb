"""Browser tests: Playwright (Python) drives Debian's Chromium against a whole Flowline (engine, projector,
gateway serving the built dashboard) on the real test stack (tests/integration/gateway/world.py).

`deploy/stack test` builds the dashboard and installs chromium first; run alone, these tests fail with the
command to run when either is missing (they are never skipped). Every test leaves a screenshot in
`.flowline/test/screenshots/<test>.png` (1280x800), and a failing one also the page's HTML beside it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from gateway.dashboard import dist_dir
from tests.integration.gateway.world import ApiWorld, Tenant, running_world

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / ".flowline" / "test" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Chromium is missing: deploy/stack test installs it (as root), "
                    "or: sudo apt-get install -y chromium")
    return found


@pytest.fixture(scope="session")
async def browser():
    from playwright.async_api import async_playwright

    if not (dist_dir() / "index.html").is_file():
        pytest.fail("the dashboard is not built: deploy/stack test builds it, "
                    "or: cd dashboard && npm ci && npm run build")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield launched
        await launched.close()


@pytest.fixture(scope="module")
async def world(kafka_bootstrap, database_url):
    async with running_world(kafka_bootstrap, database_url) as running:
        yield running


@pytest.fixture
async def page(browser, request: pytest.FixtureRequest):
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    yield page
    SHOTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    try:
        await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)
        failed = getattr(request.node, "rep_call", None)
        html = SHOTS / f"{name}.html"
        if failed is not None and failed.failed:
            html.write_text(await page.content())
        else:
            html.unlink(missing_ok=True)  # from an earlier failed run
    finally:
        await context.close()


async def shot(page, name: str) -> None:
    """An extra screenshot in the middle of a test (the fixture takes one at the end)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"))


class Dashboard:
    """A page object: what a person does, through role and label locators."""

    def __init__(self, page, world: ApiWorld) -> None:
        self.page = page
        self.world = world
        self.base = str(world.client.make_url("/")).rstrip("/")

    async def open(self, path: str = "/") -> None:
        await self.page.goto(self.base + path)

    async def sign_in(self, tenant: Tenant, who: str) -> None:
        from playwright.async_api import expect

        await self.open("/")
        await self.page.get_by_label("API token").fill(tenant.tokens[who])
        await self.page.get_by_role("button", name="Sign in").click()
        await expect(self.page.get_by_test_id("who")).to_contain_text(tenant.id)

    async def sign_out(self) -> None:
        from playwright.async_api import expect

        await self.page.get_by_role("button", name="Sign out").click()
        await expect(self.page.get_by_label("API token")).to_be_visible()

    async def tab(self, name: str) -> None:
        await self.page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


@pytest.fixture
def dashboard(page, world) -> Dashboard:
    return Dashboard(page, world)
