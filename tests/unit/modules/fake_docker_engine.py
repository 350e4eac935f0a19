"""A loopback stand-in for the Docker Engine API on a Unix socket, shared by the unit tests.

The modules talk to the engine with the standard library's ``http.client`` over a Unix socket;
this server answers them from a test's own data, so every Docker answer is reproducible without a
Docker engine. A test subclasses FakeDockerEngine and overrides ``answer``; ``serve`` runs it on a
socket path for the duration of a ``with`` block.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class FakeDockerEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Answers every GET with ``answer(path)`` and every POST with ``answer_post(path, body)``.

    Each answer is an HTTP status and a JSON body. ``requests`` records each request as
    "METHOD path" (query string included), in order.
    """

    daemon_threads = True

    def __init__(self, socket_path: str) -> None:
        super().__init__(socket_path, EngineRequestHandler)
        self.requests: list[str] = []

    def answer(self, path: str) -> tuple[int, Any]:
        return 404, {"message": f"page not found: {path}"}

    def answer_post(self, path: str, body: Any) -> tuple[int, Any]:
        return 404, {"message": f"page not found: {path}"}


class EngineRequestHandler(http.server.BaseHTTPRequestHandler):
    server: FakeDockerEngine

    def do_GET(self) -> None:
        self.server.requests.append(f"GET {self.path}")
        self.reply(*self.server.answer(self.path))

    def do_POST(self) -> None:
        self.server.requests.append(f"POST {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        sent = json.loads(self.rfile.read(length)) if length else None
        self.reply(*self.server.answer_post(self.path, sent))

    def reply(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: object) -> None:
        return


@contextlib.contextmanager
def serve[Engine: FakeDockerEngine](engine_class: type[Engine], socket_path: Path | str) -> Iterator[Engine]:
    """Serve ``engine_class`` on ``socket_path`` in a thread until the block ends."""
    server = engine_class(str(socket_path))
    # A short poll interval: shutdown() waits for it, at every test's teardown.
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
