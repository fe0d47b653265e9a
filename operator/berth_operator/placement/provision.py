"""Creating a repository from its placement's template, or starting it where it lies: the
agent calls behind decide's Create and Start actions (an adapter).

AgentError passes through for the caller to judge (refusals.py: a lasting refusal
stalls, anything else is tried again).
"""

from __future__ import annotations

from dataclasses import dataclass

from berth_api.v1alpha1 import RepositoryPlacementSpec
from berth_operator.agents import MachineAgents
from berth_operator.migration.lifecycle import Notice
from berth_operator.placement.reasons import PlacementPhase, Reason

ANSWER_SECONDS = 60  # how long `up` waits for the services' ports to answer


@dataclass(frozen=True)
class Provisioned:
    notice: Notice
    phase: PlacementPhase


class Provisioner:
    def __init__(self, agents: MachineAgents) -> None:
        self.agents = agents

    def create(self, spec: RepositoryPlacementSpec, machine: str, key: bytes | None) -> Provisioned:
        """Create the repository on machine from spec.template, with spec.address, and
        start it."""
        template = spec.template
        assert template is not None
        # The agent's JSON has snake_case keys (stop_signal), not the CRD's.
        address = spec.address.model_dump(mode="json", exclude_none=True) if spec.address else None
        with self.agents.client(machine) as agent:
            if template.services:
                services = {
                    "services": [
                        s.model_dump(mode="json", exclude_none=True) for s in template.services
                    ]
                }
                agent.create(
                    spec.repository, template.size, services=services, address=address, key=key
                )
            else:
                agent.create(
                    spec.repository,
                    template.size,
                    template=template.app or "empty",
                    address=address,
                    key=key,
                )
            agent.up(spec.repository, key, wait_answer=ANSWER_SECONDS)
        notice = Notice(Reason.CREATED, f"repository created on {machine}")
        return Provisioned(notice, PlacementPhase.CREATING)

    def start(self, spec: RepositoryPlacementSpec, machine: str, key: bytes | None) -> Provisioned:
        """Start the repository where it lies on machine."""
        with self.agents.client(machine) as agent:
            agent.up(spec.repository, key, wait_answer=ANSWER_SECONDS)
        notice = Notice(Reason.STARTED, f"repository started on {machine}")
        return Provisioned(notice, PlacementPhase.STARTING)
