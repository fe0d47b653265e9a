"""A migration of one repository, phase by phase (docs/design.md#migration-phases).

`state` and `rounds` are pure; `driver` performs each phase through the agents and is
safe to replay: every agent call is keyed by the migration id.
"""
