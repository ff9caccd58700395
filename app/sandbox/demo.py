"""The demo shop: its checkout page at `/`, and the few calls its backend would make for
it (the page never holds the internal token, as a shop's page never would)."""

from __future__ import annotations

from dataclasses import asdict
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from app.deps import OrdersDep, OutboxEventsDep, ReconcilerDep, RefundsDep, SettingsDep
from app.orders.router import OrderId
from app.orders.schemas import HistoryEntryOut, OrderCreate, OrderOut
from app.problems import problem_responses
from app.refunds.schemas import RefundAmount, RefundRequest
from app.sandbox.state import sandbox_of
from app.schemas import ApiModel, StrictApiModel

router = APIRouter(prefix="/sandbox", tags=["sandbox: the demo shop"])
PAGE = files(__package__).joinpath("demo.html")
ASSETS = "/sandbox/assets"  # the page's script and style, from the package's assets/
ICON = files(__package__).joinpath("favicon.svg")
PRODUCT = {"order_name": "Waffle trainer 2", "amount": 10_000}


async def demo_page() -> HTMLResponse:
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))


async def favicon() -> Response:
    return Response(ICON.read_bytes(), media_type="image/svg+xml")


@router.post("/checkout", status_code=201)
async def checkout(orders: OrdersDep, settings: SettingsDep) -> OrderOut:
    """The shop's backend creating the order; the redirect flow comes back to this page at
    PUBLIC_BASE_URL (never at an address built from the request's Host) when that may be a
    `returnUrl` (https, or http on localhost), else it ends on the service's own landing
    page."""
    try:
        page = None if settings.public_base_url is None else str(settings.public_base_url)
        product = OrderCreate(**PRODUCT, return_url=page)
    except ValidationError:
        product = OrderCreate(**PRODUCT)
    order, _ = await orders.create(product, idempotency_key=None)
    return OrderOut.present(order, settings)


class Timeline(ApiModel):
    """Everything the service decided about an order, what it asked PortOne, and the
    payment as the emulated PortOne holds it (what PortOne's console would show; the
    page finds a held cancellation there to settle it)."""

    order: OrderOut
    history: list[HistoryEntryOut]
    order_events: list[dict[str, Any]]
    portone_calls: list[dict[str, Any]]
    portone_payment: dict[str, Any] | None


@router.get("/orders/{order_id}", responses=problem_responses(404))
async def timeline(
    order_id: OrderId,
    request: Request,
    orders: OrdersDep,
    outbox: OutboxEventsDep,
    settings: SettingsDep,
) -> Timeline:
    """The order, its history, the order events for the shop and PortOne's calls."""
    order = await orders.get(order_id)
    history = await orders.history(order_id)
    events = await outbox.of_order(order_id)
    sandbox = sandbox_of(request)
    payment = sandbox.emulator.payments.get(order.payment_id)
    return Timeline(
        order=OrderOut.present(order, settings),
        history=[HistoryEntryOut.model_validate(dict(entry)) for entry in history],
        order_events=[
            {"type": e.type, "state": e.state, "createdAt": e.created_at} for e in events
        ],
        portone_calls=list(sandbox.calls.get(order.payment_id, [])),
        portone_payment=None if payment is None else payment.body(),
    )


class DemoRefund(StrictApiModel):
    amount: RefundAmount | None = None


@router.post("/orders/{order_id}/refund", responses=problem_responses(404, 409, 422, 502))
async def refund(
    order_id: OrderId,
    refunds: RefundsDep,
    settings: SettingsDep,
    response: Response,
    body: DemoRefund | None = None,
) -> OrderOut:
    """The shop's backend refunding: 200 once PortOne's cancellation SUCCEEDED, 202 while
    PortOne holds it (settle it with the sandbox's cancellation control)."""
    request = RefundRequest(amount=(body or DemoRefund()).amount, reason="refunded from the demo")
    outcome = await refunds.refund(order_id, request, idempotency_key=None)
    if not outcome.settled:
        response.status_code = 202
    return OrderOut.present(outcome.order, settings)


class ReconcilerPass(ApiModel):
    checked: int
    changed: int
    settled: int  # refunds, and compensations PortOne held, that it found settled
    failed: int
    compensated: int
    closed: int  # orders closed at their expiry
    skipped: bool  # another pass was running


@router.post("/reconcile")
async def reconcile(reconciler: ReconcilerDep) -> ReconcilerPass:
    """One reconciler pass now, as `python -m app reconcile` runs it, rather than at its
    next beat (RECONCILE_INTERVAL_SECONDS)."""
    return ReconcilerPass(**asdict(await reconciler.run_pass()))
