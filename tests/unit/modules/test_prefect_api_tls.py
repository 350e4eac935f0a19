"""The shared client over HTTPS: a certificate verified against ca_path, refused without it.

A real TLS server on loopback, with a CA and a leaf certificate made here by `cryptography` (the
library ansible-core itself needs), the way the stack's TLS entry is verified with its local CA.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import prefect_module_runner  # noqa: F401 (puts module_utils on ansible.module_utils' path)
import pytest
from ansible.module_utils.prefect_api import ApiError, PrefectApi, http_request
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

pytestmark = pytest.mark.unit


def certificate(
    subject: str, issuer_key: ec.EllipticCurvePrivateKey | None, issuer: x509.Name | None, ca: bool
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        # Python 3.13 verifies strictly (VERIFY_X509_STRICT): key identifiers are required.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key((issuer_key or key).public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return key, builder.sign(issuer_key or key, hashes.SHA256())


class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"true"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on loopback; yields its base URL and the CA file that verifies it."""
    directory = tmp_path_factory.mktemp("tls")
    ca_key, ca = certificate("test CA", None, None, ca=True)
    leaf_key, leaf = certificate("127.0.0.1", ca_key, ca.subject, ca=False)
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "leaf.pem").write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "leaf.pem")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/api", directory / "ca.crt"
    server.shutdown()


def test_the_certificate_is_verified_against_ca_path(tls_server: tuple[str, Path]) -> None:
    url, ca_file = tls_server
    assert http_request(f"{url}/health", ca_path=str(ca_file)).body == b"true"
    api = PrefectApi.from_params(
        {
            "api_url": url,
            "api_auth_user": "admin",
            "api_auth_password": None,
            "validate_certs": True,
            "ca_path": str(ca_file),
            "request_timeout": 5.0,
        }
    )
    assert api.request("GET", "/health").status == 200


def test_without_the_ca_the_certificate_is_refused_and_the_error_says_so(
    tls_server: tuple[str, Path],
) -> None:
    url, _ = tls_server
    with pytest.raises(ApiError, match=r"TLS or connection error .*CERTIFICATE_VERIFY_FAILED"):
        http_request(f"{url}/health")
    assert http_request(f"{url}/health", validate_certs=False).status == 200
