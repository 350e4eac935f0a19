"""The shared client over HTTPS: a certificate verified against ca_path, refused without it.

A real TLS server on loopback, with a throwaway CA and leaf (tests/tls_certificates.py), the way
the stack's TLS entry is verified with its local CA.
"""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import prefect_module_runner  # noqa: F401 (puts module_utils on ansible.module_utils' path)
import pytest
from ansible.module_utils.prefect_api import ApiError, PrefectApi, http_request
from tls_certificates import write_ca_and_leaf

pytestmark = pytest.mark.unit


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
    ca_file = write_ca_and_leaf(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "leaf.pem")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/api", ca_file
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
