"""The shared client's error messages, produced with real sockets on loopback."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from typing import ClassVar

import prefect_module_runner  # noqa: F401 (puts module_utils on ansible.module_utils' path)
import pytest
from ansible.module_utils.prefect_api import ApiError, PrefectApi, excerpt, http_request, join_url

pytestmark = pytest.mark.unit


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


BUSY_CALLS: dict[str, int] = {}


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A loopback stand-in's plumbing: answer with a code and a body, log nothing."""

    def answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


class Handler(QuietHandler):
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
        self.answer(code, body)


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


class CsrfHandler(QuietHandler):
    """Prefect's CSRF rules in small: /on issues tokens and refuses a write without a valid one
    (403), /off answers the token request 422 and takes any write, like a server with the
    protection off. /on revokes every token after revoke_after writes, as an expiry would."""

    tokens: ClassVar[dict[str, str]] = {}
    fetches: ClassVar[list[str]] = []
    writes: ClassVar[list[dict[str, str]]] = []
    revoke_after = 0

    def do_GET(self) -> None:
        if "/csrf-token?client=" not in self.path:
            return self.answer(200, b"{}")
        if self.path.startswith("/off/"):
            return self.answer(422, b'{"detail": "CSRF protection is disabled."}')
        client = self.path.split("client=", 1)[1]
        token = f"token-{len(self.fetches)}"
        self.fetches.append(client)
        self.tokens[client] = token
        return self.answer(200, b'{"token": "%s", "client": "%s"}' % (token.encode(), client.encode()))

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        sent = {
            "token": self.headers.get("Prefect-Csrf-Token", ""),
            "client": self.headers.get("Prefect-Csrf-Client", ""),
        }
        type(self).writes.append(sent)
        if self.path.startswith("/on/"):
            if self.tokens.get(sent["client"]) != sent["token"] or not sent["token"]:
                return self.answer(403, b'{"detail": "Invalid CSRF token or client identifier."}')
            if self.revoke_after and len(self.writes) >= self.revoke_after:
                self.tokens.clear()
        return self.answer(200, b"[]")


@pytest.fixture
def csrf_url() -> Iterator[str]:
    CsrfHandler.tokens, CsrfHandler.fetches, CsrfHandler.writes = {}, [], []
    CsrfHandler.revoke_after = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CsrfHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_writes_carry_one_csrf_token_fetched_once_and_reads_carry_none(csrf_url: str) -> None:
    api = PrefectApi(f"{csrf_url}/on/api")
    api.get("flows")
    assert CsrfHandler.fetches == []
    api.post("flows/filter")
    api.retrying(2).post("flows/filter")  # a clone shares the token
    assert len(CsrfHandler.fetches) == 1
    client = CsrfHandler.fetches[0]
    assert CsrfHandler.writes == [{"token": "token-0", "client": client}] * 2


def test_a_revoked_csrf_token_is_renewed_once(csrf_url: str) -> None:
    CsrfHandler.revoke_after = 1
    api = PrefectApi(f"{csrf_url}/on/api")
    api.post("flows/filter")
    api.post("flows/filter")  # refused with the revoked token, then sent with a new one
    assert [write["token"] for write in CsrfHandler.writes] == ["token-0", "token-0", "token-1"]


def test_a_server_without_csrf_protection_gets_no_headers_after_one_question(csrf_url: str) -> None:
    api = PrefectApi(f"{csrf_url}/off/api")
    api.post("flows/filter")
    api.post("flows/filter")
    assert CsrfHandler.writes == [{"token": "", "client": ""}] * 2


def test_a_write_without_the_token_is_refused_by_a_protected_server(csrf_url: str) -> None:
    with pytest.raises(ApiError) as err:
        PrefectApi(f"{csrf_url}/on/api").send_without_csrf_token("POST", "flows/filter", {})
    assert err.value.status == 403
