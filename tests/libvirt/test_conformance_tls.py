"""The TLS conformance case (2.1/1, spec.md §2.1) against a real libvirtd 9.0 listening on
TLS with certificates made by trustme (issue 16 part 1: TLS against libvirtd), and against
our storage server over TLS: both send libvirt's confirmation byte after the handshake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trustme
from libvirt_servers import TlsLibvirtd

from xdrstream.cli import main
from xdrstream.libvirt.storage_server import StorageServer
from xdrstream.transport import tls


def _tls_case(
    port: int, ca: Path, *client: Path, out: Path, extra: tuple[str, ...] = ()
) -> tuple[int, dict]:
    key_pair = ["--tls-cert", str(client[0]), "--tls-key", str(client[1])] if client else []
    code = main(
        ["conformance", "run", "--target", f"tls:127.0.0.1:{port}", "--tls-ca", str(ca),
         *key_pair, "--program", "libvirt", "--cases", "2.1/1", "--json", str(out), *extra]
    )  # fmt: skip
    [result] = json.loads(out.read_text())["results"]
    return code, result


@pytest.mark.real_peers
@pytest.mark.timeout(120)
def test_the_tls_case_passes_against_libvirtd(tls_daemon: TlsLibvirtd, tmp_path: Path) -> None:
    code, result = _tls_case(
        tls_daemon.port, tls_daemon.ca, tls_daemon.client_cert, tls_daemon.client_key,
        out=tmp_path / "tls.json",
    )  # fmt: skip
    assert (result["id"], result["outcome"], code) == ("2.1/1", "pass", 0), result


def test_the_tls_case_passes_against_our_storage_server(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    context = tls.server_context(tmp_path / "server.pem", tmp_path / "server.pem")
    (tmp_path / "images").mkdir()
    with StorageServer("tcp:127.0.0.1:0", tmp_path / "images", tls=context) as running:
        code, result = _tls_case(
            running.address.port,
            tmp_path / "ca.pem",
            out=tmp_path / "tls.json",
            extra=("--libvirt-pool", "images"),
        )
    assert (result["outcome"], code) == ("pass", 0), result
