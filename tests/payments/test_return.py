"""`GET /payments/return`: the redirect flow lands the customer on the order's own
returnUrl, after the same verification as `/payments/complete`, and nowhere else."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from app.config import Settings
from tests.helpers import INTERNAL, complete, create_order, make_settings, portone_returns
from tests.problem_details import assert_validation_failed

SHOP = "https://shop.example/thanks?cart=7"


async def land(client: httpx.AsyncClient, **query: str) -> httpx.Response:
    return await client.get("/payments/return", params=query)


def landed(response: httpx.Response) -> tuple[str, dict[str, list[str]]]:
    assert response.status_code == 303, response.text
    location = urlsplit(response.headers["location"])
    return f"{location.scheme}://{location.netloc}{location.path}", parse_qs(location.query)


async def test_a_paid_payment_lands_on_the_orders_return_url_with_its_status(
    client: httpx.AsyncClient, portone: respx.MockRouter
) -> None:
    order = await create_order(client, returnUrl=SHOP)
    fetched = portone_returns(portone, order["paymentId"])

    where, query = landed(await land(client, paymentId=order["paymentId"], txId="tx-1"))

    assert where == "https://shop.example/thanks"
    assert query == {
        "cart": ["7"],
        "orderId": [order["orderId"]],
        "paymentId": [order["paymentId"]],
        "status": ["PAID"],
    }
    assert fetched.call_count == 1
    stored = await client.get(f"/orders/{order['orderId']}", headers=INTERNAL)
    assert stored.json()["status"] == "PAID"


async def test_a_failure_lands_as_failed_with_the_code_and_portones_own_message(
    client: httpx.AsyncClient, portone: respx.MockRouter
) -> None:
    order = await create_order(client, returnUrl=SHOP)
    fetched = portone_returns(portone, order["paymentId"], status="FAILED")

    _, query = landed(
        await land(
            client, paymentId=order["paymentId"], code="FAILURE_TYPE_PG", message="call 070-…"
        )
    )

    assert query["status"] == ["FAILED"]
    assert query["code"] == ["FAILURE_TYPE_PG"]
    assert query["message"] == ["카드 한도 초과"]  # PortOne's failure.reason
    assert fetched.call_count == 1


async def test_a_code_for_a_payment_portone_does_not_hold_failed_carries_no_message(
    client: httpx.AsyncClient, portone: respx.MockRouter
) -> None:
    order = await create_order(client, returnUrl=SHOP)
    portone_returns(portone, order["paymentId"], status="READY")

    _, query = landed(
        await land(client, paymentId=order["paymentId"], code="PG_ERROR", message="forged")
    )

    assert query["status"] == ["FAILED"]
    assert query["code"] == ["PG_ERROR"]
    assert "message" not in query


async def test_a_paid_order_lands_paid_whatever_code_and_message_the_query_carries(
    client: httpx.AsyncClient, portone: respx.MockRouter
) -> None:
    order = await create_order(client, returnUrl=SHOP)
    portone_returns(portone, order["paymentId"])
    assert (await complete(client, order["paymentId"])).status_code == 200

    _, query = landed(
        await land(
            client,
            paymentId=order["paymentId"],
            code="X",
            message="Your card was charged twice, call 070-0000-0000",
        )
    )

    assert query["status"] == ["PAID"]
    assert "code" not in query
    assert "message" not in query


@pytest.mark.parametrize(
    "code",
    ["lower_case", "A" * 65, "WITH SPACE", "<script>", "CODE\n", "코드", ""],
)
async def test_a_code_that_is_not_a_safe_token_is_dropped(
    client: httpx.AsyncClient, portone: respx.MockRouter, code: str
) -> None:
    order = await create_order(client, returnUrl=SHOP)
    portone_returns(portone, order["paymentId"], status="FAILED")

    _, query = landed(await land(client, paymentId=order["paymentId"], code=code))

    assert query["status"] == ["FAILED"]
    assert "code" not in query


async def test_a_failure_while_portone_is_away_lands_failed_without_a_message(
    client: httpx.AsyncClient, portone: respx.MockRouter
) -> None:
    order = await create_order(client, returnUrl=SHOP)
    portone.get(f"/payments/{order['paymentId']}").respond(503)

    _, query = landed(
        await land(client, paymentId=order["paymentId"], code="FAILURE_TYPE_PG", message="x")
    )

    assert (query["status"], query["code"]) == (["FAILED"], ["FAILURE_TYPE_PG"])
    assert "message" not in query


@pytest.mark.parametrize(
    "attempt",
    [
        {"returnUrl": "https://evil.example/"},
        {"redirectUrl": "https://evil.example/"},
        {"next": "//evil.example"},
        {"orderId": "ord_of_someone_else", "status": "PAID"},
    ],
)
async def test_the_landing_is_only_ever_the_stored_return_url(
    client: httpx.AsyncClient, portone: respx.MockRouter, attempt: dict[str, str]
) -> None:
    order = await create_order(client, returnUrl=SHOP)
    portone_returns(portone, order["paymentId"], status="READY")

    where, query = landed(await land(client, paymentId=order["paymentId"], **attempt))

    assert where == "https://shop.example/thanks"
    assert query["orderId"] == [order["orderId"]]
    assert query["status"] == ["PENDING"]


async def test_an_order_without_a_return_url_gets_a_page_saying_what_happened(
    client: httpx.AsyncClient, portone: respx.MockRouter
) -> None:
    order = await create_order(client)
    portone_returns(portone, order["paymentId"])

    page = await land(client, paymentId=order["paymentId"])

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Payment verified" in page.text
    assert order["orderId"] in page.text


async def test_an_unknown_payment_is_a_404_page_without_a_portone_call(
    client: httpx.AsyncClient, portone: respx.MockRouter
) -> None:
    route = portone.route()

    page = await land(client, paymentId="pay_nobody<script>")

    assert page.status_code == 404
    assert "<script>" not in page.text
    assert not route.called


async def test_a_return_without_a_payment_id_is_a_validation_failure(
    client: httpx.AsyncClient,
) -> None:
    assert_validation_failed(await land(client), "query.paymentId")


@pytest.mark.parametrize(
    "url",
    [
        "http://shop.example/",
        "javascript:alert(1)",
        "/thanks",
        "ftp://shop.example/",
        "https://user:secret@shop.example/",
        "https://",
    ],
)
async def test_a_return_url_that_is_not_https_or_local_http_is_refused(
    client: httpx.AsyncClient, url: str
) -> None:
    response = await client.post(
        "/orders", json={"orderName": "W", "amount": 1, "returnUrl": url}, headers=INTERNAL
    )

    assert_validation_failed(response, "body.returnUrl")


@pytest.mark.parametrize("url", ["https://shop.example/r", "http://localhost:3000/r"])
async def test_an_https_or_local_http_return_url_is_kept(
    client: httpx.AsyncClient, url: str
) -> None:
    order = await create_order(client, returnUrl=url)

    assert order["returnUrl"] == url


class TestCheckout:
    @pytest.fixture
    def settings(self, database_url: str) -> Settings:
        return make_settings(
            database_url,
            portone_channel_key=None,
            public_base_url="https://payments.example.com/",
        )

    async def test_checkout_leaves_out_what_has_no_value_and_carries_the_redirect(
        self, client: httpx.AsyncClient
    ) -> None:
        order: dict[str, Any] = await create_order(client)

        assert "channelKey" not in order["checkout"]
        assert order["checkout"]["redirectUrl"] == "https://payments.example.com/payments/return"
        assert order["checkout"]["currency"] == "KRW"
