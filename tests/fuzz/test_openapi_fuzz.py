"""Schemathesis over the service's own OpenAPI, in-process, with the sandbox's emulated
PortOne answering the production client.

Bounded and derandomized for CI. `FUZZ_SEED=<n>` runs other examples (seeded),
`FUZZ_MAX_EXAMPLES=<n>` runs more of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from schemathesis import BaseSchema
from schemathesis.python import asgi

from app.main import create_app
from tests.emulated_portone import EmulatedPortOne
from tests.fuzz import api_fuzz
from tests.fuzz.api_fuzz import Known
from tests.helpers import TOKEN, make_settings, mocked_portone

pytestmark = pytest.mark.slow

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
SEED = int(os.environ["FUZZ_SEED"]) if os.environ.get("FUZZ_SEED") else None

# Collected from the app's OpenAPI without starting it: one test per operation and pass.
_STATIC = api_fuzz.prepared(
    schemathesis.openapi.from_dict(
        create_app(make_settings("postgresql+asyncpg://unused@127.0.0.1/unused")).openapi(),
        config=api_fuzz.CONFIG,
    )
)
PLAN = api_fuzz.plan(_STATIC)


@pytest.fixture(scope="module")
def emulated() -> Iterator[EmulatedPortOne]:
    with mocked_portone() as router:
        yield EmulatedPortOne(router)


@pytest.fixture(scope="module")
def served(database_url: str, emulated: EmulatedPortOne) -> Iterator[tuple[BaseSchema, Known]]:
    """The schema as the running app serves it, and orders in each interesting state."""
    app = create_app(make_settings(database_url))
    # Loading the schema starts the app.
    schema = api_fuzz.prepared(
        schemathesis.openapi.from_asgi("/openapi.json", app, config=api_fuzz.CONFIG)
    )
    try:
        with asgi.get_client(app) as client:  # type: ignore[arg-type]
            orders = api_fuzz.seed_orders(client.post, TOKEN, count=4)
            emulated.pay(orders[1])
            emulated.pay(orders[2], method="VIRTUAL_ACCOUNT")
            emulated.fail(orders[3])
            pending, paid, awaiting, failed = (order["paymentId"] for order in orders)
            for payment_id in (paid, awaiting):
                response = client.post("/payments/complete", json={"paymentId": payment_id})
                assert response.status_code == 200, response.text
        known = Known(
            order_ids=[order["orderId"] for order in orders],
            payment_ids=[pending, paid, awaiting, failed],
        )
        yield schema, known
    finally:
        asgi.shutdown_lifespans()


@pytest.mark.parametrize(("label", "pass_name"), PLAN, ids=[f"{p}:{o}" for o, p in PLAN])
def test_operation(
    served: tuple[BaseSchema, Known], emulated: EmulatedPortOne, label: str, pass_name: str
) -> None:
    schema, known = served
    operation = api_fuzz.find(schema, label)
    with asgi.get_client(schema.app) as session:  # the app the schema was loaded from
        api_fuzz.fuzz(
            operation,
            pass_name,
            session=session,
            token=TOKEN,
            known=known,
            max_examples=MAX_EXAMPLES,
            seed=SEED,
        )


def test_every_served_operation_is_fuzzed(served: tuple[BaseSchema, Known]) -> None:
    schema, _ = served
    served_labels = {operation.label for operation in api_fuzz.operations(schema)}
    planned = {label for label, _ in PLAN}
    assert served_labels == planned
    for label in served_labels:
        assert (label, "positive") in PLAN
