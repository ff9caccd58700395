"""A real Chromium for the tests that look at pages, cut off from the network.

Every request to a host other than this machine's is aborted and noted, so a page that
needs a CDN (or phones home) shows it in `blocked`; errors thrown by the page's scripts
are noted in `errors`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Page, Route, async_playwright, expect

CHROMIUM = shutil.which("chromium")
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
WAIT_MS = 20_000  # the machine is shared; every wait is for an element or a state

NO_CHROMIUM = "no Chromium on this machine (Debian: apt-get install chromium; .ci/run does)"

# Skipped on a machine without Chromium (a new user's with Python alone); under CI, which
# must run them, they fail instead.
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason=NO_CHROMIUM
)

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Browsing:
    page: Page
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@asynccontextmanager
async def offline_browser(
    *, locale: str = "en-GB", resolve: dict[str, str] | None = None
) -> AsyncIterator[Browsing]:
    """A page in a fresh Chromium that reaches this machine only. `resolve` maps made-up
    host names to loopback addresses (a page served under a public-looking name)."""
    args = list(LAUNCH_ARGS)
    if resolve:
        rules = ", ".join(f"MAP {name} {address}" for name, address in resolve.items())
        args.append(f"--host-resolver-rules={rules}")
    local = LOCAL_HOSTS | set(resolve or ())
    expect.set_options(timeout=WAIT_MS)
    async with async_playwright() as playwright:
        if CHROMIUM is None:
            pytest.fail(NO_CHROMIUM, pytrace=False)
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            context = await browser.new_context(locale=locale, timezone_id="UTC")
            page = await context.new_page()
            page.set_default_timeout(WAIT_MS)
            browsing = Browsing(page)

            async def cut_off(route: Route) -> None:
                url = route.request.url
                if urlsplit(url).hostname in local:
                    await route.continue_()
                else:
                    browsing.blocked.append(url)
                    await route.abort("internetdisconnected")

            await context.route("**/*", cut_off)
            page.on("pageerror", lambda error: browsing.errors.append(str(error)))
            yield browsing
        finally:
            await browser.close()
