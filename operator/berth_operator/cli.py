"""`berth-operator`: run the operator (kopf) with berth's settings."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from berth_common.logs import setup_logging


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="berth-operator", description=__doc__)
    parser.add_argument("command", nargs="?", default="run", choices=["run"])
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only these namespaces (default: all)",
    )
    parser.add_argument("--log-format", choices=["json", "text"], default="json")
    parser.add_argument("--metrics-port", type=int, default=None)
    parser.add_argument("--health-port", type=int, default=None, help="0: no liveness endpoint")
    parser.add_argument("--log-level", default=os.environ.get("BERTH_LOG_LEVEL", "info"))
    args = parser.parse_args(argv)
    if args.namespace:
        os.environ["BERTH_NAMESPACES"] = ",".join(args.namespace)
    if args.metrics_port is not None:
        os.environ["BERTH_METRICS_PORT"] = str(args.metrics_port)
    if args.health_port is not None:
        os.environ["BERTH_HEALTH_PORT"] = str(args.health_port)
    setup_logging(args.log_level, json_format=args.log_format == "json")

    import kopf
    from prometheus_client import start_http_server

    from berth_operator import handlers  # noqa: F401  (registers the handlers)
    from berth_operator.config import OperatorConfig

    config = OperatorConfig.from_env()
    if config.metrics_port:
        start_http_server(config.metrics_port)
    # Always cluster-wide, so peering is one ClusterKopfPeering and cluster-scoped
    # Machines are served; BERTH_NAMESPACES narrows which placements are reconciled.
    # kopf answers /healthz only while its watch streams and handlers are alive.
    liveness = f"http://0.0.0.0:{config.health_port}/healthz" if config.health_port else None
    kopf.run(
        clusterwide=True,
        peering_name=config.peering,
        standalone=False,
        liveness_endpoint=liveness,
        memo=kopf.Memo(config=config),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
