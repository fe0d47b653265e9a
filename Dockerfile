# The berth operator image (the agent runs on bare hosts: hostagent/berth_agent/install/).
#
# Built by hack/image/build.sh, which first makes what this file needs: the base image
# berth/base:bookworm (hack/image/base.sh, debootstrap + docker import, as no registry is
# reachable) and the wheels in build/image/wheels (berth's own and its dependencies,
# made on the host). Nothing here touches the network; the legacy builder is enough:
#   DOCKER_BUILDKIT=0 docker build --network=none -t berth/operator:0.1.0 .
# Runs as uid 65532 with a read-only root filesystem and a writable /tmp, as the Helm
# chart runs it.
ARG BASE=berth/base:bookworm

FROM ${BASE} AS venv
# Dependencies first: this layer is rebuilt only when they change.
COPY build/image/wheels/deps/ /wheels/deps/
RUN python3 -m venv /opt/berth \
 && /opt/berth/bin/pip install --no-index --no-cache-dir --no-compile \
      --disable-pip-version-check --find-links /wheels/deps /wheels/deps/*.whl
COPY build/image/wheels/berth/ /wheels/berth/
# pip and setuptools are of no use at run time. Byte code is compiled here, checked by
# hash rather than by file times, as the read-only root filesystem keeps Python from
# writing it later.
RUN /opt/berth/bin/pip install --no-index --no-cache-dir --no-compile --no-deps \
      --disable-pip-version-check /wheels/berth/*.whl \
 && /opt/berth/bin/pip check --disable-pip-version-check \
 && /opt/berth/bin/pip uninstall -q -y --disable-pip-version-check pip setuptools \
 && /opt/berth/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
      /opt/berth/lib \
 && /opt/berth/bin/berth-operator --help >/dev/null

FROM ${BASE}
ARG BASE
ARG VERSION=0.1.0
# A name for uid 65532: kopf asks for the user name (getpass) to make its peering id.
RUN echo 'berth:x:65532:65532:berth operator:/nonexistent:/usr/sbin/nologin' >>/etc/passwd \
 && echo 'berth:x:65532:' >>/etc/group
COPY --from=venv /opt/berth /opt/berth
ENV PATH=/opt/berth/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
LABEL org.opencontainers.image.title="berth-operator" \
      org.opencontainers.image.description="The berth operator (kopf): moves running Docker repositories between hosts" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.base.name="${BASE}"
USER 65532:65532
WORKDIR /tmp
# 9090: Prometheus metrics (BERTH_METRICS_PORT); 8080: kopf's liveness probe, GET /healthz
# (BERTH_HEALTH_PORT).
EXPOSE 9090 8080
# tini as PID 1: signals reach the operator, and orphans are reaped.
ENTRYPOINT ["/usr/bin/tini", "--", "berth-operator"]
