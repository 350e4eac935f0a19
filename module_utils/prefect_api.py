# Copyright: the prefect-stack project contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small client for the Prefect v3 REST API and the stack's other HTTP services.

Everything goes through ``ansible.module_utils.urls.Request`` (standard library underneath),
so the hosts the modules run on need nothing installed. ``Request.open`` installs its opener
process-wide; every request made here uses the same settings (no Unix socket, one TLS policy per
module run), so concurrent threads cannot pick up an opener that sends them elsewhere.

Every foreseeable failure becomes an ``ApiError`` whose message names the URL and, for HTTP 401,
the variable to check. Credentials travel only in the Authorization header, never in a message.

With Prefect's CSRF protection on, every POST, PUT, PATCH and DELETE carries a token the client
fetched from ``GET /api/csrf-token?client=<id>`` (``Prefect-Csrf-Token`` and
``Prefect-Csrf-Client``), the way Prefect's own client does; a server with the protection off
answers that request 422 and the client stops asking.
"""

from __future__ import annotations

import copy
import json
import socket
import ssl
import threading
import time
import urllib.error
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import Request, make_context

# The inventory variable and the module option an operator fixes after an HTTP 401.
DEFAULT_AUTH_HINT = "prefect_server_auth_password (module option api_auth_password)"
ERROR_BODY_LIMIT = 200
# The methods Prefect's CSRF middleware guards.
CSRF_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_TOKEN_HEADER = "Prefect-Csrf-Token"
CSRF_CLIENT_HEADER = "Prefect-Csrf-Client"
_TLS_CONTEXTS: dict[tuple[bool, str | None], ssl.SSLContext] = {}
_TLS_LOCK = threading.Lock()


class ApiError(Exception):
    """A request that did not produce the expected answer; ``str()`` is a one-line reason."""

    def __init__(self, message: str, status: int | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.url = url


@dataclass
class Response:
    """What came back: the HTTP status, the raw body and the headers (lower-cased names)."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body decoded as JSON, or an ApiError saying it was not JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ApiError(f"answer is not JSON ({exc.__class__.__name__}): {excerpt(self.body)}") from exc

    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")


def excerpt(body: bytes | str, limit: int = ERROR_BODY_LIMIT) -> str:
    """A single-line, bounded excerpt of a response body for error messages."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def describe_error(
    exc: BaseException, url: str, timeout: float, auth_hint: str = DEFAULT_AUTH_HINT
) -> ApiError:
    """Turn a transport or HTTP exception into an ApiError with a message an operator can act on."""
    if isinstance(exc, urllib.error.HTTPError):
        return _describe_http_error(exc, url, auth_hint)
    reason: Any = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ConnectionRefusedError):
        return ApiError(
            f"connection refused: {url} (nothing listens there: is the service running?)", url=url
        )
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return ApiError(f"no answer within {timeout:g} s: {url}", url=url)
    if isinstance(reason, socket.gaierror):
        return ApiError(f"cannot resolve the host name in {url}: {reason.strerror or reason}", url=url)
    if isinstance(reason, (ssl.SSLError, UrlsConnectionError)):
        return ApiError(f"TLS or connection error for {url}: {reason} (see validate_certs)", url=url)
    if isinstance(reason, FileNotFoundError):
        return ApiError(f"no such socket for {url}: {reason.filename or reason}", url=url)
    if isinstance(reason, PermissionError):
        return ApiError(f"permission denied for {url}: {reason.filename or reason}", url=url)
    if isinstance(reason, OSError):
        return ApiError(f"{reason.__class__.__name__} for {url}: {reason.strerror or reason}", url=url)
    return ApiError(f"{reason.__class__.__name__} for {url}: {reason}", url=url)


def _describe_http_error(exc: urllib.error.HTTPError, url: str, auth_hint: str) -> ApiError:
    if exc.code == 401:
        return ApiError(f"HTTP 401 Unauthorized from {url}: check {auth_hint}", status=401, url=url)
    try:
        body = exc.read()
    except (OSError, ValueError):
        body = b""
    detail = f": {excerpt(body)}" if body else ""
    return ApiError(f"HTTP {exc.code} from {url}{detail}", status=exc.code, url=url)


def http_request(
    url: str,
    method: str = "GET",
    payload: Any = None,
    timeout: float = 5.0,
    validate_certs: bool = True,
    username: str | None = None,
    password: str | None = None,
    unix_socket: str | None = None,
    ca_path: str | None = None,
    auth_hint: str = DEFAULT_AUTH_HINT,
    extra_headers: dict[str, str] | None = None,
) -> Response:
    """One HTTP request; JSON-encodes ``payload``; raises ApiError on any failure or HTTP status >= 400."""
    headers = {"Accept": "application/json", **(extra_headers or {})}
    data = None
    if payload is not None:
        data = json.dumps(payload).encode("utf-8")
        headers["Content-Type"] = "application/json"
    use_auth = bool(username or password)
    try:
        resp = Request().open(
            method,
            url,
            data=data,
            headers=headers,
            timeout=timeout,
            validate_certs=validate_certs,
            url_username=username if use_auth else None,
            url_password=password if use_auth else None,
            force_basic_auth=use_auth,
            unix_socket=unix_socket,
            use_netrc=False,
            follow_redirects="safe",
            http_agent="prefect-stack-ansible",
            context=tls_context(url, validate_certs, ca_path),
        )
        with resp:
            body = resp.read()
            status = resp.status
            resp_headers = {k.lower(): v for k, v in resp.headers.items()}
    except (urllib.error.URLError, UrlsConnectionError, OSError, ValueError) as exc:
        raise describe_error(exc, url, timeout, auth_hint) from None
    return Response(status=status, body=body, headers=resp_headers)


def tls_context(url: str, validate_certs: bool, ca_path: str | None = None) -> ssl.SSLContext:
    """One TLS context per process, policy and CA file: loading a CA bundle costs ~0.1 s.

    ``ca_path`` is a PEM file of CA certificates trusted instead of the system's bundle.

    Plain http:// URLs get a context that is never used (urllib wants one), without the CA bundle.
    """
    if not url.startswith("https://"):
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    key = (validate_certs, ca_path or None)
    with _TLS_LOCK:
        if key not in _TLS_CONTEXTS:
            _TLS_CONTEXTS[key] = make_context(cafile=ca_path or None, validate_certs=validate_certs)
        return _TLS_CONTEXTS[key]


def prefect_connection_argument_spec(request_timeout: float = 5.0) -> dict[str, dict[str, Any]]:
    """The API connection options every Prefect module takes (documented by doc fragment prefect_connection).

    ``request_timeout`` is a parameter because prefect_work_pool waits longer for its writes than
    prefect_health for its reads; a module with another default documents it in its own options.
    """
    return {
        "api_url": {"type": "str", "default": "http://127.0.0.1:4200/api"},
        "api_auth_user": {"type": "str", "default": "admin"},
        "api_auth_password": {"type": "str", "no_log": True},
        "validate_certs": {"type": "bool", "default": True},
        "ca_path": {"type": "path"},
        "request_timeout": {"type": "float", "default": request_timeout},
    }


def join_url(base: str, path: str) -> str:
    """``base`` without trailing slash + ``/`` + ``path`` without leading slash."""
    return base.rstrip("/") + "/" + path.lstrip("/")


def quote_name(name: str) -> str:
    """A name made safe for one URL path segment."""
    return quote(name, safe="")


class CsrfSession:
    """One CSRF client id and its token, shared by the threads of one module run.

    ``fetch(client)`` returns a token, or None when the server has CSRF protection off; then no
    header is ever sent again.
    """

    def __init__(self) -> None:
        self.client = str(uuid.uuid4())
        self._token: str | None = None
        self._disabled = False
        self._lock = threading.Lock()

    def headers(self, fetch: Callable[[str], str | None]) -> dict[str, str]:
        """The two CSRF headers (fetching the token on first use), or {} when CSRF is off."""
        with self._lock:
            if self._disabled:
                return {}
            if self._token is None:
                self._token = fetch(self.client)
                self._disabled = self._token is None
            return self._as_headers()

    def renewed(self, stale: dict[str, str], fetch: Callable[[str], str | None]) -> dict[str, str]:
        """Fresh headers after ``stale`` ones were refused (another thread may have renewed them)."""
        with self._lock:
            if self._token is not None and stale.get(CSRF_TOKEN_HEADER) == self._token:
                self._token = fetch(self.client)
                self._disabled = self._token is None
            return self._as_headers()

    def _as_headers(self) -> dict[str, str]:
        if self._token is None:
            return {}
        return {CSRF_TOKEN_HEADER: self._token, CSRF_CLIENT_HEADER: self.client}


class PrefectApi:
    """The Prefect v3 REST API below ``api_url`` (for example ``http://127.0.0.1:4200/api``)."""

    def __init__(
        self,
        api_url: str,
        username: str | None = None,
        password: str | None = None,
        validate_certs: bool = True,
        timeout: float = 5.0,
        auth_hint: str = DEFAULT_AUTH_HINT,
        busy_retries: int = 0,
        ca_path: str | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        # SQLite answers "database is locked" under concurrent writes; Prefect turns it into 503
        # and rolls the transaction back, so the same request may be sent again.
        self.busy_retries = busy_retries
        self._username = username
        self._password = password
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = timeout
        self.auth_hint = auth_hint
        self._csrf = CsrfSession()

    @classmethod
    def from_params(cls, params: dict[str, Any], busy_retries: int = 0) -> PrefectApi:
        """The client for a module's connection options (prefect_connection_argument_spec)."""
        return cls(
            params["api_url"],
            username=params["api_auth_user"],
            password=params["api_auth_password"],
            validate_certs=params["validate_certs"],
            timeout=params["request_timeout"],
            busy_retries=busy_retries,
            ca_path=params.get("ca_path"),
        )

    def retrying(self, busy_retries: int) -> PrefectApi:
        """The same client, retrying SQLite's transient 503 ``busy_retries`` times."""
        clone = copy.copy(self)
        clone.busy_retries = busy_retries
        return clone

    def url(self, path: str) -> str:
        """The absolute URL of an API path."""
        return join_url(self.api_url, path)

    def request(self, method: str, path: str, payload: Any = None) -> Response:
        """A request to the API (basic auth when a password was given); 503 retried ``busy_retries`` times."""
        for attempt in range(self.busy_retries + 1):
            try:
                return self._request_once(method, path, payload)
            except ApiError as exc:
                if exc.status != 503 or attempt == self.busy_retries:
                    raise
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    def _request_once(self, method: str, path: str, payload: Any) -> Response:
        if method.upper() not in CSRF_METHODS:
            return self._send(method, path, payload)
        headers = self._csrf.headers(self._fetch_csrf_token)
        try:
            return self._send(method, path, payload, headers)
        except ApiError as exc:
            # A token lives an hour on the server (PREFECT_SERVER_API_CSRF_TOKEN_EXPIRATION): a
            # long wait may outlive it. One fresh token, one more try.
            if exc.status != 403 or not headers:
                raise
            return self._send(method, path, payload, self._csrf.renewed(headers, self._fetch_csrf_token))

    def send_without_csrf_token(self, method: str, path: str, payload: Any = None) -> Response:
        """One authenticated request without the CSRF headers (proves that the server demands them)."""
        return self._send(method, path, payload)

    def _send(
        self, method: str, path: str, payload: Any = None, headers: dict[str, str] | None = None
    ) -> Response:
        return http_request(
            self.url(path),
            method=method,
            payload=payload,
            timeout=self.timeout,
            validate_certs=self.validate_certs,
            ca_path=self.ca_path,
            username=self._username if self._password else None,
            password=self._password or None,
            auth_hint=self.auth_hint,
            extra_headers=headers,
        )

    def _fetch_csrf_token(self, client: str) -> str | None:
        """A CSRF token for ``client``, or None when the server's CSRF protection is off."""
        try:
            answer = self._send("GET", f"csrf-token?client={quote_name(client)}").json()
        except ApiError as exc:
            if exc.status == 422:  # "CSRF protection is disabled."
                return None
            raise
        token = answer.get("token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise ApiError(f"{self.url('csrf-token')} answered no token: {excerpt(str(answer))}")
        return token

    def get(self, path: str) -> Any:
        """GET, decoded JSON."""
        return self.request("GET", path).json()

    def post(self, path: str, payload: Any = None) -> Any:
        """POST (reads in Prefect are POST .../filter), decoded JSON."""
        return self.request("POST", path, {} if payload is None else payload).json()

    def patch(self, path: str, payload: Any) -> None:
        """PATCH; Prefect answers 204 without a body."""
        self.request("PATCH", path, payload)

    def delete(self, path: str) -> None:
        """DELETE."""
        self.request("DELETE", path)

    def get_or_none(self, path: str) -> Any:
        """GET, or None when the object does not exist (HTTP 404)."""
        try:
            return self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    # Work pools and queues -------------------------------------------------------------

    def read_work_pool(self, name: str) -> dict[str, Any] | None:
        """The work pool called ``name``, or None."""
        return self.get_or_none(f"work_pools/{quote_name(name)}")

    def read_work_queues(self, pool: str) -> list[dict[str, Any]]:
        """Every queue of a pool (Prefect pages at 200; a pool has few queues)."""
        return self.post(f"work_pools/{quote_name(pool)}/queues/filter", {"limit": 200})

    def read_workers(self, pool: str) -> tuple[list[dict[str, Any]], str | None]:
        """The workers that ever polled a pool and the server's Date header (its clock)."""
        resp = self.request("POST", f"work_pools/{quote_name(pool)}/workers/filter", {"limit": 200})
        return resp.json() or [], resp.headers.get("date")

    def default_base_job_template(self, pool_type: str) -> dict[str, Any] | None:
        """The default base job template the server knows for a worker type, or None.

        Prefect 3 serves the worker metadata of its collection registry at
        ``/collections/views/aggregate-worker-metadata`` (from the registry, or from the copy
        bundled with the server when the registry is out of reach). The CLI's
        ``prefect work-pool create --type X`` uses the same data for types it has no local class for.
        """
        metadata = self.get("collections/views/aggregate-worker-metadata") or {}
        for collection in metadata.values():
            if not isinstance(collection, dict):
                continue
            for worker in collection.values():
                if isinstance(worker, dict) and worker.get("type") == pool_type:
                    template = worker.get("default_base_job_configuration")
                    if isinstance(template, dict) and template:
                        return template
        return None
