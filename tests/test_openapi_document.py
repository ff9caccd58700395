"""The OpenAPI document tells the whole truth: every rule a validator enforces is in it, and
what it admits is accepted (the fuzz tests hold every operation to that; these pin the
cases that were once refused)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import respx
from fastapi import FastAPI

from app.orders.schemas import RETURN_URL
from tests.helpers import INTERNAL, create_order
from tests.problem_details import assert_validation_failed
from tests.refunds.portone_refunds import paid_order, refund


def schema_of(app: FastAPI, name: str) -> dict[str, Any]:
    schema: dict[str, Any] = app.openapi()["components"]["schemas"][name]
    return schema


def nullable(property_schema: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of an `anyOf` with null."""
    branches = property_schema.get("anyOf", [property_schema])
    [kept] = [branch for branch in branches if branch.get("type") != "null"]
    return dict(kept)


async def test_an_integral_number_is_the_integer_json_schema_says_it_is(
    client: httpx.AsyncClient, portone: respx.MockRouter
) -> None:
    made = await create_order(client, amount=10_000.0)  # type: ignore[arg-type]
    assert made["amount"] == 10_000
    order, payment = await paid_order(client, portone)

    answer = await refund(client, order["orderId"], "refund-1", amount=3_000.0)

    assert answer.status_code == 200, answer.text
    assert answer.json()["refundedAmount"] == 3_000
    assert payment.sent[0]["amount"] == 3_000


async def test_text_without_nul_is_stated_and_enforced(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    pattern = schema_of(app, "OrderCreate")["properties"]["orderName"]["pattern"]
    assert not re.search(pattern, "Waffle\x00trainer")
    assert re.search(pattern, "Waffle trainer")

    response = await client.post(
        "/orders", json={"orderName": "Waffle\x00trainer", "amount": 1}, headers=INTERNAL
    )

    assert_validation_failed(response, "body.orderName")


async def test_the_return_url_rule_is_the_documents_pattern(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    stated = nullable(schema_of(app, "OrderCreate")["properties"]["returnUrl"])
    assert stated["pattern"] == RETURN_URL

    for refused in ("0", "http://shop.example/", "https://u:p@shop.example/", "https://a/ b"):
        response = await client.post(
            "/orders", json={"orderName": "W", "amount": 1, "returnUrl": refused}, headers=INTERNAL
        )
        assert not re.search(stated["pattern"], refused), refused
        assert_validation_failed(response, "body.returnUrl")


async def test_a_forged_cursor_is_a_validation_failure_the_document_lists(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    operation = app.openapi()["paths"]["/orders"]["get"]
    [cursor] = [p for p in operation["parameters"] if p["name"] == "cursor"]
    assert "nextCursor" in cursor["description"]
    assert "422" in operation["responses"]

    response = await client.get("/orders", params={"cursor": "AAAA"}, headers=INTERNAL)

    assert_validation_failed(response, "query.cursor")


async def test_a_method_a_path_does_not_take_is_answered_with_every_method_it_does(
    client: httpx.AsyncClient,
) -> None:
    response = await client.request("OPTIONS", "/orders", headers=INTERNAL)

    assert response.status_code == 405
    assert sorted(response.headers["allow"].split(", ")) == ["GET", "POST"]


def test_the_webhooks_signature_headers_are_declared(app: FastAPI) -> None:
    operation = app.openapi()["paths"]["/webhooks/portone"]["post"]
    declared = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}

    assert set(declared) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert all(p["required"] for p in declared.values())
    assert declared["webhook-signature"]["schema"]["maxLength"] == 4096


def test_every_operation_with_a_body_declares_its_size_refusal(app: FastAPI) -> None:
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation and not path.startswith("/sandbox"):
                assert "413" in operation["responses"], f"{method.upper()} {path}"
