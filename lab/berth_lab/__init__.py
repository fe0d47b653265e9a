"""The berth lab: several simulated Docker hosts on one machine.

Each host is a network namespace plus a private mount namespace (so repository paths
are identical on every host), a veth to the lab bridge, and its own btrfs datastore.
"""

from berth_lab.host import LabError, LabHost
from berth_lab.lab import Lab
from berth_lab.plan import LabPlan, plan_lab

__all__ = ["Lab", "LabError", "LabHost", "LabPlan", "plan_lab"]
