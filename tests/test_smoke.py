import asyncpg
import httpx
import respx

from tests.helpers import create_order, order_row, portone_returns


async def test_card_payment_marks_order_paid(
    client: httpx.AsyncClient, portone: respx.MockRouter, db: asyncpg.Connection
) -> None:
    order = await create_order(client)
    portone_returns(portone, order["paymentId"])
    response = await client.post("/payments/complete", json={"paymentId": order["paymentId"]})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "PAID"
    assert (await order_row(db, order["orderId"]))["status"] == "PAID"
