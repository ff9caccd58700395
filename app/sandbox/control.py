"""The sandbox's customer, PortOne's console and the card company: pay, deposit, fail,
cancel, settle a cancellation, dispute."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import Field, StrictInt

from app.deps import SyncDep
from app.payments.sync import PaymentSync
from app.problems import problem_responses
from app.sandbox.payments import EmulatedPayment, PaymentRequest
from app.sandbox.state import sandbox_of
from app.schemas import INTEGRAL, StrictApiModel
from app.text import Text

# The emulator refuses what PortOne would (404 unknown payment, 409 wrong state).
router = APIRouter(
    prefix="/sandbox",
    tags=["sandbox: customer and console"],
    responses=problem_responses(404, 409),
)

PaymentId = Annotated[Text, Path(min_length=1, max_length=200)]


class Pay(StrictApiModel):
    method: Literal["CARD", "VIRTUAL_ACCOUNT"] = "CARD"
    amount: Annotated[StrictInt, Field(ge=0, le=10**12), INTEGRAL] | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    channel_type: Literal["LIVE", "TEST"] = "LIVE"
    confirm: Annotated[
        Literal["AUTO", "MANUAL"],
        Field(
            description="MANUAL: a channel with manual confirmation; the payment stays READY"
            " and the answer carries its `paymentToken` until the service confirms it."
        ),
    ] = "AUTO"


class Fail(StrictApiModel):
    reason: Annotated[Text, Field(min_length=1, max_length=200)] = "card limit exceeded (sandbox)"


class ConsoleCancel(StrictApiModel):
    amount: Annotated[StrictInt, Field(ge=1, le=10**12), INTEGRAL] | None = None


class NextCancellation(StrictApiModel):
    status: Literal["REQUESTED", "FAILED"]


class Settle(StrictApiModel):
    status: Literal["SUCCEEDED", "FAILED"]


class DisputeChange(StrictApiModel):
    status: Literal["UNRESOLVED", "RESOLVED"]
    reason: Annotated[Text, Field(min_length=1, max_length=200)] = "the cardholder disputes it"


@router.post("/payments/{payment_id}/pay")
async def pay(
    payment_id: PaymentId, request: Request, sync: SyncDep, body: Pay | None = None
) -> JSONResponse:
    """The customer pays; another amount or currency than the order's is a tampered payment."""
    payment_request = await _attempt(sync, payment_id, body or Pay())
    payment, webhooks = sandbox_of(request).emulator.pay(payment_request)
    await sandbox_of(request).changed(payment, webhooks)
    answer = payment.body()
    if payment.payment_token is not None:
        answer["paymentToken"] = payment.payment_token
    return JSONResponse(answer)


@router.post("/payments/{payment_id}/deposit")
async def deposit(payment_id: PaymentId, request: Request) -> JSONResponse:
    """The customer transfers the money to the issued virtual account."""
    return await _changed(request, *sandbox_of(request).emulator.deposit(payment_id))


@router.post("/payments/{payment_id}/fail")
async def fail(
    payment_id: PaymentId, request: Request, sync: SyncDep, body: Fail | None = None
) -> JSONResponse:
    """The payment attempt fails (a declined card, a closed window)."""
    payment_request = await _attempt(sync, payment_id, Pay())
    emulator = sandbox_of(request).emulator
    return await _changed(request, *emulator.fail(payment_request, (body or Fail()).reason))


@router.post("/payments/{payment_id}/cancel")
async def console_cancel(
    payment_id: PaymentId, request: Request, body: ConsoleCancel | None = None
) -> JSONResponse:
    """A cancellation made in PortOne's console, partial when `amount` is given."""
    payment, _, webhooks = sandbox_of(request).emulator.cancel(
        payment_id, amount=(body or ConsoleCancel()).amount, reason="cancelled in the console"
    )
    return await _changed(request, payment, webhooks)


@router.post("/payments/{payment_id}/cancellations/next")
async def next_cancellation(
    payment_id: PaymentId, body: NextCancellation, request: Request
) -> JSONResponse:
    """PortOne answers the next cancellation of this payment (a refund, a compensation)
    REQUESTED (settled later) or FAILED, instead of SUCCEEDED."""
    payment = sandbox_of(request).emulator.answer_next_cancellation(payment_id, body.status)
    return await _changed(request, payment, [])


@router.post("/payments/{payment_id}/cancellations/{cancellation_id}/settle")
async def settle(
    payment_id: PaymentId,
    cancellation_id: Annotated[Text, Path(min_length=1, max_length=200)],
    body: Settle,
    request: Request,
) -> JSONResponse:
    """PortOne settles a REQUESTED cancellation: its webhook when it SUCCEEDED (PortOne
    sends none for a FAILED one)."""
    emulator = sandbox_of(request).emulator
    return await _changed(request, *emulator.settle(payment_id, cancellation_id, body.status))


@router.post("/payments/{payment_id}/dispute")
async def dispute(payment_id: PaymentId, body: DisputeChange, request: Request) -> JSONResponse:
    """The card company opens a dispute (UNRESOLVED) or resolves the open one, with the
    webhook PortOne sends."""
    emulator = sandbox_of(request).emulator
    return await _changed(request, *emulator.dispute(payment_id, body.status, body.reason))


async def _changed(request: Request, payment: EmulatedPayment, webhooks: list[str]) -> JSONResponse:
    await sandbox_of(request).changed(payment, webhooks)
    return JSONResponse(payment.body())


async def _attempt(sync: PaymentSync, payment_id: str, body: Pay) -> PaymentRequest:
    """What the customer's browser asks PortOne for: the order's terms unless tampered."""
    order = await sync.order_of(payment_id)
    return PaymentRequest(
        payment_id=payment_id,
        order_name=order.order_name,
        amount=order.amount if body.amount is None else body.amount,
        currency=body.currency or order.currency,
        method=body.method,
        channel_type=body.channel_type,
        manual=body.confirm == "MANUAL",
    )
