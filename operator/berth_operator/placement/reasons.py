"""Every word the operator writes into a placement's status: the conditions' reasons and
`status.phase` (pure). docs/api.md lists the same sets; tests/unit/test_status_vocabulary.py
compares them, so neither grows a word the other lacks.
"""

from __future__ import annotations

import enum

from berth_operator.migration.state import Phase as MigrationPhase


class Reason(enum.StrEnum):
    """A condition's reason: Ready's when it is False, Reconciling's or Stalled's when
    True."""

    PLACED = "Placed"  # Ready=True
    # Reconciling=True: work under way, or a wait that resolves without a person.
    CREATING = "Creating"
    CREATED = "Created"
    STARTING = "Starting"
    STARTED = "Started"
    MIGRATING = "Migrating"
    MIGRATED = "Migrated"
    FAILED = "Failed"  # an attempt just failed before the freeze; a retry follows
    ROLLED_BACK = "RolledBack"  # an attempt just rolled back after it; a retry follows
    CANCELLING = "Cancelling"  # spec.machine is the source again, before the commit point
    CANCELLED = "Cancelled"  # the move stopped before its commit point; no retry
    BACKING_OFF = "BackingOff"
    QUEUED = "Queued"
    MACHINE_NOT_READY = "MachineNotReady"
    SOURCE_NOT_READY = "SourceNotReady"
    MACHINES_UNOBSERVED = "MachinesUnobserved"
    DNS_PENDING = "DNSPending"  # the records are written; the DNS server does not answer yet
    DNS_NOT_UPDATED = "DNSNotUpdated"  # not written, or not answered within the grace
    AGENT_ERROR = "AgentError"  # the agent could not do it this time; tried again
    CREDENTIALS_NOT_FOUND = "CredentialsNotFound"  # spec.credentialsSecretRef's Secret or key
    # Stalled=True: a person must act (change the spec, a Machine or a host).
    UNKNOWN_MACHINE = "UnknownMachine"
    TARGET_CORDONED = "TargetCordoned"
    REPOSITORY_NOT_FOUND = "RepositoryNotFound"
    SPLIT_BRAIN = "SplitBrain"
    ONLY_STALE_COPIES = "OnlyStaleCopies"
    MIGRATION_FAILED = "MigrationFailed"
    INVALID_SPEC = "InvalidSpec"  # the agent refused what the spec asks (a template, a size)
    DATASTORE_TOO_SMALL = "DatastoreTooSmall"  # larger than the datastore or its capacityBytes
    TARGET_OVER_CAPACITY = "TargetOverCapacity"  # the move would pass capacityBytes
    UNSUPPORTED = "Unsupported"  # the machine lacks a feature the spec needs (dm-crypt)


STALLS = frozenset(
    {
        Reason.UNKNOWN_MACHINE,
        Reason.TARGET_CORDONED,
        Reason.REPOSITORY_NOT_FOUND,
        Reason.SPLIT_BRAIN,
        Reason.ONLY_STALE_COPIES,
        Reason.MIGRATION_FAILED,
        Reason.INVALID_SPEC,
        Reason.DATASTORE_TOO_SMALL,
        Reason.TARGET_OVER_CAPACITY,
        Reason.UNSUPPORTED,
    }
)


class PlacementPhase(enum.StrEnum):
    """status.phase outside a migration; during one it is the migration's phase, and
    when one has just ended its result (Succeeded, Failed, RolledBack)."""

    CREATING = "Creating"
    STARTING = "Starting"
    PLACED = "Placed"
    WAITING = "Waiting"
    STALLED = "Stalled"


def phases() -> frozenset[str]:
    """Every value status.phase can take."""
    return frozenset(p.value for p in PlacementPhase) | frozenset(p.value for p in MigrationPhase)
