"""postgres: Debian's PostgreSQL 15, its data directory in a volume of the repository.

CRIU reads the rlimits of every task it dumps, and for postgres (never root) that needs
CAP_SYS_RESOURCE; where root lacks it (as on the lab's machines), the repository runs in
a user namespace, whose root holds every capability over its own tasks."""

from __future__ import annotations

from berth_agent.apps import databases
from berth_agent.runtime.debian_images import DebianImage
from berth_common.agent_api.services import PortSpec, RepositoryServices, ServiceSpec, VolumeSpec

NAME = "postgres"
PORT = 5432
IMAGE = DebianImage(
    image="berth/postgres:15",
    recipe=databases.RECIPE,
    changes=(
        "ENV LANG=C.UTF-8",
        f"ENV PATH={databases.POSTGRES_BIN}:{databases.PATH}",
        f"ENV PGDATA={databases.POSTGRES_DATA}",
        f'CMD ["/usr/bin/tini", "--", "{databases.POSTGRES_ENTRY}"]',
    ),
)


def service(host_port: int = PORT) -> ServiceSpec:
    return ServiceSpec(
        name=NAME,
        image=IMAGE.image,
        checkpoint=True,
        ports=[PortSpec(container=PORT, host=host_port)],
        volumes=[VolumeSpec(name="pgdata", path=databases.POSTGRES_DATA)],
        # PostgreSQL's fast shutdown: SIGTERM would wait for every client to leave.
        # (docker 20.10's import cannot set an image's STOPSIGNAL.)
        stop_signal="SIGINT",
    )


def services(host_port: int = PORT) -> RepositoryServices:
    return RepositoryServices(services=[service(host_port)], user_namespace=True)
