"""A migration of one repository, phase by phase (docs/design.md#migration-phases).

Pure: `state` (what is persisted), `rounds` (when to cut over), `retry` (back-off and
stall), `lifecycle` (a migration's beginning and end as its placement sees them).
Adapters: `driver` performs each phase through the agents and is safe to replay (every
agent call is keyed by the migration id), reporting to a `listener`; `runner` runs one
step for a placement.
"""
