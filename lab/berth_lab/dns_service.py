"""The lab's DNS, for real: BIND 9 serving the zone `lab.`, and external-dns writing the
records of the cluster's DNSEndpoints into it over RFC 2136 (TSIG-signed updates), as
a cluster with spec.dns would run them.

Both run as processes of the lab (its OWNER_ENV, their files in the lab's dns dir), so
`Lab.down()` stops them and the leftover check sees them. external-dns runs under a
restart loop, as a kubelet would restart it: it exits on an update the server refuses.
`refuse_updates()` makes named refuse every update (a reload, SIGHUP), for the
DNSNotUpdated tests.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import time
from collections.abc import Mapping
from pathlib import Path

from berth_common.dns_query import Answered, ask
from berth_lab import procs, services
from berth_lab.host import LabError
from berth_lab.kube import free_ports
from berth_lab.kube_tools import external_dns_binary
from berth_lab.plan import LabPlan

ZONE = "lab"  # spec.dns's names in the lab: anything under .lab
PORT = 5353  # not 53: nothing in the lab should look like the host's own resolver
KEY = "berth-lab"  # the TSIG key external-dns signs its updates with
ALGORITHM = "hmac-sha256"
NAMED_MARKER = "named.conf"  # in named's command line: -c DIR/named.conf
EXTERNAL_DNS_MARKER = "external-dns"
# external-dns looks every second (its default is a minute): the lab's moves take seconds.
SYNC_INTERVAL = "1s"
# How long the lab's operator lets external-dns take before DNSNotUpdated (BERTH_DNS_CHECK_
# GRACE_SECONDS): a few of its syncs, and its restart after a refused update.
GRACE_SECONDS = 10


def lab_dns_server(plan: LabPlan) -> tuple[str, int]:
    """Where a lab's named answers: its bridge, seen from the machine and every host."""
    return str(plan.bridge_address), PORT


def named_conf(directory: Path, address: str, port: int, secret: str, updates: bool) -> str:
    """named's whole configuration: one primary zone, updates and transfers only with
    the key (external-dns reads the zone by transfer), no recursion, no control channel."""
    allow_update = f'key "{KEY}";' if updates else "none;"
    return f"""options {{
  directory "{directory}";
  pid-file "{directory}/named.run.pid";
  session-keyfile "{directory}/session.key";
  listen-on port {port} {{ {address}; }};
  listen-on-v6 {{ none; }};
  recursion no;
  dnssec-validation no;
  minimal-responses yes;
}};
controls {{ }};
key "{KEY}" {{ algorithm {ALGORITHM}; secret "{secret}"; }};
zone "{ZONE}" {{
  type primary;
  file "{directory}/{ZONE}.zone";
  allow-update {{ {allow_update} }};
  allow-transfer {{ key "{KEY}"; }};
}};
"""


def zone_file(address: str) -> str:
    """The zone as it starts: its SOA and name server, no records (external-dns adds
    them). The SOA's minimum (negative caching) is 1 s: a name asked before it exists
    must not stay unknown to resolvers for long."""
    return (
        "$TTL 1\n"
        f"@ IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 60 60 600 1\n"
        f"@ IN NS ns.{ZONE}.\n"
        f"ns IN A {address}\n"
    )


def external_dns_argv(
    binary: Path, kubeconfig: Path, address: str, port: int, metrics_port: int
) -> list[str]:
    """external-dns on the cluster's DNSEndpoints with its rfc2136 provider; the TSIG
    secret comes from the environment (EXTERNAL_DNS_RFC2136_TSIG_SECRET), not argv."""
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        "--source=crd",
        "--crd-source-apiversion=externaldns.k8s.io/v1alpha1",
        "--crd-source-kind=DNSEndpoint",
        "--provider=rfc2136",
        f"--rfc2136-host={address}",
        f"--rfc2136-port={port}",
        f"--rfc2136-zone={ZONE}",
        f"--rfc2136-tsig-keyname={KEY}",
        f"--rfc2136-tsig-secret-alg={ALGORITHM}",
        "--rfc2136-tsig-axfr",
        "--registry=txt",
        f"--txt-owner-id={KEY}",
        "--policy=sync",
        f"--interval={SYNC_INTERVAL}",
        f"--metrics-address=127.0.0.1:{metrics_port}",
        "--log-format=json",
    ]


NAMED_PIDFILE = "named.pid"  # ours (named's own is named.run.pid)
EXTERNAL_DNS_PIDFILE = "external-dns.pid"  # the restart loop's


def stop_dns(directory: Path) -> None:
    """Stop the lab's named and external-dns, found by their pid files in directory."""
    procs.kill_pidfile(directory / EXTERNAL_DNS_PIDFILE, EXTERNAL_DNS_MARKER)
    procs.kill_pidfile(directory / NAMED_PIDFILE, NAMED_MARKER)


class LabDNS:
    """named and external-dns for one lab: files and pid files in `directory`."""

    def __init__(
        self,
        directory: Path,
        address: str,
        kubeconfig: Path,
        owner_env: Mapping[str, str],
        port: int = PORT,
    ) -> None:
        self.directory, self.address, self.port = directory, address, port
        self.kubeconfig, self.owner_env = kubeconfig, dict(owner_env)

    @classmethod
    def for_lab(cls, plan: LabPlan, kubeconfig: Path) -> LabDNS:
        """The lab's: in its dns dir, on its bridge, marked as its processes."""
        address, port = lab_dns_server(plan)
        return cls(plan.dns_dir, address, kubeconfig, plan.owner_env(), port)

    @property
    def server(self) -> tuple[str, int]:
        return self.address, self.port

    @property
    def named_pidfile(self) -> Path:
        return self.directory / NAMED_PIDFILE

    @property
    def external_dns_pidfile(self) -> Path:
        return self.directory / EXTERNAL_DNS_PIDFILE

    # --- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 30) -> LabDNS:
        self.directory.mkdir(parents=True, exist_ok=True)
        secret = base64.b64encode(secrets.token_bytes(32)).decode()
        (self.directory / "tsig.secret").write_text(secret)
        self._write_conf(updates=True)
        (self.directory / f"{ZONE}.zone").write_text(zone_file(self.address))
        self._start_named(timeout)
        self._start_external_dns(secret, timeout)
        return self

    def stop(self) -> None:
        stop_dns(self.directory)

    def __enter__(self) -> LabDNS:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def refuse_updates(self, refuse: bool = True) -> None:
        """Make named refuse (or accept again) every update to the zone: a configuration
        reload, as an operator of the DNS server would make one."""
        secret = (self.directory / "tsig.secret").read_text()
        self._write_conf(updates=not refuse, secret=secret)
        pid = procs.pidfile_pid(self.named_pidfile, NAMED_MARKER)
        if pid is None:
            raise LabError(f"the lab's named is not running (see {self.directory}/named.log)")
        log_size = self._named_log.stat().st_size
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while b"reloading configuration succeeded" not in self._named_log.read_bytes()[log_size:]:
            if time.monotonic() > deadline:
                raise LabError(f"named did not reload; see {self._named_log}")
            time.sleep(0.05)

    # --- the two processes -------------------------------------------------------------------
    @property
    def _named_log(self) -> Path:
        return self.directory / "named.log"

    def _write_conf(self, updates: bool, secret: str | None = None) -> None:
        secret = secret or (self.directory / "tsig.secret").read_text()
        conf = named_conf(self.directory, self.address, self.port, secret, updates)
        (self.directory / NAMED_MARKER).write_text(conf)

    def _start_named(self, timeout: float) -> None:
        argv = ["named", "-g", "-c", str(self.directory / NAMED_MARKER)]
        proc = services.spawn(argv, self._named_log, self.named_pidfile, self.owner_env)
        deadline = time.monotonic() + timeout
        while not isinstance(ask(ZONE, self.address, self.port, "SOA", 0.2), Answered):
            if proc.poll() is not None:
                raise LabError(f"named exited {proc.returncode}; see {self._named_log}")
            if time.monotonic() > deadline:
                raise LabError(f"named is not answering after {timeout}s; see {self._named_log}")
            time.sleep(0.05)

    def _start_external_dns(self, secret: str, timeout: float) -> None:
        (metrics_port,) = free_ports(1)
        argv = external_dns_argv(
            external_dns_binary(), self.kubeconfig, self.address, self.port, metrics_port
        )
        # As a kubelet restarts a container that exits (it does on a refused update).
        supervised = ["bash", "-c", 'while :; do "$@"; sleep 1; done', EXTERNAL_DNS_MARKER, *argv]
        log = self.directory / "external-dns.log"
        env = {**self.owner_env, "EXTERNAL_DNS_RFC2136_TSIG_SECRET": secret}
        proc = services.spawn(supervised, log, self.external_dns_pidfile, env)
        url = f"http://127.0.0.1:{metrics_port}/healthz"
        services.wait_answering(url, proc, "external-dns", log, timeout)
