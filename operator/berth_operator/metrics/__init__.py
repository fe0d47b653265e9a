"""The operator's Prometheus metrics: these counters and histograms, counted as
migrations end; and, read from the watches' caches at each scrape, the placements' and
Machines' state (state.py builds it, collector.py serves it)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from berth_api.v1alpha1.migration_phases import TERMINAL
from berth_operator.migration.state import Mode

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


def start_at_zero() -> None:
    """Every result, mode and kind at 0 from the start: `increase()` cannot see a
    counter's first step when its series appears already at 1, so the dashboard's
    "Moves by result" would miss each result's first move."""
    for result in sorted(TERMINAL):
        for mode in Mode:
            MIGRATIONS.labels(result.value, mode.value)
    for kind in ("bulk", "delta", "postcopy"):
        BYTES.labels(kind)
