"""Flux for real in the lab: its source-controller and kustomize-controller (built by
hack/kube/build.sh from the Go module proxy) against the lab's API server, and a git
server (berth_lab.git_server) holding the repositories they pull, as a cluster that
runs Flux and a Git host would.

All three run as processes of the lab (its OWNER_ENV, their files in the lab's gitops
dir), so `Lab.down()` stops them and the leftover check sees them. The controllers run
with the admin kubeconfig, as Flux's own ServiceAccounts would with cluster-admin.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from berth_lab import procs, services
from berth_lab.kube import free_ports
from berth_lab.kube_tools import crds, flux_binary
from berth_lab.kubeconfig import Kubectl

CONTROLLERS = ("source-controller", "kustomize-controller")
GIT_SERVER_MARKER = "berth_lab.git_server"
AUTHOR = ["-c", "user.name=berth lab", "-c", "user.email=lab@berth.invalid"]


def stop_flux(directory: Path) -> None:
    for name in (*CONTROLLERS, "git-server"):
        marker = GIT_SERVER_MARKER if name == "git-server" else name
        procs.kill_pidfile(directory / f"{name}.pid", marker, grace=5)


@dataclass(frozen=True)
class GitRepository:
    """A bare repository the lab's git server serves, and a work tree to commit from."""

    bare: Path
    work: Path
    url: str

    def commit(self, files: Mapping[str, str], message: str) -> str:
        """Write files (path -> text) into the work tree, commit, push; the commit's id."""
        for path, text in files.items():
            target = self.work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        git = ["git", "-C", str(self.work)]
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, *AUTHOR, "commit", "-q", "-m", message], check=True)
        subprocess.run([*git, "push", "-q", "origin", "HEAD:main"], check=True)
        head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True)
        return head.stdout.decode().strip()


class LabFlux:
    def __init__(self, directory: Path, kubectl: Kubectl, owner_env: Mapping[str, str]) -> None:
        self.directory, self.kubectl, self.owner_env = directory, kubectl, dict(owner_env)
        self.git_port = 0

    def start(self, timeout: float = 120) -> LabFlux:
        try:
            return self._start(timeout)
        except Exception:
            self.stop()  # what did start: a context manager's __exit__ would not run
            raise

    def _start(self, timeout: float) -> LabFlux:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "repositories").mkdir(exist_ok=True)
        (self.directory / "artifacts").mkdir(exist_ok=True)  # source-controller wants it made
        self.kubectl("apply", "--server-side", *(f"--filename={c}" for c in crds("flux")))
        self.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s",
            "crd/gitrepositories.source.toolkit.fluxcd.io",
            "crd/kustomizations.kustomize.toolkit.fluxcd.io",
        )  # fmt: skip
        (self.git_port,) = free_ports(1)
        self._spawn(
            "git-server",
            [sys.executable, "-m", GIT_SERVER_MARKER, str(self.directory / "repositories"),
             str(self.git_port)],
        )  # fmt: skip
        storage, source_health, source_metrics, kustomize_health, kustomize_metrics = free_ports(5)
        common = ["--enable-leader-election=false", "--log-encoding=json", "--events-addr="]
        source = self._spawn(
            "source-controller",
            [str(flux_binary("source-controller")), *common,
             f"--health-addr=127.0.0.1:{source_health}",
             f"--metrics-addr=127.0.0.1:{source_metrics}",
             f"--storage-path={self.directory / 'artifacts'}",
             f"--storage-addr=127.0.0.1:{storage}",
             f"--storage-adv-addr=127.0.0.1:{storage}"],
        )  # fmt: skip
        kustomize = self._spawn(
            "kustomize-controller",
            [str(flux_binary("kustomize-controller")), *common,
             f"--health-addr=127.0.0.1:{kustomize_health}",
             f"--metrics-addr=127.0.0.1:{kustomize_metrics}"],
        )  # fmt: skip
        for proc, name, port in (
            (source, "source-controller", source_health),
            (kustomize, "kustomize-controller", kustomize_health),
        ):
            url = f"http://127.0.0.1:{port}/readyz"
            services.wait_answering(url, proc, name, self.log_path(name), timeout)
        return self

    def stop(self) -> None:
        stop_flux(self.directory)

    def __enter__(self) -> LabFlux:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def repository(self, name: str) -> GitRepository:
        """A new, empty repository `name`.git on the git server, branch main."""
        bare = self.directory / "repositories" / f"{name}.git"
        work = self.directory / "work" / name
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
        subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
        subprocess.run(["git", "-C", str(work), "remote", "add", "origin", str(bare)], check=True)
        return GitRepository(bare, work, f"http://127.0.0.1:{self.git_port}/{name}.git")

    def log_path(self, name: str) -> Path:
        return self.directory / f"{name}.log"

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        env = {**self.owner_env, "KUBECONFIG": str(self.kubectl.kubeconfig)}
        return services.spawn(argv, self.log_path(name), self.directory / f"{name}.pid", env)
