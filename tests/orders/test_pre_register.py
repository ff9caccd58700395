"""`POST /orders` with PORTONE_PRE_REGISTER: PortOne learns the amount before the order exists."""

from __future__ import annotations

import json

import asyncpg
import httpx
import pytest
import respx

from app.config import Settings
from tests.helpers import INTERNAL, make_settings
from tests.portone_payloads import STORE_ID
from tests.problem_details import assert_problem

PRE_REGISTER = r"^/payments/(?P<payment_id>[^/]+)/pre-register$"
ORDER = {"orderName": "Waffle trainer 2", "amount": 10_000, "currency": "KRW"}


async def create(client: httpx.AsyncClient, **headers: str) -> httpx.Response:
    return await client.post("/orders", json=ORDER, headers=INTERNAL | headers)


async def order_count(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM orders")
    return count


class TestWhenPreRegistrationIsOn:
    @pytest.fixture
    def settings(self, database_url: str) -> Settings:
        return make_settings(database_url, portone_pre_register=True)

    async def test_amount_is_pre_registered_before_the_order_is_stored(
        self, client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
    ) -> None:
        orders_seen_by_portone: list[int] = []

        async def pre_register(request: httpx.Request, payment_id: str) -> httpx.Response:
            orders_seen_by_portone.append(await order_count(db))
            return httpx.Response(200, json={})

        route = portone.post(path__regex=PRE_REGISTER).mock(side_effect=pre_register)

        response = await create(client)

        assert response.status_code == 201, response.text
        order = response.json()
        assert route.call_count == 1
        request = route.calls.last.request
        assert request.url.path == f"/payments/{order['paymentId']}/pre-register"
        assert json.loads(request.content) == {
            "storeId": STORE_ID,
            "totalAmount": 10_000,
            "currency": "KRW",
        }
        assert orders_seen_by_portone == [0]
        row = await db.fetchrow("SELECT * FROM orders WHERE id = $1", order["orderId"])
        assert row is not None
        assert (row["payment_id"], row["status"]) == (order["paymentId"], "PENDING")
        assert order["checkout"]["paymentId"] == order["paymentId"]

    async def test_repeated_idempotency_key_does_not_pre_register_again(
        self, client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
    ) -> None:
        route = portone.post(path__regex=PRE_REGISTER).respond(200, json={})

        first = await create(client, **{"Idempotency-Key": "order-1"})
        second = await create(client, **{"Idempotency-Key": "order-1"})

        assert (first.status_code, second.status_code) == (201, 200)
        assert second.json()["paymentId"] == first.json()["paymentId"]
        assert route.call_count == 1
        assert await order_count(db) == 1

    @pytest.mark.parametrize(
        "failure",
        [
            pytest.param(httpx.Response(500), id="500"),
            pytest.param(httpx.Response(429), id="429"),
            pytest.param(httpx.ReadTimeout, id="read-timeout"),
            pytest.param(httpx.ConnectError, id="connect-error"),
        ],
    )
    async def test_portone_failing_creates_no_order_and_is_retryable(
        self,
        client: httpx.AsyncClient,
        portone: respx.MockRouter,
        db: asyncpg.Connection,
        failure: httpx.Response | type[Exception],
    ) -> None:
        route = portone.post(path__regex=PRE_REGISTER)
        if isinstance(failure, httpx.Response):
            route.mock(return_value=failure)
        else:
            route.mock(side_effect=failure)

        response = await create(client, **{"Idempotency-Key": "order-after-outage"})

        assert_problem(response, 503, "PORTONE_UNAVAILABLE")
        assert int(response.headers["Retry-After"]) > 0
        assert route.call_count == 1
        assert await order_count(db) == 0

        route.mock(return_value=httpx.Response(200, json={}), side_effect=None)
        retried = await create(client, **{"Idempotency-Key": "order-after-outage"})

        assert retried.status_code == 201, retried.text
        assert await order_count(db) == 1

    async def test_portone_refusing_the_pre_registration_creates_no_order(
        self, client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
    ) -> None:
        portone.post(path__regex=PRE_REGISTER).respond(
            409, json={"type": "ALREADY_PAID", "message": "결제가 이미 완료되었습니다."}
        )

        response = await create(client)

        assert response.status_code in (502, 503), response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert await order_count(db) == 0


async def test_without_pre_registration_portone_is_not_called(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    route = portone.post(path__regex=PRE_REGISTER).respond(200, json={})

    response = await create(client)

    assert response.status_code == 201, response.text
    assert route.call_count == 0
    assert portone.calls.call_count == 0
    assert await order_count(db) == 1
