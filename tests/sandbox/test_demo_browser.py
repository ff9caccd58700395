"""A real browser on the demo checkout: what a shopper sees, and where the order ends."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from playwright.async_api import Page, async_playwright

from app.config import Settings
from app.main import create_app
from tests.live_server import serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="no Chromium on this machine (.ci/run installs Debian's chromium package)",
)


@pytest.fixture
def base_url(settings: Settings, db: asyncpg.Connection) -> Iterator[str]:
    with serving(create_app(settings)) as url:
        yield url


@pytest.fixture
async def page(base_url: str) -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = await browser.new_page()
        await page.goto(base_url + "/")
        yield page
        await browser.close()


async def shown(page: Page, state: str) -> str:
    result = page.locator(f'#result[data-state="{state}"]')
    await result.wait_for(timeout=15_000)
    text: str = await result.inner_text()
    return text


async def latest_order(db: asyncpg.Connection) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM orders ORDER BY created_at DESC LIMIT 1")
    assert row is not None
    return row


async def test_page_shows_the_sandbox_banner(page: Page) -> None:
    assert "SANDBOX" in await page.locator("#banner").inner_text()


async def test_card_payment_is_shown_paid(page: Page, db: asyncpg.Connection) -> None:
    await page.click("#pay-card")

    text = await shown(page, "paid")

    order = await latest_order(db)
    assert "Paid ₩10,000" in text
    assert order["id"] in text
    assert order["status"] == "PAID"


async def test_virtual_account_waits_for_the_deposit_then_shows_paid(
    page: Page, db: asyncpg.Connection
) -> None:
    await page.click("#pay-virtual-account")

    waiting = await shown(page, "waiting")
    await page.locator("#deposit").wait_for(state="visible")
    order = await latest_order(db)
    assert order["status"] == "AWAITING_DEPOSIT"
    assert order["va_account_number"] in waiting

    await page.click("#deposit")

    assert "Deposit received" in await shown(page, "paid")
    assert (await latest_order(db))["status"] == "PAID"


async def test_tampered_amount_is_shown_rejected_and_refunded(
    page: Page, db: asyncpg.Connection
) -> None:
    await page.click("#pay-tampered")

    text = await shown(page, "rejected")

    assert "AMOUNT_MISMATCH" in text
    assert "Refunded ₩100" in text
    order = await latest_order(db)
    assert (order["status"], order["refunded_amount"]) == ("REJECTED", 100)
    assert order["compensation_status"] == "DONE"


async def test_declined_card_is_shown_failed_and_the_order_stays_pending(
    page: Page, db: asyncpg.Connection
) -> None:
    await page.click("#pay-declined")

    assert "Payment failed" in await shown(page, "failed")
    assert (await latest_order(db))["status"] == "PENDING"
