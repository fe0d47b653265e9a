"""A real kube-apiserver with its own etcd on 127.0.0.1, for the tests and the lab.

What controller-runtime's envtest runs: etcd plus kube-apiserver, no controller-manager,
scheduler or kubelet. Authentication by client certificates (the admin is in
system:masters) and ServiceAccount tokens; RBAC authorization. The binaries come from
`hack/kube/build.sh` (kube-apiserver, kubectl, helm: `berth_lab.kube_tools`) and Debian's
etcd-server; the flags are the ones verified in hack/kube/NOTES.md.

    with KubeAPIServer() as kube:
        Kubectl(kube.admin_kubeconfig)("get", "ns")

`stop()` kills the two processes by pid and removes a state dir it created itself. Should
the caller die without stop(), the kernel kills both (PR_SET_PDEATHSIG via setpriv) — when
the *thread* that called start() ends, so start it from a thread that lives as long.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from berth_common.kubepki import KubePKI, create_kube_pki
from berth_lab.kube_tools import BUILD_HINT, KubeError, bin_dir
from berth_lab.kubeconfig import (
    Kubectl,
    client_cert_credentials,
    service_account_kubeconfig,
    write_kubeconfig,
)
from berth_lab.plan import plan_lab
from berth_lab.procs import alive

log = logging.getLogger("berth.lab.kube")

READY_TIMEOUT = 60.0
_PORT_RETRIES = 3


@dataclass(frozen=True)
class KubeBinaries:
    apiserver: Path
    etcd: Path


def find_binaries() -> KubeBinaries:
    apiserver = bin_dir() / "kube-apiserver"
    if not os.access(apiserver, os.X_OK):
        raise KubeError(f"{apiserver} not found: {BUILD_HINT} (or set BERTH_KUBE_BIN)")
    etcd = os.environ.get("BERTH_ETCD") or shutil.which("etcd")
    if not etcd:
        raise KubeError("etcd not found: apt-get install etcd-server (or set BERTH_ETCD)")
    return KubeBinaries(apiserver=apiserver, etcd=Path(etcd))


@dataclass(frozen=True)
class StartupTimes:
    """Seconds from start() to etcd healthy, and to the apiserver's /readyz answering ok."""

    etcd: float
    apiserver: float

    @property
    def total(self) -> float:
        return self.etcd + self.apiserver


def free_ports(count: int) -> list[int]:
    # All sockets stay open until every port is chosen, so the ports differ; another
    # process may still grab one before etcd binds it, which start() retries.
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def _die_with_parent(argv: list[str]) -> list[str]:
    # If the test run itself is killed, the kernel kills etcd and the apiserver too
    # (PR_SET_PDEATHSIG), so they cannot outlive it. Tied to the starting thread.
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


def _local_client(verify: ssl.SSLContext | bool = True) -> httpx.Client:
    # Loopback only: an HTTP(S)_PROXY from the environment must not be used.
    return httpx.Client(verify=verify, trust_env=False)


class _PortInUse(KubeError):
    pass


class KubeAPIServer:
    """etcd + kube-apiserver on free loopback ports; start(), stop() or a with block."""

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        keep_state: bool | None = None,
        detached: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        # A caller-given state dir (the lab's) keeps its logs and kubeconfig after stop()
        # for a look afterwards; a temporary one is removed.
        self.binaries = find_binaries()  # first: a missing binary must not leave a tmp dir
        owns_dir = state_dir is None
        self.state_dir = state_dir or Path(tempfile.mkdtemp(prefix="berth-kube-"))
        self.keep_state = (not owns_dir) if keep_state is None else keep_state
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.url = ""
        self.times: StartupTimes | None = None
        self._pki: KubePKI | None = None
        # Detached: outlives its starter (the demo's --keep); `reap_stale` or Lab.down()
        # stop it later by its pid files.
        self.detached = detached
        self.extra_env = dict(env or {})  # a lab's mark (plan.OWNER_ENV)

    @classmethod
    def for_lab(cls, lab: str, detached: bool = False) -> KubeAPIServer:
        """The API server of lab `lab`, state in /var/lib/berth-lab/<lab>/kube, its
        processes marked as the lab's: `Lab.down()` stops them."""
        plan = plan_lab(lab)
        return cls(plan.kube_dir, detached=detached, env=plan.owner_env())

    # --- paths -----------------------------------------------------------------------
    @property
    def admin_kubeconfig(self) -> Path:
        return self.state_dir / "admin.kubeconfig"

    @property
    def pki(self) -> KubePKI:
        if self._pki is None:
            raise KubeError("not started")
        return self._pki

    def log_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.log"

    def kubectl(self) -> Kubectl:
        return Kubectl(self.admin_kubeconfig, cache_dir=self.state_dir / "kubectl-cache")

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> KubeAPIServer:
        self._reap_stale()
        for name in ("etcd", "apiserver-certs", "kubectl-cache"):
            shutil.rmtree(self.state_dir / name, ignore_errors=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._pki = create_kube_pki(self.state_dir / "pki")
            self._start_with_retries()
            write_kubeconfig(
                self.admin_kubeconfig,
                server=self.url,
                ca_pem=self.pki.ca.cert.read_bytes(),
                user="berth-admin",
                credentials=client_cert_credentials(
                    self.pki.admin.cert.read_bytes(), self.pki.admin.key.read_bytes()
                ),
            )
        except BaseException:
            # Also on KeyboardInterrupt: never leave a half-started pair running.
            self.stop()
            raise
        assert self.times is not None
        log.info(
            "kube-apiserver ready",
            extra={
                "url": self.url,
                "etcd_s": round(self.times.etcd, 2),
                "apiserver_s": round(self.times.apiserver, 2),
            },
        )
        return self

    def _start_with_retries(self) -> None:
        for attempt in range(1, _PORT_RETRIES + 1):
            try:
                self._start_processes()
                return
            except _PortInUse as e:
                self._stop_processes()
                shutil.rmtree(self.state_dir / "etcd", ignore_errors=True)
                if attempt == _PORT_RETRIES:
                    raise KubeError(f"no free ports after {attempt} attempts: {e}") from e

    def _start_processes(self) -> None:
        etcd_port, peer_port, api_port = free_ports(3)
        started = time.monotonic()
        etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=default",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
            ],
        )
        self._wait("etcd", lambda http: http.get(f"{etcd_url}/health"), _local_client())
        etcd_ready = time.monotonic()

        pki = self.pki
        self.url = f"https://127.0.0.1:{api_port}"
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.apiserver),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                f"--secure-port={api_port}",
                "--advertise-address=127.0.0.1",
                f"--tls-cert-file={pki.apiserver.cert}",
                f"--tls-private-key-file={pki.apiserver.key}",
                f"--client-ca-file={pki.ca.cert}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={self.url}",
                f"--service-account-key-file={pki.service_accounts.public}",
                f"--service-account-signing-key-file={pki.service_accounts.private}",
                "--service-cluster-ip-range=10.0.0.0/24",
                # Keeps it from writing self-signed certs into its working directory.
                f"--cert-dir={self.state_dir / 'apiserver-certs'}",
                # The default `lease` reconciler rejects a loopback advertise address and
                # logs an error on every sync; nothing here needs the endpoints.
                "--endpoint-reconciler-type=none",
            ],
        )
        tls = ssl.create_default_context(cafile=str(pki.ca.cert))
        tls.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
        self._wait(
            "kube-apiserver", lambda http: http.get(f"{self.url}/readyz"), _local_client(tls)
        )
        self.times = StartupTimes(etcd_ready - started, time.monotonic() - etcd_ready)

    def _spawn(self, name: str, argv: list[str]) -> None:
        # etcd reads ETCD_* variables as flags; none of the caller's may leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        env.update(self.extra_env)
        with open(self.log_path(name), "wb") as out:
            proc = subprocess.Popen(
                argv if self.detached else _die_with_parent(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                env=env,
            )
        self._procs[name] = proc
        (self.state_dir / f"{name}.pid").write_text(f"{proc.pid}\n")

    def _wait(
        self,
        name: str,
        probe: Callable[[httpx.Client], httpx.Response],
        http: httpx.Client,
    ) -> None:
        proc = self._procs[name]
        deadline = time.monotonic() + READY_TIMEOUT
        with http:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    tail = self.log_path(name).read_text(errors="replace")[-2000:]
                    if "address already in use" in tail:
                        raise _PortInUse(f"{name}: {tail.strip().splitlines()[-1]}")
                    raise KubeError(f"{name} exited {proc.returncode}:\n{tail}")
                with contextlib.suppress(httpx.TransportError):
                    if probe(http).status_code == 200:
                        return
                time.sleep(0.05)
        raise KubeError(f"{name} not ready after {READY_TIMEOUT}s; see {self.log_path(name)}")

    def stop(self) -> None:
        """Stop both processes by pid (apiserver first: it writes to etcd until the end)."""
        self._stop_processes()
        if not self.keep_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def _stop_processes(self) -> None:
        for name in ("kube-apiserver", "etcd"):
            proc = self._procs.pop(name, None)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            (self.state_dir / f"{name}.pid").unlink(missing_ok=True)

    def _reap_stale(self) -> None:
        reap_stale(self.state_dir)

    @property
    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self._procs.items()}

    # --- credentials -------------------------------------------------------------------
    def service_account_kubeconfig(
        self, namespace: str, name: str, path: Path | None = None
    ) -> Path:
        """Create ServiceAccount namespace/name and a kubeconfig with a TokenRequest token."""
        path = path or self.state_dir / f"sa-{namespace}-{name}.kubeconfig"
        return service_account_kubeconfig(self.kubectl(), namespace, name, path)

    def __enter__(self) -> KubeAPIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def reap_stale(state_dir: Path) -> None:
    """Kill what a run in this state dir left (by its pid files, if still ours)."""
    for name in ("kube-apiserver", "etcd"):
        pidfile = state_dir / f"{name}.pid"
        try:
            pid = int(pidfile.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError):
            pidfile.unlink(missing_ok=True)
            continue
        # A recycled pid belongs to someone else: only kill our binary on our dir.
        if name in cmdline and str(state_dir) in cmdline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        pidfile.unlink(missing_ok=True)
