"""berth.dev/v1alpha1: RepositoryPlacement and Machine. These models are the single
source of truth: the CRDs in crds/ (and the chart's copy) are generated from them
(`python -m berth_api.crdgen`)."""

from berth_api.v1alpha1.common import GROUP, VERSION, Condition
from berth_api.v1alpha1.machine_types import Machine, MachineSpec, MachineStatus
from berth_api.v1alpha1.placement_types import (
    AddressOptions,
    DNSOptions,
    LastMigration,
    RepositoryPlacement,
    RepositoryPlacementSpec,
    RepositoryPlacementStatus,
    ServiceEndpoint,
)

API_VERSION = f"{GROUP}/{VERSION}"

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "AddressOptions",
    "Condition",
    "DNSOptions",
    "LastMigration",
    "Machine",
    "MachineSpec",
    "MachineStatus",
    "RepositoryPlacement",
    "RepositoryPlacementSpec",
    "RepositoryPlacementStatus",
    "ServiceEndpoint",
]
