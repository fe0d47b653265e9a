"""redis: Debian's Redis 7, every write appended to its AOF and fsynced before the reply
(`appendfsync always`), the file in a volume of the repository."""

from __future__ import annotations

from berth_agent.apps import databases
from berth_agent.runtime.debian_images import DebianImage
from berth_common.agent_api.services import PortSpec, RepositoryServices, ServiceSpec, VolumeSpec

NAME = "redis"
PORT = 6379
IMAGE = DebianImage(
    image="berth/redis:7",
    recipe=databases.RECIPE,
    changes=(
        "ENV LANG=C.UTF-8",
        f"ENV PATH={databases.PATH}",
        f'CMD ["/usr/bin/tini", "--", "{databases.REDIS_ENTRY}"]',
    ),
)


def service(host_port: int = PORT) -> ServiceSpec:
    return ServiceSpec(
        name=NAME,
        image=IMAGE.image,
        checkpoint=True,
        ports=[PortSpec(container=PORT, host=host_port)],
        volumes=[VolumeSpec(name="redisdata", path=databases.REDIS_DATA)],
    )


def services(host_port: int = PORT) -> RepositoryServices:
    return RepositoryServices(services=[service(host_port)])
