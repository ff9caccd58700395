"""What must hold of the money after the chaos: refunds, compensations, and PortOne's
cancellations each claimed once, against PortOne's final state (the stand-in's)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import asyncpg

COMPENSATION_REASON = "payment failed verification"

Found = defaultdict[str, list[str]]  # the problems found, by the name of their check
Payments = dict[str, dict[str, Any]]  # PortOne's payments, by id, as the stand-in shows them


def check_money(
    found: Found, order: asyncpg.Record, payment: dict[str, Any] | None, cancelled: int
) -> None:
    oid = order["id"]
    writes = payment["apiWrites"] if payment else []
    compensations = [
        w for w in writes if w["kind"] == "close" or w["reason"].startswith(COMPENSATION_REASON)
    ]
    # What undid the payment: a cancellation PortOne took (or holds), or the account closed.
    undone = [w for w in compensations if w["status"] in ("SUCCEEDED", "REQUESTED")]
    if order["status"] == "REJECTED" and payment is not None:
        # A paid 0 has nothing to cancel (an issued account of 0 is still closed).
        nothing_to_undo = payment["total"] == 0 and order["compensation_status"] == "DONE"
        visibly_owed = order["compensation_status"] in ("OWED", "REQUESTED")
        if len(undone) > 1 or (not undone and not nothing_to_undo and not visibly_owed):
            found["rejected payments not cancelled exactly once"].append(
                f"{oid}: {len(undone)} cancels ({len(compensations)} sent), compensation"
                f" {order['compensation_status']}, PortOne {payment['status']}"
                f" {payment['total']} {payment['currency']}",
            )
    elif compensations and not (
        # A virtual account issued for an order the shop closed is closed too.
        order["status"] == "CANCELLED" and all(w["kind"] == "close" for w in compensations)
    ):
        found["cancels of payments that were not rejected"].append(f"{oid}: {compensations}")
    # A rejected payment's refundedAmount mirrors PortOne's, whatever was tampered.
    beyond_order = order["status"] != "REJECTED" and order["refunded_amount"] > order["amount"]
    if payment is not None and (cancelled > payment["total"] or beyond_order):
        found["refunds beyond what was paid"].append(f"{oid}: {cancelled} of {payment['total']}")


def check_refunds(
    found: Found, payments: Payments, refunds: list[asyncpg.Record], keyed_reasons: set[str]
) -> None:
    made: Counter[str] = Counter()  # money PortOne gave back, by refund reason
    taken: Counter[str] = Counter()  # … or holds to give back
    held: dict[str, str] = {}  # PortOne's status of each cancellation, by its id
    for payment in payments.values():
        for write in payment["apiWrites"]:
            made[write["reason"]] += write["status"] == "SUCCEEDED"
            taken[write["reason"]] += write["status"] in ("SUCCEEDED", "REQUESTED")
            held[write["id"]] = write["status"]
    for reason in keyed_reasons:
        if taken[reason] > 1:
            found["refunds per Idempotency-Key beyond one"].append(
                f"{reason}: {taken[reason]} cancels"
            )
    recorded: Counter[str] = Counter(r["reason"] for r in refunds if r["status"] == "SUCCEEDED")
    for reason, count in recorded.items():
        if count > made[reason]:
            found["refunds recorded that PortOne never made"].append(
                f"{reason}: {count} SUCCEEDED rows, {made[reason]} cancellations at PortOne"
            )
    for refund in refunds:
        at_portone = held.get(refund["cancellation_id"] or "")
        if at_portone is not None and at_portone != refund["status"]:
            found["refunds not ending with the status PortOne holds"].append(
                f"{refund['id']} ({refund['reason']}): {refund['status']}, PortOne {at_portone}"
            )


def check_claims(
    found: Found, payments: Payments, orders: list[asyncpg.Record], refunds: list[asyncpg.Record]
) -> None:
    """A PortOne cancellation is one refund's or one compensation's, never two; and where
    every refund of an order is settled, what they say was refunded is what PortOne gave
    back for them."""
    claims = Counter(r["cancellation_id"] for r in refunds if r["cancellation_id"])
    claims.update(
        o["compensation_cancellation_id"] for o in orders if o["compensation_cancellation_id"]
    )
    for cancellation_id, count in claims.items():
        if count > 1:
            found["cancellations claimed twice"].append(f"{cancellation_id}: {count} claims")
    by_order: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for refund in refunds:
        by_order[refund["order_id"]].append(refund)
    for order in orders:
        mine = by_order.get(order["id"], [])
        payment = payments.get(order["payment_id"])
        if (
            not mine
            or payment is None
            or any(r["status"] not in ("SUCCEEDED", "FAILED") for r in mine)
        ):
            continue
        recorded = sum(r["amount"] for r in mine if r["status"] == "SUCCEEDED")
        given = sum(
            w["amount"]
            for w in payment["apiWrites"]
            if w["kind"] == "cancel"
            and w["status"] == "SUCCEEDED"
            and not w["reason"].startswith(COMPENSATION_REASON)
        )
        if recorded != given:
            found["refunds recorded unlike what PortOne gave back"].append(
                f"{order['id']}: {recorded} recorded SUCCEEDED, PortOne gave back {given}"
            )


def check_held_refunds(
    found: Found,
    held: dict[str, bool],
    orders: list[asyncpg.Record],
    refunds: list[asyncpg.Record],
) -> None:
    """Refunds PortOne held, then refused at the end (no webhook, no change of status),
    are settled after as many passes as the reconciler's longest list needs: the payments
    PortOne holds for good, however many, do not keep the rest out of every pass."""
    payment_of = {order["id"]: order["payment_id"] for order in orders}
    for refund in refunds:
        payment_id = payment_of[refund["order_id"]]
        if held.get(payment_id) is False and refund["status"] == "REQUESTED":
            found["held refunds unsettled after enough passes"].append(
                f"{refund['id']} of {payment_id}: REQUESTED, PortOne refused it"
            )
