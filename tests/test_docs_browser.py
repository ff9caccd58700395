"""A real browser on /docs, cut off from the network: Swagger UI renders from the assets
the service serves itself, and asks nobody else for anything."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from app.config import Settings
from app.main import create_app
from tests.browser import needs_chromium, offline_browser
from tests.live_server import serving

pytestmark = [pytest.mark.slow, needs_chromium]

# A public-looking name for the service: Swagger UI treats a spec on localhost differently
# (it skips its online validator there), so the page is looked at as a shop would serve it.
HOST = "payments.example.test"


@pytest.fixture
def base_url(settings: Settings, db: asyncpg.Connection) -> Iterator[str]:
    with serving(create_app(settings)) as url:
        yield url


async def test_docs_list_the_operations_with_the_network_cut_off(base_url: str) -> None:
    port = urlsplit(base_url).port
    async with offline_browser(resolve={HOST: "127.0.0.1"}) as browsing:
        page = browsing.page

        await page.goto(f"http://{HOST}:{port}/docs")

        await page.locator(".opblock").first.wait_for()
        paths = await page.locator(".opblock .opblock-summary-path").all_inner_texts()
        assert {"/payments/complete", "/webhooks/portone", "/orders"} <= set(paths)
        assert browsing.errors == []
        assert browsing.blocked == []
