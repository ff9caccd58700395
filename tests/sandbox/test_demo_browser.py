"""A real browser on the demo shop: what a person sees after each flow, and where the
order ends in the database. The browser reaches nothing but this machine."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Request, Response
from playwright.async_api import Locator, Page, Route, expect

from app.config import Settings
from app.main import create_app
from tests.browser import Browsing, needs_chromium, offline_browser
from tests.helpers import WEBHOOK_SECRET, make_settings
from tests.live_server import serving
from tests.processes import free_port

pytestmark = [pytest.mark.slow, needs_chromium]

FLOWS = ("#pay-card", "#pay-virtual-account", "#pay-tampered", "#pay-declined")
HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")


@pytest.fixture
def shop_events() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The shop's receiver of order events: its URL, and what it received."""
    received: list[dict[str, Any]] = []
    receiver = FastAPI()

    @receiver.post("/order-events")
    async def receive(request: Request) -> Response:
        received.append(await request.json())
        return Response(status_code=204)

    with serving(receiver) as url:
        yield f"{url}/order-events", received


@pytest.fixture
def settings(database_url: str, shop_events: tuple[str, list[dict[str, Any]]]) -> Settings:
    return make_settings(
        database_url,
        portone_mode="sandbox",
        portone_api_base_url=None,
        portone_accept_test_payments=None,
        order_events_url=shop_events[0],
        order_events_secret=WEBHOOK_SECRET,
        public_base_url=f"http://127.0.0.1:{free_port()}",  # as the run command sets it
    )


@pytest.fixture(params=["webhooks on time", "webhooks late"])
def either_first(request: pytest.FixtureRequest) -> None:
    """The webhook or the browser's completion sees the payment first."""
    if request.param == "webhooks late":
        request.getfixturevalue("webhooks_late")


@pytest.fixture
def base_url(settings: Settings, db: asyncpg.Connection) -> Iterator[str]:
    assert settings.public_base_url is not None
    with serving(create_app(settings), settings.public_base_url.port) as url:
        yield url


@pytest.fixture
async def browsing(base_url: str) -> AsyncIterator[Browsing]:
    async with offline_browser(locale="en-GB") as browsing:
        await browsing.page.goto(base_url + "/")
        yield browsing
        assert browsing.errors == []
        assert browsing.blocked == []


@pytest.fixture
def page(browsing: Browsing) -> Page:
    return browsing.page


async def shown(page: Page, state: str) -> str:
    """The result once it reaches `state` (paid, waiting, rejected, failed, …)."""
    result = page.locator(f'#result[data-state="{state}"]')
    await result.wait_for()
    text: str = await result.inner_text()
    return text


def timeline(page: Page, source: str, text: str | re.Pattern[str] = "") -> Locator:
    """The timeline's entries from `source` (page, complete, webhook, reconcile,
    compensation, refund, order-event) that say `text`."""
    return page.locator(f'#timeline li[data-source="{source}"]').filter(has_text=text)


async def pay(page: Page, flow: str) -> None:
    await page.click(f"#pay-{flow}")


async def order_row(db: asyncpg.Connection, order_id: str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM orders WHERE id = $1", order_id)
    assert row is not None
    return row


async def order_on_screen(page: Page, db: asyncpg.Connection) -> asyncpg.Record:
    return await order_row(db, await page.locator("#order-id").inner_text())


async def sources(db: asyncpg.Connection, order_id: str) -> list[tuple[str, str, str]]:
    rows = await db.fetch(
        "SELECT source, from_status, to_status FROM order_history WHERE order_id = $1 ORDER BY id",
        order_id,
    )
    return [(r["source"], r["from_status"], r["to_status"]) for r in rows]


async def test_page_works_offline_with_the_sandbox_banner_and_its_icon(
    page: Page, base_url: str
) -> None:
    icon = await page.locator('link[rel="icon"]').get_attribute("href")
    served = await page.request.get(base_url + (icon or ""))

    assert "SANDBOX" in await page.locator("#banner").inner_text()
    assert icon == "/favicon.ico"
    assert served.headers["content-type"] == "image/svg+xml"
    await expect(page.locator("#order")).to_be_hidden()
    await expect(page.locator("#deposit")).to_be_hidden()


async def test_card_payment_is_verified_by_the_browser_then_confirmed_by_the_webhook(
    webhooks_late: None,
    page: Page,
    db: asyncpg.Connection,
    shop_events: tuple[str, list[dict[str, Any]]],
) -> None:
    await pay(page, "card")

    text = await shown(page, "paid")
    await expect(timeline(page, "complete", "PENDING → PAID")).to_have_count(1)
    await expect(timeline(page, "webhook", "PAID (unchanged)").first).to_be_visible()
    await expect(timeline(page, "order-event", "order.paid")).to_contain_text("delivered")
    order = await order_on_screen(page, db)
    calls = page.locator("#portone-calls li")
    await expect(calls.first).to_have_text(
        re.compile(rf"GET /payments/{order['payment_id']} → 200$")
    )
    assert "Paid ₩10,000" in text
    await expect(page.locator("#order-status")).to_have_text("PAID")
    await expect(page.locator('[data-fact="Amount"]')).to_have_text("₩10,000")
    # en-GB: "3 Dec 2026, 11:02"
    await expect(page.locator('[data-fact="Paid"]')).to_have_text(
        re.compile(r"^\d{1,2} [A-Z][a-z]{2} \d{4}, \d{2}:\d{2}$")
    )
    await expect(timeline(page, "page", "POST /payments/complete → 200")).to_have_count(1)
    assert order["status"] == "PAID"
    assert (await sources(db, order["id"]))[0] == ("complete", "PENDING", "PAID")
    assert [event["type"] for event in shop_events[1]] == ["order.paid"]


async def test_virtual_account_waits_for_the_deposit_the_webhook_reports(
    page: Page, db: asyncpg.Connection
) -> None:
    await pay(page, "virtual-account")

    waiting = await shown(page, "waiting")
    order = await order_on_screen(page, db)
    await expect(page.locator("#deposit")).to_be_visible()
    await expect(page.locator("#order-status")).to_have_text("AWAITING_DEPOSIT")
    assert order["status"] == "AWAITING_DEPOSIT"
    assert f"Transfer ₩10,000 to SHINHAN {order['va_account_number']}" in waiting
    assert re.search(r"by \d{1,2} [A-Z][a-z]{2} \d{4}, \d{2}:\d{2}", waiting)

    await page.click("#deposit")

    assert "Deposit received: paid ₩10,000" in await shown(page, "paid")
    await expect(timeline(page, "webhook", "AWAITING_DEPOSIT → PAID")).to_have_count(1)
    await expect(page.locator("#deposit")).to_be_hidden()
    assert (await order_row(db, order["id"]))["status"] == "PAID"


async def test_deposit_button_shows_for_a_virtual_account_and_pays_only_that_order(
    page: Page, db: asyncpg.Connection
) -> None:
    await pay(page, "virtual-account")
    await shown(page, "waiting")
    first = await order_on_screen(page, db)
    await pay(page, "card")
    await shown(page, "paid")
    await expect(page.locator("#deposit")).to_be_hidden()
    await pay(page, "virtual-account")
    await shown(page, "waiting")
    last = await order_on_screen(page, db)

    await page.click("#deposit")

    await shown(page, "paid")
    assert (await order_row(db, last["id"]))["status"] == "PAID"
    assert (await order_row(db, first["id"]))["status"] == "AWAITING_DEPOSIT"


async def test_tampered_amount_is_rejected_by_its_reason_and_compensated(
    either_first: None, page: Page, db: asyncpg.Connection
) -> None:
    # Whoever rejects it first, the verdict reads the same: it is built from the problem's
    # code and reason, not from its prose.
    await pay(page, "tampered")

    text = await shown(page, "rejected")
    assert text.startswith(
        "Payment rejected (AMOUNT_MISMATCH): the amount paid is not the order's amount."
    )
    assert "failed verification" not in text
    await expect(page.locator("#note")).to_have_text(re.compile("₩100 went back to the customer"))
    await expect(page.locator("#order-status")).to_have_text("REJECTED")
    await expect(page.locator('[data-fact="Refunded"]')).to_have_text("₩100")
    await expect(timeline(page, "compensation", "SUCCEEDED")).to_have_count(1)
    order = await order_on_screen(page, db)
    cancel = f"POST /payments/{order['payment_id']}/cancel → 200"
    await expect(page.locator("#portone-calls li").filter(has_text=cancel)).to_have_count(1)
    assert (order["status"], order["rejection_reason"]) == ("REJECTED", "AMOUNT_MISMATCH")
    assert (order["refunded_amount"], order["compensation_status"]) == (100, "DONE")


async def emulated_payment(base_url: str, settings: Settings, payment_id: str) -> dict[str, Any]:
    """The payment as the emulated PortOne holds it, read through its API."""
    async with httpx.AsyncClient(base_url=base_url) as portone:
        response = await portone.get(
            f"/sandbox/portone/payments/{payment_id}",
            headers={"Authorization": f"PortOne {settings.api_secret}"},
        )
    assert response.status_code == 200, response.text
    payment: dict[str, Any] = response.json()
    return payment


def portone_calls(page: Page, text: str) -> Locator:
    return page.locator("#portone-calls li").filter(has_text=text)


@pytest.mark.parametrize("mobile", [False, True], ids=["popup", "redirect"])
async def test_tampered_amount_on_a_manual_channel_is_refused_by_portone_and_nothing_is_charged(
    mobile: bool, page: Page, base_url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    await page.check("#confirm-manual")
    await page.set_checked("#mobile", mobile)

    await pay(page, "tampered")

    text = await shown(page, "not-confirmed")
    order = await order_on_screen(page, db)
    payment = await emulated_payment(base_url, settings, order["payment_id"])
    assert "PortOne refused to confirm the payment (INFORMATION_MISMATCH)" in text
    assert "Nothing was charged" in text
    confirm = f"POST /payments/{order['payment_id']}/confirm → 409 INFORMATION_MISMATCH"
    await expect(portone_calls(page, confirm)).to_have_count(1)
    await expect(portone_calls(page, "/cancel")).to_have_count(0)
    await expect(page.locator("#order-status")).to_have_text("PENDING")
    await expect(page.locator("#retry")).to_be_visible()
    await expect(page.locator('[data-fact="Refunded"]')).to_have_count(0)
    assert (payment["status"], payment["amount"]["paid"]) == ("READY", 0)
    assert payment.get("cancellations", []) == []
    assert (order["status"], order["refunded_amount"]) == ("PENDING", 0)
    assert order["compensation_status"] is None


async def test_tampered_amount_on_a_manual_channel_shows_what_the_service_asked(
    page: Page,
) -> None:
    await page.check("#confirm-manual")

    await pay(page, "tampered")

    await shown(page, "not-confirmed")
    await expect(timeline(page, "page", "paymentToken: authenticated")).to_have_count(1)
    answer = timeline(page, "page", "POST /payments/complete with paymentToken → 409")
    await expect(answer).to_contain_text("PAYMENT_NOT_CONFIRMED INFORMATION_MISMATCH")
    await expect(timeline(page, "complete")).to_have_count(0)


async def test_honest_payment_on_a_manual_channel_is_confirmed_at_portone_then_paid(
    page: Page, base_url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    await page.check("#confirm-manual")

    await pay(page, "card")

    text = await shown(page, "paid")
    order = await order_on_screen(page, db)
    payment = await emulated_payment(base_url, settings, order["payment_id"])
    assert "Paid ₩10,000" in text
    await expect(page.locator("#note")).to_contain_text("only when the service confirmed")
    confirm = f"POST /payments/{order['payment_id']}/confirm → 200"
    await expect(portone_calls(page, confirm)).to_have_count(1)
    await expect(timeline(page, "complete", "PENDING → PAID")).to_have_count(1)
    await expect(page.locator("#order-status")).to_have_text("PAID")
    assert (payment["status"], payment["amount"]["paid"]) == ("PAID", 10_000)
    assert order["status"] == "PAID"


async def test_after_a_refused_confirmation_another_try_pays_the_same_order(
    page: Page, db: asyncpg.Connection
) -> None:
    await page.check("#confirm-manual")
    await pay(page, "tampered")
    await shown(page, "not-confirmed")
    refused = await order_on_screen(page, db)

    await page.click("#retry")

    assert "Paid ₩10,000" in await shown(page, "paid")
    paid = await order_on_screen(page, db)
    await expect(portone_calls(page, "/confirm → 200")).to_have_count(1)
    assert (paid["id"], paid["status"]) == (refused["id"], "PAID")
    assert await db.fetchval("SELECT count(*) FROM orders") == 1


async def test_declined_card_is_shown_failed_and_the_order_stays_open(
    page: Page, db: asyncpg.Connection
) -> None:
    await pay(page, "declined")

    text = await shown(page, "failed")
    await expect(timeline(page, "webhook", "PortOne: FAILED").first).to_be_visible()
    order = await order_on_screen(page, db)
    assert "Payment failed (FAILURE_TYPE_PG): The card issuer declined the payment" in text
    await expect(page.locator("#order-status")).to_have_text("PENDING")
    await expect(timeline(page, "page", "code FAILURE_TYPE_PG")).to_have_count(1)
    await expect(timeline(page, "complete")).to_have_count(0)
    assert order["status"] == "PENDING"
    assert {entry[0] for entry in await sources(db, order["id"])} == {"webhook"}


async def test_declined_card_offers_another_try_that_pays_the_same_order(
    either_first: None, page: Page, db: asyncpg.Connection
) -> None:
    await pay(page, "declined")
    assert "Try again with another card" in await shown(page, "failed")
    declined = await order_on_screen(page, db)

    await page.click("#retry")

    assert "Paid ₩10,000" in await shown(page, "paid")
    paid = await order_on_screen(page, db)
    await expect(page.locator("#retry")).to_be_hidden()
    await expect(timeline(page, "page", "another try")).to_have_count(1)
    assert (paid["id"], paid["payment_id"]) == (declined["id"], declined["payment_id"])
    assert paid["status"] == "PAID"
    assert await db.fetchval("SELECT count(*) FROM orders") == 1


async def test_refund_that_portone_answers_at_once_refunds_the_order(
    page: Page, db: asyncpg.Connection
) -> None:
    await pay(page, "card")
    await shown(page, "paid")
    await expect(page.locator("#refund-amount")).to_have_value("10000")

    await page.click("#refund")

    text = await shown(page, "refunded")
    order = await order_on_screen(page, db)
    refunds = await db.fetch("SELECT amount, status FROM refunds WHERE order_id = $1", order["id"])
    assert "Refunded ₩10,000: PortOne's cancellation SUCCEEDED" in text
    await expect(page.locator("#order-status")).to_have_text("REFUNDED")
    await expect(page.locator('#refunds li[data-status="SUCCEEDED"]')).to_have_count(1)
    await expect(timeline(page, "order-event", "order.refunded")).to_have_count(1)
    await expect(page.locator("#refunding")).to_be_hidden()
    assert [tuple(r) for r in refunds] == [(10_000, "SUCCEEDED")]
    assert (order["status"], order["refunded_amount"]) == ("REFUNDED", 10_000)


async def test_refund_that_portone_settles_later_is_held_then_settled(
    page: Page, db: asyncpg.Connection
) -> None:
    await pay(page, "card")
    await shown(page, "paid")
    await page.fill("#refund-amount", "3000")

    await page.click("#refund-later")

    held = await shown(page, "refund-held")
    order = await order_on_screen(page, db)
    assert "PortOne holds the refund of ₩3,000 (REQUESTED)" in held
    await expect(page.locator('#refunds li[data-status="REQUESTED"]')).to_have_count(1)
    await expect(page.locator("#settle")).to_be_visible()
    assert await db.fetchval("SELECT status FROM refunds WHERE order_id = $1", order["id"]) == (
        "REQUESTED"
    )

    await page.click("#settle")

    settled = await shown(page, "refunded")
    assert "PortOne settled the refund: ₩3,000 went back to the customer" in settled
    await expect(page.locator("#order-status")).to_have_text("PARTIALLY_REFUNDED")
    await expect(page.locator('#refunds li[data-status="SUCCEEDED"]')).to_have_count(1)
    await expect(page.locator("#settle")).to_be_hidden()
    await expect(page.locator("#refund-amount")).to_have_value("7000")
    order = await order_row(db, order["id"])
    refunds = await db.fetch("SELECT status, amount FROM refunds WHERE order_id = $1", order["id"])
    assert (order["status"], order["refunded_amount"]) == ("PARTIALLY_REFUNDED", 3_000)
    assert [tuple(r) for r in refunds] == [("SUCCEEDED", 3_000)]


async def test_refund_portone_fails_without_a_webhook_is_found_by_the_reconciler(
    page: Page, db: asyncpg.Connection
) -> None:
    await pay(page, "card")
    await shown(page, "paid")
    await page.click("#refund-later")
    await shown(page, "refund-held")
    await page.click("#settle-failed")
    await expect(page.locator("#verdict")).to_contain_text("PortOne failed the refund")
    assert "sends no webhook" in await shown(page, "refund-held")
    await expect(page.locator('#refunds li[data-status="REQUESTED"]')).to_have_count(1)

    await page.click("#reconcile")

    text = await shown(page, "reconciled")
    await expect(page.locator('#refunds li[data-status="FAILED"]')).to_have_count(1)
    await expect(timeline(page, "reconcile", "PAID (unchanged)")).to_have_count(1)
    await expect(timeline(page, "order-event", "order.refund_failed")).to_have_count(1)
    await expect(page.locator("#order-status")).to_have_text("PAID")
    order = await order_on_screen(page, db)
    refunds = await db.fetch("SELECT status FROM refunds WHERE order_id = $1", order["id"])
    assert "re-read 1 payment(s) from PortOne, changed 0 order(s), found 1 refund(s)" in text
    assert "closed 0 order(s) at their expiry" in text
    assert [r["status"] for r in refunds] == ["FAILED"]
    assert ("reconcile", "PAID", "PAID") in await sources(db, order["id"])
    assert (order["status"], order["refunded_amount"]) == ("PAID", 0)


@pytest.mark.parametrize(
    ("flow", "status", "state", "db_status"),
    [
        ("card", "PAID", "paid", "PAID"),
        ("declined", "FAILED", "failed", "PENDING"),
        ("tampered", "REJECTED", "rejected", "REJECTED"),
    ],
)
async def test_redirect_flow_lands_back_on_the_page_with_the_verdict(
    flow: str, status: str, state: str, db_status: str, page: Page, db: asyncpg.Connection
) -> None:
    await page.check("#mobile")

    await pay(page, flow)

    await expect(page.locator("#verdict")).to_contain_text("Back from PortOne's payment window")
    text = await shown(page, state)
    order = await order_on_screen(page, db)
    assert text.startswith("Back from PortOne's payment window (redirect).")
    await expect(timeline(page, "page", "PortOne.requestPayment → redirect")).to_have_count(1)
    await expect(timeline(page, "page", f"status {status}")).to_have_count(1)
    await expect(page.locator("#mobile")).to_be_checked()
    assert order["status"] == db_status


async def test_a_reload_after_the_redirect_flow_neither_lands_again_nor_brings_the_order_back(
    page: Page, base_url: str
) -> None:
    await page.check("#mobile")
    await pay(page, "card")
    await expect(page.locator("#verdict")).to_contain_text("Back from PortOne's payment window")
    order_id = await page.locator("#order-id").inner_text()
    assert page.url == base_url + "/"

    await page.reload()

    await expect(page.locator("#order")).to_be_hidden()
    await expect(page.locator("#result")).to_have_attribute("data-state", "idle")
    steps = await page.evaluate("(id) => sessionStorage.getItem(`steps:${id}`)", order_id)
    assert steps.count("back from GET /payments/return") == 1


async def test_buttons_are_disabled_while_a_payment_runs(
    page: Page, db: asyncpg.Connection
) -> None:
    release = asyncio.Event()

    async def held(route: Route) -> None:
        await release.wait()
        await route.continue_()

    await page.route("**/sandbox/checkout", held)

    await page.dblclick("#pay-card")

    for flow in FLOWS:
        await expect(page.locator(flow)).to_be_disabled()
    await expect(page.locator("#mobile")).to_be_disabled()
    await expect(page.locator("#confirm-manual")).to_be_disabled()
    release.set()
    await shown(page, "paid")
    for flow in FLOWS:
        await expect(page.locator(flow)).to_be_enabled()
    assert await db.fetchval("SELECT count(*) FROM orders") == 1


async def test_korean_failure_reasons_of_older_payments_are_shown_in_english(
    page: Page, base_url: str, db: asyncpg.Connection
) -> None:
    reason = "카드 한도 초과"  # what older sandbox data holds
    async with httpx.AsyncClient(base_url=base_url) as shop:
        order = (await shop.post("/sandbox/checkout")).json()
        failed = await shop.post(
            f"/sandbox/payments/{order['paymentId']}/fail", json={"reason": reason}
        )
        assert failed.status_code == 200, failed.text

    await page.goto(
        f"{base_url}/payments/return?paymentId={order['paymentId']}"
        f"&code=FAILURE_TYPE_PG&message={reason}"
    )

    text = await shown(page, "failed")
    await expect(timeline(page, "webhook").first).to_be_visible()
    assert "Payment failed (FAILURE_TYPE_PG): The card issuer declined the payment" in text
    assert not HANGUL.search(await page.locator("main").inner_text())
    assert (await order_row(db, order["orderId"]))["status"] == "PENDING"
