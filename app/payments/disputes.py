"""Chargebacks and disputes: the order mirrors PortOne's `disputes`; the money decides its
status, the disputes only what the shop is told."""

from __future__ import annotations

from typing import Any

from app.portone.models import Payment
from app.times import rfc3339

OPENED = "order.dispute_opened"
RESOLVED = "order.dispute_resolved"


def mirrored(payment: Payment) -> list[dict[str, Any]]:
    """The payment's disputes as the order keeps and shows them."""
    return [
        {
            "status": dispute.status,
            "reason": dispute.reason,
            "createdAt": rfc3339(dispute.created_at) if dispute.created_at else None,
            "resolvedAt": rfc3339(dispute.resolved_at) if dispute.resolved_at else None,
        }
        for dispute in payment.disputes
    ]


def changes(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[str]:
    """The order events of going from `before` to `after`: a dispute opened, one resolved
    (both, for one that arrives resolved)."""
    seen = {_key(dispute): dispute for dispute in before}
    events = []
    for dispute in after:
        earlier = seen.get(_key(dispute))
        if earlier is None:
            events.append(OPENED)
        if dispute["status"] == "RESOLVED" and (earlier is None or earlier["status"] != "RESOLVED"):
            events.append(RESOLVED)
    return events


def describe(events: list[str], after: list[dict[str, Any]]) -> str:
    opened, resolved = events.count(OPENED), events.count(RESOLVED)
    parts = [
        f"{n} dispute{'s' * (n > 1)} {what}"
        for n, what in ((opened, "opened"), (resolved, "resolved"))
        if n
    ]
    return ", ".join(parts) + f" ({sum(d['status'] != 'RESOLVED' for d in after)} unresolved)"


def _key(dispute: dict[str, Any]) -> tuple[Any, Any]:
    # PortOne gives a dispute no id of its own that every PG fills; it is never moved.
    return dispute.get("createdAt"), dispute.get("reason")
