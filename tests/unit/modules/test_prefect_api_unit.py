"""The shared client's error messages, produced with real sockets on loopback."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import prefect_module_runner  # noqa: F401 (puts module_utils on ansible.module_utils' path)
import pytest
from ansible.module_utils.prefect_api import ApiError, PrefectApi, excerpt, http_request, join_url

pytestmark = pytest.mark.unit


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


BUSY_CALLS: dict[str, int] = {}


class Handler(http.server.BaseHTTPRequestHandler):
    """A loopback stand-in that answers by path: /401, /500, /slow, /json."""

    def do_GET(self) -> None:
        if self.path.endswith("/slow"):
            threading.Event().wait(2)
        code = {"/api/401": 401, "/api/500": 500}.get(self.path, 200)
        if self.path.startswith("/api/busy"):  # 503 twice per path, then 200, like SQLite's lock
            BUSY_CALLS[self.path] = BUSY_CALLS.get(self.path, 0) + 1
            code = 503 if BUSY_CALLS[self.path] <= 2 else 200
        body = (
            b'{"detail": "boom"}'
            if code == 500
            else b'{"auth": "%s"}' % self.headers.get("Authorization", "").encode()
        )
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()
    server.server_close()


def test_refused_connection_names_the_url() -> None:
    url = f"http://127.0.0.1:{closed_port()}/api/health"
    with pytest.raises(ApiError) as err:
        http_request(url)
    assert str(err.value) == f"connection refused: {url} (nothing listens there: is the service running?)"


def test_401_names_the_auth_variable_and_never_the_password(base_url: str) -> None:
    api = PrefectApi(base_url, username="admin", password="s3cret-value")
    with pytest.raises(ApiError) as err:
        api.get("401")
    assert err.value.status == 401
    assert str(err.value) == (
        f"HTTP 401 Unauthorized from {base_url}/401: check prefect_server_auth_password "
        "(module option api_auth_password)"
    )
    assert "s3cret" not in str(err.value)


def test_basic_auth_header_is_sent_only_with_a_password(base_url: str) -> None:
    assert PrefectApi(base_url, username="admin", password="pw").get("json")["auth"] == "Basic YWRtaW46cHc="
    assert PrefectApi(base_url, username="admin", password="").get("json")["auth"] == ""


def test_server_error_carries_a_bounded_excerpt(base_url: str) -> None:
    with pytest.raises(ApiError) as err:
        PrefectApi(base_url).get("500")
    assert str(err.value) == f'HTTP 500 from {base_url}/500: {{"detail": "boom"}}'


def test_timeout_names_the_limit_and_url(base_url: str) -> None:
    with pytest.raises(ApiError) as err:
        http_request(f"{base_url}/slow", timeout=0.3)
    assert str(err.value) == f"no answer within 0.3 s: {base_url}/slow"


def test_unresolvable_host_is_named() -> None:
    with pytest.raises(ApiError, match=r"cannot resolve the host name in http://no-such-host\.invalid/api"):
        http_request("http://no-such-host.invalid/api", timeout=3)


def test_helpers() -> None:
    assert join_url("http://h/api/", "/health") == "http://h/api/health"
    assert excerpt("a\n  b" + "x" * 300, 10) == "a bxxxxxxx..."


def test_transient_503_is_retried_only_when_asked(base_url: str) -> None:
    with pytest.raises(ApiError) as err:
        PrefectApi(base_url).get("busy-once")
    assert err.value.status == 503
    assert PrefectApi(base_url).retrying(2).get("busy-twice") == {"auth": ""}
    with pytest.raises(ApiError):
        PrefectApi(base_url, busy_retries=1).get("busy-thrice")
