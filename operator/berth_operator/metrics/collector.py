"""Serves state.py's gauges at each scrape, from the watches' caches: no API call, so a
scrape costs the API server nothing however many placements there are."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import ValidationError

from berth_api.v1alpha1.machine_types import Machine
from berth_api.v1alpha1.placement_types import RepositoryPlacement
from berth_operator.controller.cache import ObjectCache
from berth_operator.metrics.state import GAUGES, Sample, machine_samples, placement_samples
from berth_operator.placement.status_writer import PlacementKey

log = logging.getLogger("berth.operator.metrics")


class StateCollector(Collector):
    def __init__(self, placements: ObjectCache[PlacementKey], machines: ObjectCache[str]) -> None:
        self.placements, self.machines = placements, machines

    def samples(self) -> list[Sample]:
        samples: list[Sample] = []
        for obj in self.placements.values():
            try:
                samples += placement_samples(RepositoryPlacement.model_validate(obj))
            except (ValidationError, ValueError):  # one unreadable object: skip, don't fail
                log.debug("placement %s not readable for metrics", obj["metadata"].get("name"))
        for obj in self.machines.values():
            try:
                samples += machine_samples(Machine.model_validate(obj))
            except (ValidationError, ValueError):
                log.debug("machine %s not readable for metrics", obj["metadata"].get("name"))
        return samples

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {g: GaugeMetricFamily(g.name, g.help, labels=g.labels) for g in GAUGES}
        for sample in self.samples():
            families[sample.gauge].add_metric(sample.labels, sample.value)
        yield from families.values()

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Named without reading the caches, so registering does not scrape.
        yield from (GaugeMetricFamily(g.name, g.help, labels=g.labels) for g in GAUGES)
