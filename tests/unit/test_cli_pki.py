"""`kubectl berth pki metrics`: Prometheus's certificate, from the CA `pki init` made."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from berth_common.pki import METRICS_ORGANIZATION
from kubectl_berth.cli import main
from kubectl_berth.client import CLIError
from kubectl_berth.enroll import check_machine_name

pytestmark = pytest.mark.unit


def test_pki_metrics_issues_a_metrics_certificate_of_the_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = tmp_path / "pki"
    assert main(["pki", "metrics", str(pki)]) == 1  # no CA yet: said, nothing written
    assert "run kubectl berth pki init" in capsys.readouterr().err
    assert not pki.exists()

    assert main(["pki", "init", str(pki)]) == 0
    assert main(["pki", "metrics", str(pki)]) == 0
    cert = x509.load_pem_x509_certificate((pki / "metrics.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    assert cert.issuer == ca.subject
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == [METRICS_ORGANIZATION]
    assert (pki / "metrics.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("name", ["berth-operator", "berth-metrics"])
def test_a_machine_cannot_take_the_name_of_berths_own_certificates(name: str) -> None:
    with pytest.raises(CLIError, match="reserved for berth's own certificates"):
        check_machine_name(name)
