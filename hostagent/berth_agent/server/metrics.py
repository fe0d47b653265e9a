"""Prometheus metrics of the agent."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()
OPERATIONS = Counter(
    "berth_agent_operations_total",
    "Repository operations by kind and result",
    ["operation", "result"],
    registry=REGISTRY,
)
OPERATION_SECONDS = Histogram(
    "berth_agent_operation_seconds",
    "Duration of repository operations",
    ["operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
REPOSITORIES = Gauge(
    "berth_agent_repositories", "Repositories on this host by state", ["state"], registry=REGISTRY
)
TRANSFER_BYTES = Counter(
    "berth_agent_transfer_bytes_total",
    "Image bytes moved over the wire",
    ["direction"],
    registry=REGISTRY,
)


def start_at_zero() -> None:
    """Each direction at 0 from the start: rate() cannot see a counter's first step when
    its series appears already past 0, so the dashboard would miss a first transfer."""
    for direction in ("sent", "received"):
        TRANSFER_BYTES.labels(direction)
