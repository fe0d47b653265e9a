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
