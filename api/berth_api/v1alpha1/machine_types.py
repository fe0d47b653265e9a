"""Machine: a bare Docker host running berth-agent, as the cluster knows it.

Cluster API also has a kind named Machine; berth's is `machines.berth.dev`, short name
`bm`, so `kubectl get bm` never means the other one.
"""

from __future__ import annotations

from pydantic import Field

from berth_api.v1alpha1.common import Condition, Model, ObjectMeta


class MachineSpec(Model):
    endpoint: str = Field(
        pattern=r"^https://[^/\s]+$", description="the agent's mTLS API, https://HOST:PORT"
    )
    ca_bundle: str | None = Field(None, description="PEM of the CA that signed the agent")
    capacity_bytes: int | None = Field(
        None,
        ge=0,
        description="datastore bytes berth may use at most: a placement whose template is "
        "larger, or a move that would pass it, is Stalled",
    )
    max_concurrent_migrations: int = Field(1, ge=1, le=64)
    cordoned: bool = Field(False, description="no repository moves onto a cordoned machine")


class HeldContainer(Model):
    name: str
    state: str = Field(description="docker's: running, exited, created, ...")
    checkpoint: bool = Field(description="its processes' memory moves with it (else restarted)")


class HeldRepository(Model):
    """A repository on the machine, as its agent reported it at the last heartbeat."""

    name: str
    mounted: bool
    docker_running: bool = Field(description="its own dockerd is up")
    containers: list[HeldContainer] = Field(default_factory=list)
    size_bytes: int = Field(description="the size it was created with")
    used_bytes: int = Field(
        description="datastore bytes it takes (refreshed with the heartbeat's renewal)"
    )
    moved_to: str | None = Field(
        None,
        description="set when it was migrated away: what is left here is kept as the base "
        "of the next move back's delta",
    )


class MachineStatus(Model):
    observed_generation: int = -1
    conditions: list[Condition] = Field(default_factory=list)
    agent_version: str | None = None
    last_heartbeat: str | None = None
    free_bytes: int | None = None
    repositories: list[HeldRepository] = Field(default_factory=list)


class Machine(Model):
    api_version: str = "berth.dev/v1alpha1"
    kind: str = "Machine"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: MachineSpec
    status: MachineStatus = Field(default_factory=MachineStatus)
