"""What must hold of orders the shop closed or let expire, and of manual confirmations,
against PortOne's final state (the stand-in's): a closed order keeps no money, the
shop's cancels and the completions were answered as PortOne's money ended, and PortOne
charged nothing tampered and no token twice."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from scripts.chaos.callers import Plan, Tally
from scripts.chaos.money import COMPENSATION_REASON, Found, Payments

CLOSING_CHECKS = (
    "orders cancelled before payment keeping money",
    "cancels answered 200 leaving money kept",
    "cancels answered 409 for orders that took no money",
    "completions answered PAID that PortOne does not hold",
    "tampered manual payments charged",
    "confirmation tokens charged more than once",
    "money kept that was first seen after expiry",
)
WITH_MONEY = frozenset({"PAID", "PARTIALLY_REFUNDED", "REFUNDED"})
WITHOUT_MONEY = frozenset({"PENDING", "AWAITING_DEPOSIT", "CANCELLED"})
# An order's history is stamped when its write runs, a moment after the service decided
# on the snapshot (before the expiry, or it would have been refused).
STAMPED_WITHIN = timedelta(seconds=0.25)


def keeps_money(payment: dict[str, Any] | None) -> bool:
    """Whether PortOne still holds money for this payment: charged, and neither given back
    nor being given back (a cancellation PortOne holds REQUESTED is on its way)."""
    if payment is None or not payment["paid"]:
        return False
    if payment["status"] not in ("PAID", "PARTIAL_CANCELLED"):
        return False
    held: int = sum(w["amount"] for w in payment["apiWrites"] if w["status"] == "REQUESTED")
    cancelled: int = payment["cancelled"]
    return cancelled + held < int(payment["total"])


def check_closing(
    found: Found,
    orders: list[asyncpg.Record],
    events: list[asyncpg.Record],
    payments: Payments,
    charges: dict[str, int],
    tally: Tally,
    plans: dict[str, Plan],
) -> None:
    history: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for event in events:
        if event["from_status"] != event["to_status"]:
            history[event["order_id"]].append(event)
    for order in orders:
        oid, payment = order["id"], payments.get(order["payment_id"])
        moves = history[oid]
        shown = payment and {k: payment[k] for k in ("status", "total", "cancelled", "paid")}
        if any(e["to_status"] == "CANCELLED" for e in moves) and keeps_money(payment):
            found["orders cancelled before payment keeping money"].append(
                f"{oid}: {[e['to_status'] for e in moves]}, PortOne {shown}"
            )
        answers = tally.cancels.get(oid, [])
        if "200" in answers and keeps_money(payment):
            found["cancels answered 200 leaving money kept"].append(
                f"{oid}: cancels {answers}, {order['status']}, PortOne {shown}"
            )
        took_money = payment is not None and payment["paid"]
        refused_at = tally.refused_at.get(oid)
        took = next((e["at"] for e in moves if e["to_status"] not in WITHOUT_MONEY), None)
        if refused_at is not None and (not took_money or took is None or took > refused_at):
            found["cancels answered 409 for orders that took no money"].append(
                f"{oid}: cancels {answers}, refused {refused_at.isoformat()}, money seen"
                f" {took and took.isoformat()}, {order['status']}, PortOne {shown}"
            )
        if oid in tally.answered_paid and not _held_paid(order, payment):
            found["completions answered PAID that PortOne does not hold"].append(
                f"{oid}: {order['status']}, PortOne {shown}"
            )
        plan = plans.get(oid)
        if plan is not None and plan.scenario == "manual_tampered" and took_money:
            found["tampered manual payments charged"].append(f"{oid}: PortOne {shown}")
        expires_at: datetime | None = order["expires_at"]
        if expires_at is not None and keeps_money(payment):
            first = next((e["at"] for e in moves if e["to_status"] in WITH_MONEY), None)
            if first is None or first > expires_at + STAMPED_WITHIN:
                found["money kept that was first seen after expiry"].append(
                    f"{oid}: expires {expires_at.isoformat()}, paid first seen"
                    f" {first and first.isoformat()}, {order['status']}, PortOne {shown}"
                )
    for token, count in charges.items():
        if count > 1:
            found["confirmation tokens charged more than once"].append(
                f"{token.split()[0]}: charged {count} times with one token"
            )


def _held_paid(order: asyncpg.Record, payment: dict[str, Any] | None) -> bool:
    """Whether PortOne charged the payment and nothing but refunds undid it since."""
    if payment is None or not payment["paid"] or order["status"] not in WITH_MONEY:
        return False
    return not any(
        w["kind"] == "close" or w["reason"].startswith(COMPENSATION_REASON)
        for w in payment["apiWrites"]
    )
