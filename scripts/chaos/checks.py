"""What must hold after the chaos, checked against PortOne's final state (the stand-in's).

Each check is named in `CHECKS`; its count of problems must be zero.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from scripts.chaos.callers import Chaos, Tally
from scripts.chaos.receiver import EventReceiver
from scripts.chaos.standin import STORE_ID

LEGAL = frozenset(
    {
        ("PENDING", "AWAITING_DEPOSIT"),
        ("PENDING", "PAID"),
        ("AWAITING_DEPOSIT", "PAID"),
        ("PENDING", "REJECTED"),
        ("AWAITING_DEPOSIT", "REJECTED"),
        ("PENDING", "CANCELLED"),
        ("AWAITING_DEPOSIT", "CANCELLED"),
        ("PAID", "PARTIALLY_REFUNDED"),
        ("PAID", "REFUNDED"),
        ("PARTIALLY_REFUNDED", "REFUNDED"),
        # a PAID never seen, already partly cancelled (app.payments.rules)
        ("PENDING", "PARTIALLY_REFUNDED"),
        ("AWAITING_DEPOSIT", "PARTIALLY_REFUNDED"),
    }
)
COMPENSATION_REASON = "payment failed verification"

CHECKS = (
    "orders disagreeing with PortOne",
    "repeated or illegal transitions",
    "rejected payments not cancelled exactly once",
    "cancels of payments that were not rejected",
    "refunds beyond what was paid",
    "refunds per Idempotency-Key beyond one",
    "refunds recorded that PortOne never made",
    "refunds not ending with the status PortOne holds",
    "cancellations claimed twice",
    "refunds recorded unlike what PortOne gave back",
    "order events not delivered",
    "order events out of order or unknown",
    "outbox events not one per change",
    "bad order-event signatures",
    "5xx answers other than 503",
    "wrong answers to callers",
    "unhandled errors in service logs",
)

Found = defaultdict[str, list[str]]
Payments = dict[str, dict[str, Any]]
Transitions = dict[str, list[tuple[str, str]]]


@dataclass
class Report:
    counts: dict[str, int]
    problems: list[str]
    info: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Tables:
    orders: list[asyncpg.Record]
    events: list[asyncpg.Record]
    outbox: list[asyncpg.Record]
    refunds: list[asyncpg.Record]
    deliveries: list[asyncpg.Record]

    @classmethod
    async def read(cls, dsn: str) -> Tables:
        connection = await asyncpg.connect(dsn)
        try:
            return cls(
                orders=await connection.fetch("SELECT * FROM orders ORDER BY created_at, id"),
                events=await connection.fetch("SELECT * FROM order_history ORDER BY id"),
                outbox=await connection.fetch("SELECT * FROM outbox_events ORDER BY seq"),
                refunds=await connection.fetch("SELECT * FROM refunds"),
                deliveries=await connection.fetch(
                    "SELECT status, count(*) AS n FROM webhook_deliveries GROUP BY status"
                ),
            )
        finally:
            await connection.close()


def expected(order: asyncpg.Record, payment: dict[str, Any] | None) -> tuple[set[str], str | None]:
    """The statuses docs/contract.md allows for this order given PortOne's final payment, and
    the reason."""
    if payment is None or payment["status"] in ("READY", "PAY_PENDING", "FAILED"):
        return {"PENDING"}, None
    reason = None
    if payment["storeId"] != STORE_ID:
        reason = "STORE_MISMATCH"
    elif payment["currency"] != order["currency"]:
        reason = "CURRENCY_MISMATCH"
    elif payment["total"] != order["amount"]:
        reason = "AMOUNT_MISMATCH"
    elif payment["channelType"] != "LIVE":
        reason = "TEST_CHANNEL"
    if reason is not None:
        return {"REJECTED"}, reason
    status = payment["status"]
    if status == "VIRTUAL_ACCOUNT_ISSUED":
        return {"AWAITING_DEPOSIT"}, None
    if status == "PAID":
        return {"PAID"}, None
    if status == "PARTIAL_CANCELLED":
        return {"PARTIALLY_REFUNDED"}, None
    if status == "CANCELLED":
        # Paid and cancelled before the service saw it paid: CANCELLED by the table.
        return ({"REFUNDED", "CANCELLED"} if payment["paid"] else {"CANCELLED"}), None
    return {f"(PortOne status {status})"}, None


async def check(
    dsn: str,
    state: dict[str, Any],
    receiver: EventReceiver,
    chaos: Chaos,
    logs: list[Path],
) -> Report:
    tables = await Tables.read(dsn)
    payments: Payments = state["payments"]
    found: Found = defaultdict(list)
    transitions: Transitions = defaultdict(list)
    for event in tables.events:
        if event["from_status"] != event["to_status"]:
            transitions[event["order_id"]].append((event["from_status"], event["to_status"]))
    outbox_by_order: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for row in tables.outbox:
        outbox_by_order[row["order_id"]].append(row)

    failed_refunds = Counter(r["order_id"] for r in tables.refunds if r["status"] == "FAILED")
    statuses = _check_orders(
        found, tables.orders, payments, transitions, outbox_by_order, failed_refunds
    )
    _check_refunds(found, payments, tables.refunds, chaos.tally.keyed_reasons)
    _check_claims(found, payments, tables.orders, tables.refunds)
    first_seen, redelivered = _check_order_events(found, tables.outbox, outbox_by_order, receiver)
    _check_callers_and_logs(found, chaos.tally, logs)

    counts = {
        "orders checked": len(tables.orders),
        **{name: len(found.get(name, [])) for name in CHECKS[:8]},
        "order events (outbox rows)": len(tables.outbox),
        "order events delivered (distinct webhook-ids)": len(first_seen),
        "order events redelivered (allowed: at least once)": len(redelivered),
        **{name: len(found.get(name, [])) for name in CHECKS[8:]},
    }
    problems = [f"{name}: {text}" for name in CHECKS for text in found.get(name, [])]
    info = {
        "final statuses": dict(sorted(statuses.items())),
        "scenarios": dict(Counter(p.scenario for p in chaos.plans.values()).most_common()),
        "transitions": sum(len(chain) for chain in transitions.values()),
        "order flows cut off at the deadline": chaos.flows_unfinished,
        "PortOne faults injected": sum(state["faults"].values()),
        "PortOne faults by kind": dict(sorted(state["faults"].items())),
        "PortOne webhooks": dict(sorted(state["webhooks"].items())),
        "webhook deliveries stored": {r["status"]: r["n"] for r in tables.deliveries},
        "order-event receiver answers": dict(receiver.answered),
        "reconcile CLI runs": dict(chaos.tally.reconcile_runs),
        "refunds by status": dict(Counter(r["status"] for r in tables.refunds)),
        "compensations by status": dict(
            Counter(o["compensation_status"] for o in tables.orders if o["compensation_status"])
        ),
        "answers to callers": dict(sorted(chaos.tally.answers.items())),
    }
    return Report(counts, problems, info)


def _check_orders(
    found: Found,
    orders: list[asyncpg.Record],
    payments: Payments,
    transitions: Transitions,
    outbox_by_order: dict[str, list[asyncpg.Record]],
    failed_refunds: Counter[str],
) -> Counter[str]:
    """Each order against PortOne's payment: status, transitions, outbox, money; the
    final statuses."""
    statuses: Counter[str] = Counter()
    for order in orders:
        oid, payment = order["id"], payments.get(order["payment_id"])
        statuses[order["status"]] += 1
        allowed, reason = expected(order, payment)
        cancelled = payment["cancelled"] if payment else 0
        if (
            order["status"] not in allowed
            or order["refunded_amount"] != cancelled
            or (order["status"] == "REJECTED" and order["rejection_reason"] != reason)
        ):
            found["orders disagreeing with PortOne"].append(
                f"{oid}: {order['status']} refunded {order['refunded_amount']}"
                f" rejection {order['rejection_reason']}; PortOne"
                f" {payment and {k: payment[k] for k in ('status', 'total', 'cancelled')}}"
                f" expects {sorted(allowed)} {reason or ''}",
            )
        chain = transitions[oid]
        previous = "PENDING"
        for pair in chain:
            if pair not in LEGAL or pair[0] != previous:
                found["repeated or illegal transitions"].append(f"{oid}: {chain}")
                break
            previous = pair[1]
        if len(set(chain)) != len(chain):
            found["repeated or illegal transitions"].append(f"{oid}: repeated {chain}")
        if previous != order["status"]:
            found["repeated or illegal transitions"].append(
                f"{oid}: {chain} ends {order['status']}"
            )
        kinds = [row["type"] for row in outbox_by_order[oid]]
        changes = [kind for kind in kinds if kind != "order.refund_failed"]
        if (
            changes != [f"order.{to.lower()}" for _, to in chain]
            or kinds.count("order.refund_failed") != failed_refunds[oid]
        ):
            found["outbox events not one per change"].append(
                f"{oid}: {kinds} for {chain} and {failed_refunds[oid]} failed refunds"
            )
        _check_money(found, order, payment, cancelled)
    return statuses


def _check_money(
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
    elif compensations:
        found["cancels of payments that were not rejected"].append(f"{oid}: {compensations}")
    # A rejected payment's refundedAmount mirrors PortOne's, whatever was tampered.
    beyond_order = order["status"] != "REJECTED" and order["refunded_amount"] > order["amount"]
    if payment is not None and (cancelled > payment["total"] or beyond_order):
        found["refunds beyond what was paid"].append(f"{oid}: {cancelled} of {payment['total']}")


def _check_refunds(
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


def _check_claims(
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


def _check_order_events(
    found: Found,
    outbox: list[asyncpg.Record],
    outbox_by_order: dict[str, list[asyncpg.Record]],
    receiver: EventReceiver,
) -> tuple[dict[str, int], list[str]]:
    """Every outbox row delivered, in order per order; where each id first arrived, and
    the ids that arrived more than once."""
    first_seen: dict[str, int] = {}
    seen_count: Counter[str] = Counter()
    redelivered: list[str] = []
    for position, (event_id, _, _, _) in enumerate(receiver.accepted):
        first_seen.setdefault(event_id, position)
        seen_count[event_id] += 1
    outbox_ids = {row["id"] for row in outbox}
    for row in outbox:
        if row["state"] != "delivered" or row["id"] not in first_seen:
            found["order events not delivered"].append(
                f"{row['id']} ({row['type']}): {row['state']}"
            )
    for event_id, count in seen_count.items():
        if count > 1:  # at least once: allowed, but only a failed bookkeeping write causes it
            redelivered.append(f"{event_id}: {count} times")
        if event_id not in outbox_ids:
            found["order events out of order or unknown"].append(f"{event_id}: not in the outbox")
    for oid, rows in outbox_by_order.items():
        arrivals = [first_seen[r["id"]] for r in rows if r["id"] in first_seen]
        if arrivals != sorted(arrivals):
            found["order events out of order or unknown"].append(f"{oid}: arrived out of order")
    if receiver.bad_signatures:
        found["bad order-event signatures"].append(f"{receiver.bad_signatures} deliveries")
    return first_seen, redelivered


def _check_callers_and_logs(found: Found, tally: Tally, logs: list[Path]) -> None:
    found["5xx answers other than 503"].extend(tally.server_errors)
    found["wrong answers to callers"].extend(tally.wrong_answers)
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if '"level": "error"' in line.lower() or "Traceback" in line:
                found["unhandled errors in service logs"].append(f"{log.name}: {line[:300]}")
