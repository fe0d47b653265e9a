"""A migration of one repository, phase by phase (see DESIGN.md, "A live migration").

`state` and `rounds` are pure; `driver` performs each phase through the agents and is
safe to replay: every agent call is keyed by the migration id.
"""
