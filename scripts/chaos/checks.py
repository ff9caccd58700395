"""What must hold after the chaos, checked against PortOne's final state (the stand-in's).

Each check is named in `CHECKS`; its count of problems must be zero. Those of the money
are in `scripts.chaos.money`, those of closed orders and manual confirmations in
`scripts.chaos.closing`.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from scripts.chaos.callers import Chaos, Tally
from scripts.chaos.closing import CLOSING_CHECKS, check_closing
from scripts.chaos.money import (
    Found,
    Payments,
    check_claims,
    check_held_refunds,
    check_money,
    check_refunds,
)
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
        # money that still arrived for a closed order
        ("CANCELLED", "REJECTED"),
    }
)

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
    "held refunds unsettled after enough passes",
    "disputes unlike PortOne's",
    "order events not delivered",
    "order events out of order or unknown",
    "outbox events not one per change",
    "dispute events not one per change",
    *CLOSING_CHECKS,
    "webhooks of payments no order has not ignored",
    "PortOne reads of payments no order has",
    "failed reconciler passes after the faults",
    "bad order-event signatures",
    "5xx answers other than 503",
    "wrong answers to callers",
    "unhandled errors in service logs",
)
OPENED, RESOLVED = "order.dispute_opened", "order.dispute_resolved"

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
                    "SELECT payment_id, status, attempts, outcome FROM webhook_deliveries"
                ),
            )
        finally:
            await connection.close()


def expected(
    order: asyncpg.Record, payment: dict[str, Any] | None, *, closable: bool = False
) -> tuple[set[str], str | None]:
    """The statuses docs/contract.md allows for this order given PortOne's final payment, and
    the reason. An order `closable` (the shop sent a cancel, or it has an expiresAt) may
    have been closed first: then CANCELLED with no money, and money that came after
    REJECTED (`ORDER_CLOSED`); one past its expiry was closed by the reconciler."""
    expired = order["expires_at"] is not None and order["expires_at"] <= datetime.now(UTC)
    if payment is None or payment["status"] in ("READY", "PAY_PENDING", "FAILED"):
        if expired:
            return {"CANCELLED"}, None
        return ({"PENDING", "CANCELLED"} if closable else {"PENDING"}), None
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
    if closable and order["status"] == "REJECTED" and order["rejection_reason"] == "ORDER_CLOSED":
        return {"REJECTED"}, "ORDER_CLOSED"
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
    passes: list[dict[str, Any]],
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
        found, tables.orders, payments, transitions, outbox_by_order, failed_refunds, chaos.tally
    )
    check_closing(
        found,
        tables.orders,
        tables.events,
        payments,
        state["charges"],
        chaos.tally,
        chaos.plans,
    )
    check_refunds(found, payments, tables.refunds, chaos.tally.keyed_reasons)
    check_claims(found, payments, tables.orders, tables.refunds)
    check_held_refunds(found, state["held"], tables.orders, tables.refunds)
    disputes = _check_disputes(found, tables.orders, payments, outbox_by_order, state["shown"])
    first_seen, redelivered = _check_order_events(found, tables.outbox, outbox_by_order, receiver)
    _check_orphans(found, chaos.outages.orphans, tables.deliveries, state["reads"])
    for summary in passes:
        if summary["failed"]:
            found["failed reconciler passes after the faults"].append(str(summary))
    _check_callers_and_logs(found, chaos.tally, logs)

    counts = {
        "orders checked": len(tables.orders),
        **{name: len(found.get(name, [])) for name in CHECKS[:8]},
        "order events (outbox rows)": len(tables.outbox),
        "order events delivered (distinct webhook-ids)": len(first_seen),
        "order events redelivered (allowed: at least once)": len(redelivered),
        "disputes at PortOne": disputes["at PortOne"],
        "payments whose refunds PortOne held": len(state["held"]),
        "payments a reconciler list takes a pass": chaos.per_pass,
        "webhooks of payments no order has": len(chaos.outages.orphans),
        "database connections cut": chaos.outages.counts["connections cut"],
        "manual confirmations PortOne charged": sum(state["charges"].values()),
        "cancels answered by the service": sum(
            answer in ("200", "409 ORDER_NOT_CANCELLABLE")
            for answers in chaos.tally.cancels.values()
            for answer in answers
        ),
        "orders with an expiresAt": sum(o["expires_at"] is not None for o in tables.orders),
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
        "webhook deliveries stored": dict(Counter(r["status"] for r in tables.deliveries)),
        "database outages": dict(chaos.outages.counts),
        "payments no order has": dict(
            Counter(
                "held by PortOne" if known else "unknown to PortOne"
                for known in chaos.outages.orphans.values()
            )
        ),
        "disputes": dict(disputes),
        "refunds PortOne holds": {
            "payments": len(state["held"]),
            "for good": sum(state["held"].values()),
            "final reconciler passes": len(passes),
        },
        "order-event receiver answers": dict(receiver.answered),
        "reconcile CLI runs": dict(chaos.tally.reconcile_runs),
        "refunds by status": dict(Counter(r["status"] for r in tables.refunds)),
        "compensations by status": dict(
            Counter(o["compensation_status"] for o in tables.orders if o["compensation_status"])
        ),
        "answers to callers": dict(sorted(chaos.tally.answers.items())),
        "answers to the shop's cancels": dict(
            Counter(answer for answers in chaos.tally.cancels.values() for answer in answers)
        ),
    }
    return Report(counts, problems, info)


def _check_orders(
    found: Found,
    orders: list[asyncpg.Record],
    payments: Payments,
    transitions: Transitions,
    outbox_by_order: dict[str, list[asyncpg.Record]],
    failed_refunds: Counter[str],
    tally: Tally,
) -> Counter[str]:
    """Each order against PortOne's payment: status, transitions, outbox, money; the
    final statuses."""
    statuses: Counter[str] = Counter()
    for order in orders:
        oid, payment = order["id"], payments.get(order["payment_id"])
        statuses[order["status"]] += 1
        closable = order["expires_at"] is not None or oid in tally.cancels
        allowed, reason = expected(order, payment, closable=closable)
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
        changes = [k for k in kinds if k not in ("order.refund_failed", OPENED, RESOLVED)]
        if (
            changes != [f"order.{to.lower()}" for _, to in chain]
            or kinds.count("order.refund_failed") != failed_refunds[oid]
        ):
            found["outbox events not one per change"].append(
                f"{oid}: {kinds} for {chain} and {failed_refunds[oid]} failed refunds"
            )
        check_money(found, order, payment, cancelled)
    return statuses


def _check_disputes(
    found: Found,
    orders: list[asyncpg.Record],
    payments: Payments,
    outbox_by_order: dict[str, list[asyncpg.Record]],
    shown: dict[str, str],
) -> Counter[str]:
    """Each order's disputes are a state PortOne's passed through, PortOne's final one
    when the last read PortOne answered showed it (a stale read after it leaves the
    order behind: no door reads a paid payment again); and the shop was told of each
    opening and each resolution the order holds once, never of a resolution first,
    however late or often equal snapshots were applied. Returns how many there were."""
    seen: Counter[str] = Counter()
    for order in orders:
        payment = payments.get(order["payment_id"])
        theirs = [_dispute(d) for d in (payment["disputes"] if payment else [])]
        ours = [_dispute(d) for d in json.loads(order["disputes"])]
        seen["at PortOne"] += len(theirs)
        seen["resolved at PortOne"] += sum(status == "RESOLVED" for status, *_ in theirs)
        final_shown = payment is not None and shown.get(order["payment_id"]) == payment["updatedAt"]
        if (final_shown and ours != theirs) or not _passed_through(ours, theirs):
            found["disputes unlike PortOne's"].append(f"{order['id']}: {ours}, PortOne {theirs}")
        elif ours != theirs:
            seen["orders behind PortOne, the last read stale"] += 1
        told = [row["type"] for row in outbox_by_order[order["id"]]]
        told = [kind for kind in told if kind in (OPENED, RESOLVED)]
        seen["order events"] += len(told)
        resolved = sum(status == "RESOLVED" for status, *_ in ours)
        early = any(told[:n].count(RESOLVED) > told[:n].count(OPENED) for n in range(len(told) + 1))
        if told.count(OPENED) != len(ours) or told.count(RESOLVED) != resolved or early:
            found["dispute events not one per change"].append(
                f"{order['id']}: {told} for disputes {ours}"
            )
    return seen


Dispute = tuple[str, str | None, str | None, str | None]  # status, reason, created, resolved


def _dispute(dispute: dict[str, Any]) -> Dispute:
    return (
        dispute["status"],
        dispute.get("reason"),
        dispute.get("createdAt"),
        dispute.get("resolvedAt"),
    )


def _passed_through(ours: list[Dispute], theirs: list[Dispute]) -> bool:
    """Whether PortOne's disputes were once `ours`: the first of them, each as it is now
    or not yet resolved."""
    return len(ours) <= len(theirs) and all(
        mine == actual or (mine[0] == "UNRESOLVED" and mine[1:3] == actual[1:3] and not mine[3])
        for mine, actual in zip(ours, theirs, strict=False)
    )


def _check_orphans(
    found: Found,
    orphans: dict[str, bool],
    deliveries: list[asyncpg.Record],
    reads: dict[str, int],
) -> None:
    """Every webhook of a payment no order has was stored and settled as ignored, whatever
    the database did meanwhile, and none cost a PortOne read."""
    by_payment: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for row in deliveries:
        by_payment[row["payment_id"]].append(row)
    for payment_id in orphans:
        rows = by_payment.get(payment_id, [])
        ended = [(row["status"], row["attempts"], row["outcome"]) for row in rows]
        if not ended or any(status != "IGNORED" for status, _, _ in ended):
            found["webhooks of payments no order has not ignored"].append(
                f"{payment_id}: {ended or 'never stored'}"
            )
        if reads.get(payment_id):
            found["PortOne reads of payments no order has"].append(
                f"{payment_id}: {reads[payment_id]} reads"
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
