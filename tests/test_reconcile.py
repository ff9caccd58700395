"""The reconciler repairs what the browser and the webhooks missed."""

import asyncio
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import respx

from app import metrics
from app import reconcile as app_reconcile
from app.__main__ import _or_outage, reconcile
from app.config import Settings
from app.payments import store as payments_store
from app.payments.sync import PaymentSync
from app.wiring import Services
from tests.emulated_portone import EmulatedPortOne
from tests.helpers import (
    INTERNAL,
    age_order,
    awaiting_deposit,
    create_order,
    make_settings,
    order_row,
    portone_lists,
    portone_returns,
    post_webhook,
)
from tests.portone_payloads import payment_body


async def test_missed_paid_is_repaired(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    services: Services,
) -> None:
    order = await create_order(client)
    await age_order(db, order["orderId"], minutes=5)
    portone_returns(portone, order["paymentId"])
    portone_lists(portone)

    summary = await services.reconciler().run_pass()

    assert (summary.checked, summary.changed, summary.failed) == (1, 1, 0)
    assert (await order_row(db, order["orderId"]))["status"] == "PAID"
    events = await db.fetch(
        "SELECT source FROM order_history WHERE order_id = $1", order["orderId"]
    )
    assert [e["source"] for e in events] == ["reconcile"]


async def test_young_and_old_pending_orders_are_left_alone(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    services: Services,
) -> None:
    young = await create_order(client)
    old = await create_order(client)
    await age_order(db, old["orderId"], minutes=8 * 24 * 60)
    young_route = portone_returns(portone, young["paymentId"])
    old_route = portone_returns(portone, old["paymentId"])
    portone_lists(portone)

    summary = await services.reconciler().run_pass()

    assert summary.checked == 0
    assert young_route.call_count == old_route.call_count == 0
    assert (await order_row(db, young["orderId"]))["status"] == "PENDING"


async def test_missed_deposit_is_repaired(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    services: Services,
) -> None:
    order = await create_order(client)
    issued_at = datetime.now(UTC) - timedelta(hours=2)
    route = await awaiting_deposit(client, portone, order, issued_at=issued_at)
    assert (await order_row(db, order["orderId"]))["status"] == "AWAITING_DEPOSIT"
    route.respond(200, json=payment_body(order["paymentId"], virtual_account=True))
    portone_lists(portone)

    summary = await services.reconciler().run_pass()

    assert summary.changed == 1
    assert (await order_row(db, order["orderId"]))["status"] == "PAID"


async def test_console_cancellation_is_caught_from_the_changed_payments_list(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    services: Services,
) -> None:
    order = await create_order(client)
    paid_at = datetime.now(UTC) - timedelta(hours=1)
    portone_returns(portone, order["paymentId"], status_changed_at=paid_at)
    await client.post("/payments/complete", json={"paymentId": order["paymentId"]})
    cancelled = payment_body(
        order["paymentId"],
        status="CANCELLED",
        cancelled=10_000,
        status_changed_at=paid_at + timedelta(minutes=30),
    )
    listing = portone_lists(portone, cancelled, payment_body("pay_of_someone_else"))

    summary = await services.reconciler().run_pass()

    assert summary.changed == 1
    row = await order_row(db, order["orderId"])
    assert (row["status"], row["refunded_amount"]) == ("REFUNDED", 10_000)
    query = json.loads(listing.calls.last.request.url.params["requestBody"])
    assert query["filter"]["timestampType"] == "STATUS_CHANGED_AT"
    assert query["filter"]["storeId"] == services.settings.store_id
    checkpoint = await db.fetchval("SELECT changed_until FROM reconciler_checkpoints")
    assert checkpoint is not None

    again = await services.reconciler().run_pass()
    assert (again.checked, again.changed) == (0, 0)


async def paid_then_cancelled_in_console(
    client: httpx.AsyncClient, portone: respx.MockRouter
) -> dict[str, Any]:
    """An order paid, then cancelled in PortOne's console; the webhook is lost."""
    emulated = EmulatedPortOne(portone)
    order = await create_order(client)
    emulated.pay(order)
    await client.post("/payments/complete", json={"paymentId": order["paymentId"]})
    emulated.cancel_in_console(order)
    return order


async def test_a_change_that_could_not_be_applied_is_read_again_by_the_next_pass(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order = await paid_then_cancelled_in_console(client, portone)
    apply_read = PaymentSync.apply_read

    async def fails_once(self: PaymentSync, *args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(PaymentSync, "apply_read", apply_read)
        raise ConnectionResetError("the database went away")

    monkeypatch.setattr(PaymentSync, "apply_read", fails_once)
    monkeypatch.setattr(app_reconcile, "CHANGES_OVERLAP", timedelta(0))  # no second look
    first = await services.reconciler().run_pass()
    assert (first.failed, (await order_row(db, order["orderId"]))["status"]) == (1, "PAID")

    second = await services.reconciler().run_pass()

    assert (second.failed, second.changed) == (0, 1)
    assert (await order_row(db, order["orderId"]))["status"] == "REFUNDED"


async def test_a_change_that_fails_for_a_bug_does_not_hold_up_the_changed_payments(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await paid_then_cancelled_in_console(client, portone)

    async def broken(self: PaymentSync, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("a bug")

    monkeypatch.setattr(PaymentSync, "apply_read", broken)
    summary = await services.reconciler().run_pass()

    assert summary.failed == 1
    checkpoint = await db.fetchrow("SELECT * FROM reconciler_checkpoints")
    assert checkpoint is not None
    assert (checkpoint["resume_from"], checkpoint["window_until"]) == (None, None)  # moved on


async def test_failed_webhook_is_finished_by_the_reconciler(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    services: Services,
) -> None:
    order = await create_order(client)
    route = portone.get(f"/payments/{order['paymentId']}").respond(500)
    failed = await post_webhook(client, order["paymentId"], webhook_id="msg_lost")
    assert failed.status_code == 503
    # The order is PAID at PortOne and the browser never came back; PortOne gave up.
    route.respond(200, json=payment_body(order["paymentId"]))
    portone_lists(portone)

    summary = await services.reconciler().run_pass()

    assert summary.changed == 1
    assert (await order_row(db, order["orderId"]))["status"] == "PAID"
    status = await db.fetchval(
        "SELECT status FROM webhook_deliveries WHERE webhook_id = 'msg_lost'"
    )
    assert status == "PROCESSED"


async def test_a_payment_whose_webhook_keeps_failing_does_not_hold_up_the_others(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stuck, waiting = await create_order(client), await create_order(client)
    portone.get(f"/payments/{stuck['paymentId']}").respond(500)
    late = portone.get(f"/payments/{waiting['paymentId']}").respond(500)
    for order in (stuck, waiting):
        assert (await post_webhook(client, order["paymentId"])).status_code == 503
    late.respond(200, json=payment_body(waiting["paymentId"]))
    portone_lists(portone)
    monkeypatch.setattr(app_reconcile, "ORDERS_PER_PASS", 1)

    first = await services.reconciler().run_pass()
    second = await services.reconciler().run_pass()

    assert (first.failed, second.changed) == (1, 1)
    assert (await order_row(db, waiting["orderId"]))["status"] == "PAID"


async def test_one_failing_order_does_not_stop_the_pass(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    services: Services,
) -> None:
    broken = await create_order(client)
    fine = await create_order(client)
    for order in (broken, fine):
        await age_order(db, order["orderId"], minutes=5)
    portone.get(f"/payments/{broken['paymentId']}").respond(500)
    portone_returns(portone, fine["paymentId"])
    portone_lists(portone)

    summary = await services.reconciler().run_pass()

    assert (summary.checked, summary.changed, summary.failed) == (2, 1, 1)
    assert not summary.ok
    assert (await order_row(db, fine["orderId"]))["status"] == "PAID"
    assert (await order_row(db, broken["orderId"]))["status"] == "PENDING"


async def test_two_reconcilers_at_once_do_the_work_once(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    services: Services,
) -> None:
    order = await create_order(client)
    await age_order(db, order["orderId"], minutes=5)

    async def slow_paid(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.2)
        return httpx.Response(200, json=payment_body(order["paymentId"]))

    route = portone.get(f"/payments/{order['paymentId']}").mock(side_effect=slow_paid)
    portone_lists(portone)

    first, second = await asyncio.gather(
        services.reconciler().run_pass(), services.reconciler().run_pass()
    )

    assert sorted([first.skipped, second.skipped]) == [False, True]
    assert route.call_count == 1
    assert (await order_row(db, order["orderId"]))["status"] == "PAID"


@pytest.mark.usefixtures("client")
async def test_reconcile_command_prints_a_summary_and_fails_when_the_pass_fails(
    portone: respx.MockRouter,
    settings: Settings,
    db: asyncpg.Connection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    portone.get("/payments").respond(500)

    exit_code = await reconcile(settings)

    assert exit_code == 1
    printed = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert printed == {
        "checked": 0,
        "changed": 0,
        "settled": 0,
        "failed": 1,
        "compensated": 0,
        "closed": 0,
        "skipped": False,
    }


async def test_a_backlog_larger_than_a_pass_is_read_over_passes_without_a_gap(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulated = EmulatedPortOne(portone)
    orders = [await create_order(client) for _ in range(9)]
    for order in orders:
        emulated.pay(order)
        await client.post("/payments/complete", json={"paymentId": order["paymentId"]})
    for order in orders:  # cancelled in PortOne's console; the webhooks are lost
        emulated.cancel_in_console(order)
    monkeypatch.setattr(app_reconcile, "PAGE_SIZE", 2)
    monkeypatch.setattr(app_reconcile, "PAGES_PER_PASS", 2)

    refunded, reads = [], []
    for _ in range(12):  # passes, until PortOne's list is read to its end
        listed = len(emulated.calls("GET", "/payments"))
        await services.reconciler().run_pass()
        reads.append(len(emulated.calls("GET", "/payments")) - listed)
        statuses = [(await order_row(db, o["orderId"]))["status"] for o in orders]
        refunded.append(statuses.count("REFUNDED"))
        if await db.fetchval("SELECT resume_from IS NULL FROM reconciler_checkpoints"):
            break

    assert max(reads) == 2  # two pages a pass, at most
    assert refunded[0] < 9  # a pass stops at its bound …
    assert refunded == sorted(refunded)  # … and the next goes on from there …
    assert refunded[-1] == 9  # … until nothing is left
    checkpoint = await db.fetchrow("SELECT * FROM reconciler_checkpoints")
    assert checkpoint is not None
    assert (checkpoint["resume_from"], checkpoint["window_until"]) == (None, None)
    queries = [json.loads(r.url.params["requestBody"]) for r in emulated.calls("GET", "/payments")]
    assert {q["filter"]["sortBy"] for q in queries} == {"STATUS_CHANGED_AT"}
    assert {q["filter"]["sortOrder"] for q in queries} == {"ASC"}


async def test_a_virtual_account_expired_long_ago_is_looked_at_hourly_and_never_dropped(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    services: Services,
) -> None:
    order = await create_order(client)
    expired = datetime.now(UTC) - timedelta(days=3)
    fetch = await awaiting_deposit(client, portone, order, issued_at=expired - timedelta(days=3))
    await db.execute(
        "UPDATE orders SET va_expires_at = $2 WHERE id = $1", order["orderId"], expired
    )
    portone_lists(portone)
    reads = fetch.call_count

    await services.reconciler().run_pass()
    await services.reconciler().run_pass()  # within the hour: left alone
    await db.execute(
        "UPDATE orders SET reconciled_at = now() - interval '61 minutes' WHERE id = $1",
        order["orderId"],
    )
    await services.reconciler().run_pass()

    assert fetch.call_count - reads == 2
    assert (await order_row(db, order["orderId"]))["status"] == "AWAITING_DEPOSIT"


async def test_refunds_portone_holds_are_read_in_turn_when_there_are_more_than_a_pass_takes(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulated = EmulatedPortOne(portone)
    orders = [await create_order(client) for _ in range(3)]
    for order in orders:
        emulated.pay(order)
        await client.post("/payments/complete", json={"paymentId": order["paymentId"]})
        emulated.next_cancellation(order, "REQUESTED")
        refunded = await client.post(
            f"/orders/{order['orderId']}/refund", json={"reason": "held"}, headers=INTERNAL
        )
        assert refunded.status_code == 202, refunded.text
    emulated.requests.clear()
    monkeypatch.setattr(app_reconcile, "ORDERS_PER_PASS", 1)
    counted = reconciler_reads()

    for _ in range(3):
        await services.reconciler().run_pass()

    reads = [len(emulated.calls("GET", f"/payments/{o['paymentId']}")) for o in orders]
    assert reads == [1, 1, 1]  # each in turn, none read again before the others
    assert reconciler_reads() - counted == 3  # the metric counts what PortOne received


def reconciler_reads() -> float:
    sample = metrics.REGISTRY.get_sample_value(
        "reconciler_portone_reads_total", {"what": "payment"}
    )
    return sample or 0.0


async def test_a_failed_webhook_of_a_payment_no_order_has_is_settled_without_asking_portone(
    client: httpx.AsyncClient,
    portone: respx.MockRouter,
    db: asyncpg.Connection,
    services: Services,
) -> None:
    await db.execute(
        "INSERT INTO webhook_deliveries (webhook_id, body, type, payment_id, status)"
        " VALUES ('msg_orphan', '{}', 'Transaction.Paid', 'pay_nobody', 'FAILED')"
    )
    read = portone.get("/payments/pay_nobody").respond(500)
    portone_lists(portone)

    summary = await services.reconciler().run_pass()

    assert summary.ok
    assert not read.called
    row = await db.fetchrow(
        "SELECT status, outcome FROM webhook_deliveries WHERE webhook_id = 'msg_orphan'"
    )
    assert row is not None
    assert (row["status"], row["outcome"]) == ("IGNORED", "no order has this paymentId")


@pytest.mark.slow
async def test_an_abandoned_cart_costs_portone_tens_of_reads_a_day_not_one_a_minute(
    client: httpx.AsyncClient, db: asyncpg.Connection, services: Services
) -> None:
    """A week of passes a minute apart, simulated by moving the order's clock back: the
    reconciler's own list decides when the order is due another read."""
    order = await create_order(client)
    reads: list[int] = []  # the minutes of the order's life at which it was read
    for minute in range(7 * 24 * 60 + 1):
        last = reads[-1] if reads else None
        await db.execute(
            "UPDATE orders SET created_at = now() - make_interval(mins => $2),"
            " reconciled_at = now() - make_interval(mins => $3) WHERE id = $1",
            order["orderId"],
            minute,
            None if last is None else minute - last,
        )
        if await waiting_now(db, order["paymentId"]):
            reads.append(minute)

    assert reads[:7] == [1, 2, 4, 8, 16, 32, 64]  # doubling …
    assert all(b - a == 60 for a, b in itertools.pairwise(reads[6:]))  # … then hourly
    assert len(reads) == 7 + (7 * 24 * 60 - 64) // 60 == 173  # against 10,080 a pass each


async def waiting_now(db: asyncpg.Connection, payment_id: str) -> bool:
    due = await payments_store.waiting_payment_ids(
        db,
        pending_min_age=app_reconcile.PENDING_MIN_AGE,
        pending_max_age=app_reconcile.PENDING_MAX_AGE,
        first_wait=app_reconcile.FIRST_WAIT,
        longest_wait=app_reconcile.LONGEST_WAIT,
        limit=10,
    )
    return payment_id in due


async def test_reconcile_command_says_in_one_line_that_the_database_did_not_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    unreachable = make_settings("postgresql://postgres@127.0.0.1:1/nowhere")

    exit_code = await _or_outage(reconcile(unreachable))

    assert exit_code == 1
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err.startswith("the database did not answer")
    assert "Traceback" not in printed.err
