"""Signing people's repository sessions (kubectl berth logs/exec): see
berth_common.sessions for the flow."""
