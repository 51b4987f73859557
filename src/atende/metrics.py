"""Prometheus metrics, served at `GET /metrics`.

One module-level registry of our own (not prometheus-client's global one) so that several apps in
one process (tests run many) share counters without "duplicated timeseries" errors, and so that
library-internal collectors do not leak into what operators scrape.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REGISTRY = CollectorRegistry(auto_describe=True)

CONNECTIONS = Gauge(
    "atende_connections",
    "Real-time connections open on this instance, by dialect",
    ["dialect"],
    registry=REGISTRY,
)
EVENTS = Counter(
    "atende_events_total",
    "Events published by this instance, by type",
    ["type"],
    registry=REGISTRY,
)
WEBHOOK_LATENCY = Histogram(
    "atende_webhook_seconds",
    "Time to handle one provider webhook",
    ["provider"],
    registry=REGISTRY,
)
SEND_LATENCY = Histogram(
    "atende_send_seconds",
    "Time for one gateway send attempt",
    ["provider"],
    registry=REGISTRY,
)
SEND_FAILURES = Counter(
    "atende_send_failures_total",
    "Messages that ended failed after their last attempt",
    registry=REGISTRY,
)
OUTBOX_DEPTH = Gauge(
    "atende_outbox_depth",
    "Messages claimed by the last outbox pass on this instance",
    registry=REGISTRY,
)
REDIS_RECONNECTS = Counter(
    "atende_redis_reconnects_total",
    "Times the Redis event subscriber had to reconnect",
    registry=REGISTRY,
)
REDIS_SUBSCRIBED = Gauge(
    "atende_redis_subscribed",
    "1 while this instance's Redis event subscriber is listening",
    registry=REGISTRY,
)
REDIS_PUBLISH_FAILURES = Counter(
    "atende_redis_publish_failures_total",
    "Events that could not be published to Redis (local clients were still served)",
    registry=REGISTRY,
)

router = APIRouter(tags=["ops"])


# PlainTextResponse documents the text exposition format (not the default application/json).
@router.get("/metrics", response_class=PlainTextResponse)
async def metrics() -> Response:
    """Prometheus text exposition of this instance's metrics."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@contextmanager
def timed(histogram: Histogram, label: str) -> Iterator[None]:
    """Observe the duration of the block, whether it succeeds or raises."""
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.labels(label).observe(time.perf_counter() - started)
