"""Prometheus metrics: what the service does, and whether anything is stuck."""

from __future__ import annotations

import os
from functools import cache

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

http_requests = Counter(
    "http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
http_duration = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
verifications = Counter(
    "payment_verifications_total",
    "PortOne snapshots applied to orders, by outcome (the order's status after it, or "
    "unchanged / stale) and rejection reason.",
    ["outcome", "reason"],
    registry=REGISTRY,
)
webhooks = Counter(
    "webhooks_total",
    "PortOne webhook deliveries, by outcome: processed, ignored, duplicate, invalid "
    "(signature or body), failed (PortOne or the database; PortOne retries).",
    ["outcome"],
    registry=REGISTRY,
)
portone_requests = Counter(
    "portone_requests_total",
    "Calls to PortOne's API, by operation and HTTP status ('error' with no answer, "
    "'refused' when too many were in flight).",
    ["operation", "status"],
    registry=REGISTRY,
)
portone_waits = Counter(
    "portone_capacity_waits_total",
    "Calls to PortOne that waited for a free slot (PORTONE_MAX_IN_FLIGHT in flight); those "
    'still waiting after a second are refused: portone_requests_total{status="refused"}.',
    registry=REGISTRY,
)
portone_duration = Histogram(
    "portone_request_duration_seconds",
    "Time PortOne took to answer, by operation.",
    ["operation"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
reconciler_passes = Counter(
    "reconciler_passes_total",
    "Reconciler passes, by result: ok, failed (some order failed), skipped (another "
    "replica held the lock).",
    ["result"],
    registry=REGISTRY,
)
reconciler_repairs = Counter(
    "reconciler_repairs_total",
    "Orders whose status a reconciler pass changed: what the browser and webhooks missed.",
    registry=REGISTRY,
)
reconciler_reads = Counter(
    "reconciler_portone_reads_total",
    "PortOne reads the reconciler made, by what: payment (one order's payment re-read), "
    "page (a page of PortOne's changed payments). What the reconciler costs PortOne's quota.",
    ["what"],
    registry=REGISTRY,
)
refunds_failed = Counter(
    "refunds_failed_total",
    "Refunds that ended FAILED: PortOne refused them, or settled their cancellation FAILED.",
    registry=REGISTRY,
)
compensations_owed = Gauge(
    "compensations_owed",
    "Rejected payments whose cancellation PortOne has not shown done yet: owed (again, "
    "after a FAILED cancellation) or held REQUESTED.",
    multiprocess_mode="mostrecent",  # read from the database at each scrape, by any worker
    registry=REGISTRY,
)
order_events_held = Gauge(
    "order_events_held_orders",
    "Orders whose later events wait behind a failed one (POST /order-events/redeliver "
    "sends them again, in order).",
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)
oldest_unprocessed_webhook_age = Gauge(
    "oldest_unprocessed_webhook_age_seconds",
    "Age of the oldest stored webhook not yet processed (0 when none).",
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)


def exposition() -> bytes:
    """The Prometheus text: of every worker where several share PROMETHEUS_MULTIPROC_DIR."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    counted, timed = _request_series(route, method, status)
    counted.inc()
    timed.observe(seconds)


@cache
def _request_series(route: str, method: str, status: int) -> tuple[Counter, Histogram]:
    """A request's series, looked up once: `labels()` takes a lock and builds its key on
    every call. Route templates, methods and statuses are few."""
    return http_requests.labels(route, method, str(status)), http_duration.labels(route, method)


def observe_portone(operation: str, status: str, seconds: float) -> None:
    counted, timed = _portone_series(operation, status)
    counted.inc()
    timed.observe(seconds)


@cache
def _portone_series(operation: str, status: str) -> tuple[Counter, Histogram]:
    return portone_requests.labels(operation, status), portone_duration.labels(operation)
