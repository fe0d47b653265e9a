"""Installing the agent on a real host from an enrollment bundle, and removing it.

plan.py decides which files to write (pure); host.py writes them and talks to systemd.
"""
