"""Prometheus metrics the kernel records for every service.

Metric names carry the ``livecommerce_`` prefix and a ``service`` label so one dashboard
serves all services. Service-specific metrics are declared beside the code that records them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

EVENTS_APPENDED = Counter(
    "livecommerce_events_appended_total", "Events appended to the event store", ["service"]
)
APPEND_CONFLICTS = Counter(
    "livecommerce_append_conflicts_total", "Appends rejected by optimistic concurrency", ["service"]
)
RELAY_PUBLISHED = Counter(
    "livecommerce_relay_published_total", "Events the outbox relay published", ["service"]
)
RELAY_POSITION = Gauge(
    "livecommerce_relay_position", "Last event-store position the relay published", ["service"]
)
RELAY_LAG = Gauge(
    "livecommerce_relay_lag_events", "Events appended but not yet published", ["service"]
)
CONSUMED = Counter(
    "livecommerce_events_consumed_total",
    "Events a consumer handled, by outcome (applied, duplicate, ignored, dead_lettered)",
    ["consumer", "outcome"],
)
CONSUMER_LATENCY = Histogram(
    "livecommerce_consumer_handle_seconds", "Time to handle one event", ["consumer"]
)
TIMERS_FIRED = Counter("livecommerce_timers_fired_total", "Durable timers fired", ["kind"])
HTTP_REQUESTS = Counter(
    "livecommerce_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "livecommerce_http_request_seconds", "HTTP request latency", ["service", "method", "route"]
)
GRPC_REQUESTS = Counter(
    "livecommerce_grpc_requests_total", "gRPC calls", ["service", "method", "code"]
)
RATE_LIMITED = Counter(
    "livecommerce_rate_limited_total",
    "Requests refused by a rate limit, by the key that refused them (user, address), or"
    " let through unchecked because Redis was unavailable (unchecked)",
    ["service", "action", "key"],
)
BATCH_SIZE = Histogram(
    "livecommerce_batch_size",
    "Items one micro-batch carried (one Redis pipeline, one group-commit transaction)",
    ["batcher"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
WEBHOOK_REPLAYS = Counter(
    "livecommerce_webhook_replays_total",
    "Verified webhook notifications whose id was seen before (answered as a no-op)",
    ["service", "provider"],
)


def serve_metrics(port: int | None) -> None:
    """Expose /metrics on its own port for processes that have no HTTP app."""
    if port:
        start_http_server(port, addr="0.0.0.0")  # noqa: S104 - scraped from the pod network
