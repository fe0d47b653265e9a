# The berth operator image (the agent runs on bare hosts, see hostagent/systemd).
# No registry is reachable on the build machines: build FROM a locally imported base, e.g.
#   DOCKER_BUILDKIT=0 docker build --build-arg BASE=local/debian-python -t berth/operator .
ARG BASE=python:3.11-slim
FROM ${BASE}
WORKDIR /src
COPY pyproject.toml README.md ./
COPY common/ common/
COPY api/ api/
COPY hostagent/ hostagent/
COPY operator/ operator/
COPY cli/ cli/
COPY lab/ lab/
RUN python3 -m pip install --no-cache-dir . && rm -rf /src
USER 65532:65532
ENTRYPOINT ["berth-operator"]
