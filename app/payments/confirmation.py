"""Manual confirmation (PortOne's 수동 승인): on such a channel the browser's payment
window ends with a `paymentToken` and no money moved; PortOne charges the payment only
when this service confirms it with the order's own terms, so PortOne itself refuses a
tampered amount and nothing is charged or refunded for it.

The confirm call is made with no transaction open and no row lock held. Calls for one
payment and token share the confirmation in flight, up to its outcome applied; PortOne's
`Idempotency-Key`, derived from both, makes it one confirmation across processes and
retries. Whatever PortOne then holds is read afresh and applied through the one path,
like any completion.

Anyone who knows a paymentId can send a token, and each new token is a call to PortOne:
a process confirms one payment once at a time, so tokens made up by the thousand cost
PortOne one call at a time, not a thousand at once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.errors import PaymentNotConfirmed
from app.orders.order import Order
from app.payments.single_flight import SingleFlight
from app.payments.sync import Observation, PaymentSync, Source
from app.portone.client import PortOneClient
from app.portone.errors import PaymentNotFound, PortOneApiError

ALREADY_PAID = "ALREADY_PAID"


def confirmation_key(payment_id: str, payment_token: str) -> str:
    """The same for every retry of one confirmation; another token (the customer paid
    again) is another confirmation."""
    token = hashlib.sha256(payment_token.encode()).hexdigest()[:32]
    return f"confirm-{payment_id}-{token}"


class Confirmation:
    def __init__(
        self, portone: PortOneClient, sync: PaymentSync, *, accept_test_payments: bool
    ) -> None:
        self._portone = portone
        self._sync = sync
        # Accepting test payments accepts live ones too: then PortOne checks neither.
        self._is_test = None if accept_test_payments else False
        # Only joins a confirmation in flight: its outcome is never reused later.
        self._flights = SingleFlight[Observation](lambda _: False)
        # A payment's turn to be confirmed, and how many confirmations wait for it.
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}

    async def confirm(self, order: Order, payment_token: str, tx_id: str | None) -> Observation:
        """Ask PortOne to charge the payment on the order's terms, then apply what PortOne
        holds to the order (as it was read: `order`). Raises `PaymentNotConfirmed` when
        PortOne refuses (no money moved), and PortOne's other errors; a payment PortOne
        already charged is no refusal."""
        key = confirmation_key(order.payment_id, payment_token)

        async def confirm_once() -> Observation:
            async with self._turn(order.payment_id):
                return await self._confirm(order, payment_token, tx_id, key)

        return await self._flights.shared(key, confirm_once)

    @asynccontextmanager
    async def _turn(self, payment_id: str) -> AsyncIterator[None]:
        lock, waiting = self._turns.get(payment_id, (asyncio.Lock(), 0))
        self._turns[payment_id] = (lock, waiting + 1)
        try:
            async with lock:
                yield
        finally:
            lock, waiting = self._turns[payment_id]
            if waiting == 1:
                del self._turns[payment_id]
            else:
                self._turns[payment_id] = (lock, waiting - 1)

    async def _confirm(
        self, order: Order, payment_token: str, tx_id: str | None, key: str
    ) -> Observation:
        try:
            await self._portone.confirm_payment(
                order.payment_id,
                payment_token=payment_token,
                tx_id=tx_id,
                total_amount=order.amount,
                currency=order.currency,
                is_test=self._is_test,
                idempotency_key=key,
            )
        except PaymentNotFound:
            raise
        except PortOneApiError as exc:
            if exc.type != ALREADY_PAID:
                raise PaymentNotConfirmed(
                    f"PortOne refused to confirm the payment: {exc.message}", reason=exc.type
                ) from None
        # Afresh: a read from before the confirmation must not answer for it.
        return await self._sync.sync(order.payment_id, Source.COMPLETE, order, fresh=True)
