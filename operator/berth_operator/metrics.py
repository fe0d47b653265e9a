"""The operator's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

MIGRATIONS = Counter("berth_migrations_total", "Migrations by result", ["result", "mode"])
DOWNTIME = Histogram(
    "berth_migration_downtime_seconds",
    "Measured downtime of migrations",
    buckets=(0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60),
)
BYTES = Counter(
    "berth_migration_bytes_total", "Bytes moved: bulk, delta (image), postcopy (memory)", ["kind"]
)
FAULTED_PAGES = Counter(
    "berth_migration_postcopy_faulted_pages_total",
    "Post-copy: pages a process touched before they had arrived from the source",
)
POSTCOPY = Histogram(
    "berth_migration_postcopy_seconds",
    "Post-copy: from the target's answer until it held every page",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)
