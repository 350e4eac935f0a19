"""The product deploy on THIS machine: `ansible-playbook playbooks/stack.yml` through the real images.

Runs the real playbooks against the real Docker engine with the test bed's stand-in images (pulled
through the daemon's registry mirror from 127.0.0.1:5000), default ports and container names, and
the generated secrets of inventory/local (inventory/local/.secrets/). One deployed stack is shared by
the whole module (a module-scoped fixture); the tests run in file order and later ones build on
earlier ones (second run, bad input, a Redis change, teardown + redeploy). Grafana is off (offline
profile: no Grafana image can be built here). Every playbook run prints its duration.

Needs `make testbed`. Leaves the stack deployed (that is the product's state on this machine).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import stat
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import websockets.exceptions
import websockets.sync.client
from cryptography import x509

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK_BIN = REPO / ".venv" / "bin" / "ansible-playbook"
OFFLINE_VARS = REPO / "tests" / "testbed" / "offline-vars.yml"
SECRETS_DIR = REPO / "inventory" / "local" / ".secrets"
BASE_DIR = Path("/opt/prefect-stack")
PREFECT_IMAGE = "prefecthq/prefect:3.9.1-python3.11"
REDIS_IMAGE = "redis:8.0.2"
NETWORK = "prefect-stack"
API = "http://127.0.0.1:4200/api"
# The stack's TLS entry (the haproxy role) and the local CA inventory/local generated for it.
ENTRY = "https://127.0.0.1:8443"
PUBLIC_URL = "https://localhost:8443"
CA_FILE = SECRETS_DIR / "tls" / "ca.crt"
# Containers with a healthcheck, and those whose image has none (the exporter's has no shell).
HEALTHCHECKED = ["redis", "prefect_server", "prometheus", "alertmanager", "prefect_worker", "haproxy"]
UNCHECKED = ["redis_exporter"]
ALL_CONTAINERS = HEALTHCHECKED + UNCHECKED
VOLUMES = ["prefect_server_data", "redis_data"]
SECRET_NAMES = [
    "redis_password",
    "redis_exporter_password",
    "redis_app_password",
    "prefect_server_auth_password",
]
# A full converge takes about 3 minutes on a loaded 2-core machine; a first deploy longer.
PLAYBOOK_TIMEOUT_S = 1500


@dataclass
class Run:
    """One ansible-playbook run: exit code, combined output, duration and the recap counters."""

    rc: int
    output: str
    seconds: float

    def recap(self) -> dict[str, int]:
        """Sum the PLAY RECAP counters over every host."""
        totals: dict[str, int] = {}
        for line in self.output.splitlines():
            if re.match(r"^\S+\s+:\s+ok=", line):
                for key, value in re.findall(r"(\w+)=(\d+)", line):
                    totals[key] = totals.get(key, 0) + int(value)
        return totals


def playbook(name: str, *args: str, offline_profile: bool = True) -> Run:
    """Run a playbook of the repository from its root (so ansible.cfg applies) and time it."""
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "PY_COLORS": "0"}
    started = time.monotonic()
    profile = ["-e", f"@{OFFLINE_VARS}"] if offline_profile else []
    result = subprocess.run(
        [str(PLAYBOOK_BIN), name, *profile, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=PLAYBOOK_TIMEOUT_S,
        check=False,
    )
    run = Run(result.returncode, result.stdout + result.stderr, time.monotonic() - started)
    print(f"[timing] ansible-playbook {name} {' '.join(args)}: {run.seconds:.1f} s rc={run.rc} {run.recap()}")
    return run


def docker(
    *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI."""
    return subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def inspect(name: str) -> dict:
    """`docker inspect` of one container."""
    return json.loads(docker("inspect", name).stdout)[0]


def docker_health(name: str, within_s: float = 15.0) -> str:
    """Docker's health status of a container, polled until healthy for at most ``within_s``.

    The playbooks wait until a service's own healthcheck passes, run in the container as soon as it
    can (compose_engine_wait); Docker itself runs it once per interval (5 s at most here), so its
    status may still say "starting" for that long after the playbook ends.
    """
    deadline = time.monotonic() + within_s
    while (status := inspect(name)["State"]["Health"]["Status"]) != "healthy" and time.monotonic() < deadline:
        time.sleep(0.5)
    return status


def started_at() -> dict[str, str]:
    """StartedAt of every stack container (changes whenever a container restarts or is recreated)."""
    return {name: inspect(name)["State"]["StartedAt"] for name in ALL_CONTAINERS}


def secret(name: str) -> str:
    return (SECRETS_DIR / name).read_text().strip()


def api(
    path: str,
    body: dict | None = None,
    auth: bool = True,
    csrf: bool = True,
    method: str = "",
    base: str = API,
) -> tuple[int, object]:
    """Call the Prefect API (POST when a body is given) and return status and decoded JSON.

    A write carries a fresh CSRF token, as Prefect's own client sends it, unless ``csrf`` is false."""
    verb = method or ("POST" if body is not None else "GET")
    request = urllib.request.Request(f"{base}{path}", method=verb)
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    if auth:
        token = base64.b64encode(f"admin:{secret('prefect_server_auth_password')}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    if csrf and verb in {"POST", "PUT", "PATCH", "DELETE"}:
        client = f"e2e-{uuid.uuid4()}"
        status, answer = api(f"/csrf-token?client={client}", auth=auth, base=base)
        assert status == 200, f"GET /csrf-token answered {status}"
        request.add_header("Prefect-Csrf-Token", answer["token"])
        request.add_header("Prefect-Csrf-Client", client)
    context = ssl.create_default_context(cafile=str(CA_FILE)) if base.startswith("https://") else None
    try:
        with urllib.request.urlopen(request, timeout=15, context=context) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, None


def redis_cli(
    *command: str, password: str | None, user: str | None = "admin"
) -> subprocess.CompletedProcess[str]:
    """redis-cli from ANOTHER container on the stack network as an ACL user (the admin unless
    named; None: no user name, i.e. Redis' default user), authenticated through REDISCLI_AUTH."""
    args = ["run", "--rm", "--network", NETWORK]
    env = {}
    if password is not None:
        args += ["-e", "REDISCLI_AUTH"]
        env["REDISCLI_AUTH"] = password
    as_user = ["--user", user] if user and password is not None else []
    return docker(*args, REDIS_IMAGE, "redis-cli", "-h", "redis", *as_user, *command, check=False, env=env)


def wait_for(predicate, timeout: float, interval: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def assert_converged(run: Run) -> None:
    assert run.rc == 0, run.output[-6000:]
    assert run.recap().get("failed", 0) == 0


@pytest.fixture(scope="module")
def stack() -> Run:
    """Deploy the stack once for the module (a no-op converge when it already runs)."""
    if docker("image", "inspect", PREFECT_IMAGE, check=False).returncode != 0:
        pull = docker("pull", PREFECT_IMAGE, check=False)
        if pull.returncode != 0:
            pytest.skip("the test bed images are not available: run `make testbed` first")
    run = playbook("playbooks/stack.yml")
    assert_converged(run)
    return run


def test_every_container_is_healthy(stack: Run) -> None:
    for name in HEALTHCHECKED:
        state = inspect(name)["State"]
        assert state["Running"], name
        assert docker_health(name) == "healthy", (name, inspect(name)["State"]["Health"]["Log"][-1:])
    for name in UNCHECKED:
        assert inspect(name)["State"]["Running"], name


def test_published_ports_bind_to_loopback_only(stack: Run) -> None:
    for name in ALL_CONTAINERS:
        for bindings in (inspect(name)["HostConfig"]["PortBindings"] or {}).values():
            assert all(binding["HostIp"] == "127.0.0.1" for binding in bindings), (name, bindings)


def test_ui_and_ready_answer_and_the_api_requires_auth(stack: Run) -> None:
    with urllib.request.urlopen("http://127.0.0.1:4200/", timeout=15) as response:
        assert response.status == 200
        assert "<html" in response.read().decode().lower()
    with urllib.request.urlopen(f"{API}/ready", timeout=15) as response:
        assert response.status == 200
    with urllib.request.urlopen("http://127.0.0.1:4200/ui-settings", timeout=15) as response:
        assert json.load(response)["api_url"] == f"{PUBLIC_URL}/api", (
            "the UI calls the API through the TLS entry"
        )
    assert api("/admin/version", auth=False)[0] == 401
    assert api("/admin/version") == (200, "3.9.1")


def test_the_tls_entry_serves_the_ui_and_api_with_a_certificate_of_the_local_ca(stack: Run) -> None:
    """The entry answers HTTPS verified against inventory/local's CA, for every name in its
    certificate; the same request verified against the system's CAs fails; auth and CSRF hold
    through it; plain HTTP on its port is not served."""
    verified = ssl.create_default_context(cafile=str(CA_FILE))
    for url in (ENTRY, PUBLIC_URL):
        with urllib.request.urlopen(f"{url}/api/ready", timeout=15, context=verified) as response:
            assert response.status == 200, url
        with urllib.request.urlopen(f"{url}/", timeout=15, context=verified) as response:
            assert "<html" in response.read().decode().lower()
    with pytest.raises(urllib.error.URLError) as unverified:
        urllib.request.urlopen(f"{ENTRY}/api/ready", timeout=15, context=ssl.create_default_context())
    assert "CERTIFICATE_VERIFY_FAILED" in str(unverified.value)
    assert api("/admin/version", auth=False, base=f"{ENTRY}/api")[0] == 401
    assert api("/admin/version", base=f"{ENTRY}/api") == (200, "3.9.1")
    assert api("/flows/filter", {"limit": 1}, csrf=False, base=f"{ENTRY}/api")[0] == 403
    assert api("/flows/filter", {"limit": 1}, base=f"{ENTRY}/api")[0] == 200
    with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        urllib.request.urlopen("http://127.0.0.1:8443/api/ready", timeout=15)
    with (
        socket.create_connection(("127.0.0.1", 8443), timeout=10) as raw,
        verified.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() in {"TLSv1.2", "TLSv1.3"}
    # The worker reaches the API through the entry, its certificate verified with the same CA.
    env = inspect("prefect_worker")["Config"]["Env"]
    assert "PREFECT_API_URL=https://haproxy:8443/api" in env
    assert "PREFECT_API_SSL_CERT_FILE=/etc/prefect-stack/api_ca.crt" in env
    assert (
        BASE_DIR / "prefect_worker" / "config" / "api_ca.crt"
    ).read_text().strip() == CA_FILE.read_text().strip()


def open_events_socket(url: str, context: ssl.SSLContext) -> websockets.sync.client.ClientConnection:
    """The events websocket opened as Prefect's own subscriber opens it: a handshake that times out
    is tried again (its client reconnects the same way), at most three times. A refusal (an HTTP
    status instead of 101) is not retried. When every try times out, the error carries the last lines
    of the entry's and the server's logs, so the stall can be told apart."""
    timeouts: list[str] = []
    for attempt in range(1, 4):
        started = time.monotonic()
        try:
            return websockets.sync.client.connect(url, ssl=context, subprotocols=["prefect"], open_timeout=15)
        except TimeoutError as error:
            timeouts.append(f"try {attempt}: {error} after {time.monotonic() - started:.1f} s")
    logs = {
        name: docker("logs", "--tail", "20", name, check=False).stdout[-3000:]
        for name in ("haproxy", "prefect_server")
    }
    raise AssertionError(f"{url}: {timeouts}; logs: {logs}")


def test_a_websocket_passes_through_the_entry(stack: Run) -> None:
    """Prefect's events websocket (/api/events/out) through the TLS entry, as Prefect's client
    opens it: the "prefect" subprotocol, then an auth message; the server's auth_success comes back
    through the proxy, and a wrong token is refused by the server, not by the proxy."""
    verified = ssl.create_default_context(cafile=str(CA_FILE))
    auth_string = f"admin:{secret('prefect_server_auth_password')}"
    url = "wss://localhost:8443/api/events/out"
    with open_events_socket(url, verified) as socket_:
        assert socket_.subprotocol == "prefect"
        socket_.send(json.dumps({"type": "auth", "token": auth_string}))
        assert json.loads(socket_.recv(timeout=15)) == {"type": "auth_success"}
        socket_.send(json.dumps({"type": "filter", "filter": {}, "backfill": False}))
    with open_events_socket(url, verified) as socket_:
        socket_.send(json.dumps({"type": "auth", "token": "admin:wrong"}))
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            socket_.recv(timeout=15)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008, closed.value


def cors_preflight(origin: str) -> tuple[int, dict[str, str]]:
    """A browser's CORS preflight for a POST from ``origin``: the status and the answer's headers."""
    request = urllib.request.Request(
        f"{API}/flows/filter",
        method="OPTIONS",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}


def test_writes_need_a_csrf_token_and_cors_grants_only_the_public_origin(stack: Run) -> None:
    assert api("/flows/filter", {"limit": 1}, csrf=False)[0] == 403
    assert api("/flows/filter", {"limit": 1}, auth=False, csrf=False)[0] == 403
    assert api("/flows/filter", {"limit": 1})[0] == 200
    status, headers = cors_preflight("http://evil.example")
    assert "access-control-allow-origin" not in headers, (status, headers)
    status, headers = cors_preflight(PUBLIC_URL)
    assert (status, headers.get("access-control-allow-origin")) == (200, PUBLIC_URL)


def test_no_container_shows_a_secret_to_docker_inspect(stack: Run) -> None:
    values = {name: secret(name) for name in SECRET_NAMES}
    for container in ALL_CONTAINERS:
        text = json.dumps(inspect(container))
        leaked = [name for name, value in values.items() if value in text]
        assert not leaked, f"docker inspect {container} shows {leaked}"
    # The auth string reaches the server and the worker through their profiles instead.
    for container in ("prefect_server", "prefect_worker"):
        assert "PREFECT_PROFILES_PATH=/etc/prefect-stack/profiles.toml" in inspect(container)["Config"]["Env"]


def certificate_dns_names(path: Path) -> list[str]:
    extensions = x509.load_pem_x509_certificate(path.read_bytes()).extensions
    return extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )


def test_a_new_certificate_name_re_signs_the_host_certificate_only(stack: Run) -> None:
    """A re-run with nothing new signs nothing (the controller reads the CA and the certificate
    itself); a new name keeps the local CA, signs the host certificate again and restarts only the
    TLS entry; without the name a re-run signs it back."""
    tls = SECRETS_DIR / "tls"
    ca_before = (tls / "ca.crt").read_bytes()
    host_before = (tls / "localhost.crt").read_bytes()
    assert_converged(playbook("playbooks/stack.yml"))
    assert (tls / "localhost.crt").read_bytes() == host_before, "nothing new, nothing signed"
    before = started_at()
    run = playbook("playbooks/stack.yml", "-e", json.dumps({"haproxy_tls_names": ["e2e-extra.example"]}))
    assert_converged(run)
    try:
        assert (tls / "ca.crt").read_bytes() == ca_before, "the CA is kept"
        assert "e2e-extra.example" in certificate_dns_names(tls / "localhost.crt")
        after = started_at()
        assert after["haproxy"] != before["haproxy"]
        assert {k: v for k, v in after.items() if k != "haproxy"} == {
            k: v for k, v in before.items() if k != "haproxy"
        }, "only the TLS entry restarts"
    finally:
        assert_converged(playbook("playbooks/stack.yml"))
    assert "e2e-extra.example" not in certificate_dns_names(tls / "localhost.crt")


# Containers whose image allows a read-only root filesystem (the worker runs the operator's flows).
READ_ONLY_CONTAINERS = {"prefect_server", "redis", "redis_exporter", "prometheus", "alertmanager", "haproxy"}


def test_every_container_is_hardened_limited_and_read_only_where_its_image_allows(stack: Run) -> None:
    for container in ALL_CONTAINERS:
        host = inspect(container)["HostConfig"]
        assert "no-new-privileges:true" in (host["SecurityOpt"] or []), (container, host["SecurityOpt"])
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"], (container, host["CapDrop"], host["CapAdd"])
        assert host["Memory"] > 0 and host["PidsLimit"] and host["PidsLimit"] > 0, container
        assert host["ReadonlyRootfs"] is (container in READ_ONLY_CONTAINERS), container
    assert inspect("redis")["HostConfig"]["Memory"] == 1536 * 1024**2
    assert inspect("redis")["Config"]["User"] == "999:999"
    # The kernel, not only the engine, enforces them: a write to the root filesystem fails.
    written = docker("exec", "prefect_server", "touch", "/probe", check=False)
    assert written.returncode != 0 and "Read-only file system" in written.stderr, written


def test_a_worker_is_online_in_the_default_pool(stack: Run) -> None:
    def online() -> bool:
        status, workers = api("/work_pools/default/workers/filter", {})
        if status != 200:
            return False
        now = datetime.now(UTC)
        for worker in workers:
            beat = datetime.fromisoformat(worker["last_heartbeat_time"].replace("Z", "+00:00"))
            if (now - beat).total_seconds() < 2 * worker["heartbeat_interval_seconds"] + 10:
                return True
        return False

    assert wait_for(online, timeout=90), api("/work_pools/default/workers/filter", {})
    status, pool = api("/work_pools/default")
    assert status == 200
    assert (pool["type"], pool["concurrency_limit"]) == ("process", 5)
    assert pool["base_job_template"], "a pool without a job template cannot run flows"
    status, queues = api("/work_pools/default/queues/filter", {})
    assert "default" in [queue["name"] for queue in queues]
    worker_env = inspect("prefect_worker")["Config"]["Env"]
    assert "PREFECT_CLIENT_METRICS_ENABLED=false" in worker_env
    # prefect_server_mark_late_runs defaults to off (its "Late" writes lock SQLite under a burst).
    assert "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED=false" in inspect("prefect_server")["Config"]["Env"]


def test_redis_answers_with_the_password_from_another_container_and_refuses_without(stack: Run) -> None:
    with_password = redis_cli("ping", password=secret("redis_password"))
    assert with_password.stdout.strip() == "PONG", with_password.stderr
    without = redis_cli("ping", password=None)
    assert "NOAUTH" in without.stdout + without.stderr
    wrong = redis_cli("ping", password="not-the-password")
    assert "PONG" not in wrong.stdout
    # The default user is off: the admin's password without its user name opens nothing.
    as_default = redis_cli("ping", password=secret("redis_password"), user=None)
    assert "PONG" not in as_default.stdout, as_default
    assert secret("redis_password") not in json.dumps(inspect("redis")), "password visible in docker inspect"
    assert secret("redis_password") not in json.dumps(inspect("redis_exporter"))


def test_each_redis_user_can_do_only_what_its_job_needs(stack: Run) -> None:
    def as_user(user: str, *command: str) -> str:
        answer = redis_cli(*command, password=secret(f"redis_{user}_password"), user=user)
        return (answer.stdout + answer.stderr).strip()

    assert as_user("exporter", "info", "server").startswith("# Server")
    assert as_user("exporter", "config", "get", "maxmemory").split() == ["maxmemory", str(1024**3)]
    for command in (
        ["flushall"],
        ["config", "set", "maxmemory", "1"],
        ["set", "e2e:exporter", "x"],
        ["get", "x"],
    ):
        assert "NOPERM" in as_user("exporter", *command), command
    assert as_user("app", "set", "e2e:app", "written") == "OK"
    assert as_user("app", "get", "e2e:app") == "written"
    for command in (
        ["config", "get", "maxmemory"],
        ["flushall"],
        ["shutdown"],
        ["eval", "return 1", "0"],
    ):
        assert "NOPERM" in as_user("app", *command), command
    assert as_user("app", "del", "e2e:app") == "1"
    # The exporter, as its own user, still reads everything Prometheus alerts on.
    metrics = docker("exec", "prometheus", "wget", "-qO-", "http://redis-exporter:9121/metrics").stdout
    assert re.search(r"^redis_up 1$", metrics, re.M) and re.search(
        r"^redis_memory_max_bytes \d+", metrics, re.M
    )


def secret_file_hashes() -> dict[str, str]:
    """Plain hashes (MD5, SHA-1, SHA-256) of every secret file of the stack's projects: the 0600
    files under <project>/config. Only keyed checksums of them may show anywhere."""
    hashes: dict[str, str] = {}
    for path in BASE_DIR.glob("*/config/**/*"):
        if path.is_file() and not path.stat().st_mode & 0o077:
            content = path.read_bytes()
            for algorithm in ("md5", "sha1", "sha256"):
                hashes[hashlib.new(algorithm, content).hexdigest()] = f"{algorithm} of {path}"
    return hashes


def test_second_run_changes_nothing_restarts_nothing_and_logs_no_secret_nor_its_hash(stack: Run) -> None:
    before = started_at()
    run = playbook("playbooks/stack.yml", "-vvv")
    assert_converged(run)
    changed = [line for line in run.output.splitlines() if line.startswith("changed:")]
    assert run.recap()["changed"] == 0, changed
    assert started_at() == before
    for name in SECRET_NAMES:
        assert secret(name) not in run.output, f"{name} appears in the -vvv output"
        assert secret(name) not in stack.output, f"{name} appears in the first run's output"
    hashes = secret_file_hashes()
    assert len(hashes) >= 3 * 4, "the Redis ACL file, the profiles and the TLS key at least"
    places = {"the -vvv output": run.output, "the first run's output": stack.output}
    places |= {f"docker inspect {name}": json.dumps(inspect(name)) for name in ALL_CONTAINERS}
    places |= {str(path): path.read_text() for path in BASE_DIR.glob("*/compose.yml")}
    leaks = [(hashes[digest], place) for place, text in places.items() for digest in hashes if digest in text]
    assert not leaks, leaks
    assert "prefect-stack.config-hash" in json.dumps(inspect("redis")), "the label is there, keyed"


def test_files_changed_on_the_host_are_put_back_without_a_restart(stack: Run) -> None:
    """Drift in a flow file, a config file's content and a secret file's mode is repaired by a
    re-run: each is seen in the one host read and rewritten (or only re-moded); no container restarts."""
    flow = BASE_DIR / "prefect_worker" / "flows" / "test_flow.py"
    prometheus_config = BASE_DIR / "prometheus" / "config" / "prometheus.yml"
    redis_config = BASE_DIR / "redis" / "config" / "redis.conf"
    redis_inode = redis_config.stat().st_ino
    with flow.open("a") as handle:
        handle.write("# changed on the host\n")
    with prometheus_config.open("a") as handle:
        handle.write("# changed on the host\n")
    redis_config.chmod(0o644)
    before = started_at()
    run = playbook("playbooks/stack.yml")
    assert_converged(run)
    assert flow.read_bytes() == (REPO / "files" / "flows" / "test_flow.py").read_bytes()
    assert "# changed on the host" not in prometheus_config.read_text()
    assert stat.S_IMODE(redis_config.stat().st_mode) == 0o600
    assert redis_config.stat().st_ino == redis_inode, "a mode-only fix must not rewrite the file"
    assert run.recap()["changed"] >= 3, run.output[-3000:]
    assert "RUNNING HANDLER [prometheus : Reload Prometheus]" in run.output
    assert started_at() == before, "nothing restarts for these changes"
    again = playbook("playbooks/stack.yml")
    assert_converged(again)
    assert again.recap()["changed"] == 0


def test_projects_started_together_are_waited_for_once(stack: Run) -> None:
    """Two server projects brought back by one run start without waiting, and one wait at the end
    of the server play covers both: the slowest sets the time, not the sum."""
    for name in ("redis", "prometheus"):
        docker("stop", name)
    run = playbook("playbooks/stack.yml", "-v")
    assert_converged(run)
    wait = run.output.split(
        "TASK [compose_engine : Wait until the compose projects started without waiting are healthy]", 1
    )
    assert len(wait) == 2, "the server play did not wait once for the projects it started"
    waited = wait[1].split("TASK [", 1)[0]
    for project in ("prefect-stack-redis", "prefect-stack-prometheus"):
        assert f"project: {project}" in waited, waited
    assert "ready_by:" in waited, waited
    for name in ("redis", "prometheus"):
        assert docker_health(name) == "healthy", name


def test_no_secret_in_a_world_readable_file(stack: Run) -> None:
    assert stat.S_IMODE(SECRETS_DIR.stat().st_mode) == 0o700
    for path in SECRETS_DIR.iterdir():
        if path.is_dir():
            assert path.name == "tls", f"{path}: the only directory is the TLS entry's local CA"
            continue
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # The local CA's directory: 0700; every private key in it 0600 (certificates are public).
    tls = SECRETS_DIR / "tls"
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700
    keys = sorted(tls.glob("*.key"))
    assert {"ca.key", "localhost.key"} <= {key.name for key in keys}, keys
    assert all(stat.S_IMODE(key.stat().st_mode) == 0o600 for key in keys), keys
    # On the host, the proxy's key is readable by the proxy's user only.
    served_key = BASE_DIR / "haproxy" / "config" / "tls" / "prefect.pem.key"
    assert (stat.S_IMODE(served_key.stat().st_mode), served_key.stat().st_uid) == (0o600, 99)
    assert served_key.read_text().strip() == (tls / "localhost.key").read_text().strip()
    values = [secret(name) for name in SECRET_NAMES]
    leaks = []
    for path in BASE_DIR.rglob("*"):
        if not path.is_file() or path.stat().st_size > 1_000_000:
            continue
        text = path.read_text(errors="replace")
        if any(value in text for value in values) and path.stat().st_mode & 0o077:
            leaks.append(f"{path} {oct(stat.S_IMODE(path.stat().st_mode))}")
    assert not leaks
    for compose in BASE_DIR.glob("*/compose.yml"):
        assert not any(value in compose.read_text() for value in values), compose


BAD_INPUTS = [
    pytest.param({"redis_password": ""}, "redis_password", id="redis-password-missing"),
    pytest.param({"stack_checksum_key": "abc123"}, "stack_checksum_key", id="checksum-key-short"),
    pytest.param(
        {"prefect_worker_extra_env": {"PREFECT_API_AUTH_STRING": "x:y"}},
        "prefect_worker_extra_env",
        id="extra-env-sets-the-auth-string",
    ),
    pytest.param(
        {"redis_password": "change-me-to-a-long-random-string"},
        "redis_password",
        id="redis-password-placeholder",
    ),
    pytest.param(
        {"prefect_server_auth_password": "short-pw"},
        "prefect_server_auth_password",
        id="prefect-password-short",
    ),
    # Auth is always on, loopback included.
    pytest.param(
        {"prefect_server_auth_password": ""}, "prefect_server_auth_password", id="prefect-auth-missing"
    ),
    pytest.param(
        {"prefect_server_image": "prefecthq/prefect:3.6.21-python3.11"},
        "prefect_server_image",
        id="prefect-older-than-3.6.22",
    ),
    pytest.param(
        {"prefect_server_cors_allowed_origins": ["https://prefect.example.org/ui"]},
        "prefect_server_cors_allowed_origins",
        id="cors-origin-with-a-path",
    ),
    pytest.param(
        {
            "redis_password": "Zq8vL2mXp4Rt7wYeZq8vL2mXp4Rt7wYe",
            "redis_app_password": "Zq8vL2mXp4Rt7wYeZq8vL2mXp4Rt7wYe",
        },
        "redis_app_password",
        id="redis-users-share-a-secret",
    ),
    pytest.param({"redis_app_user": "default"}, "redis_app_user", id="redis-user-named-default"),
    pytest.param({"redis_port": 4200}, "redis_port", id="duplicate-ports"),
    pytest.param({"redis_maxmemory": "lots"}, "redis_maxmemory", id="bad-redis-maxmemory"),
    pytest.param({"redis_memory_limit": "lots"}, "redis_memory_limit", id="bad-memory-limit"),
    pytest.param({"redis_memory_limit": "1g"}, "redis_memory_limit", id="memory-limit-under-maxmemory"),
    pytest.param({"prometheus_pids_limit": 4}, "prometheus_pids_limit", id="pids-limit-too-low"),
    pytest.param(
        {"prefect_worker_pool_concurrency_limit": 0}, "prefect_worker_pool_concurrency_limit", id="zero-pool"
    ),
    pytest.param({"stack_bind_address": "300.1.1.1"}, "stack_bind_address", id="bad-bind-address"),
    pytest.param(
        {"stack_internal_bind_address": "localhost"}, "stack_internal_bind_address", id="bad-internal-bind"
    ),
    pytest.param({"redis_bind_address": "10.0.0.300"}, "redis_bind_address", id="bad-redis-bind"),
    # TEST-NET-1 (RFC 5737): a valid address that no host of this machine has.
    pytest.param(
        {"prometheus_bind_address": "192.0.2.77"}, "prometheus_bind_address", id="absent-bind-address"
    ),
    pytest.param({"stack_min_free_disk_mb": 10**9}, "stack_min_free_disk_mb", id="too-little-disk"),
    # The plain-HTTP API beyond loopback and the internal address, without the explicit opt-in.
    pytest.param(
        {"prefect_server_bind_address": "0.0.0.0"},
        "stack_allow_plaintext",
        id="plaintext-api-on-all-interfaces",
    ),
    pytest.param({"stack_public_url": "http://localhost:8443"}, "stack_public_url", id="entry-without-https"),
    pytest.param({"haproxy_tls_source": "acme"}, "haproxy_tls_source", id="unknown-tls-source"),
    pytest.param(
        {"haproxy_tls_source": "provided"}, "haproxy_tls_certificate", id="provided-tls-without-cert"
    ),
    pytest.param(
        {"haproxy_api_servers": ["https://prefect-server:4200/api"]},
        "haproxy_api_servers",
        id="bad-api-server",
    ),
    pytest.param({"haproxy_port": 4200}, "haproxy_port", id="entry-port-clash"),
]


def test_only_the_prefect_entry_is_meant_for_other_hosts(stack: Run) -> None:
    """Every published port binds to loopback here (inventory/local), the Redis exporter publishes
    none (Prometheus scrapes it over the stack network), and Prometheus has no lifecycle API: its
    reload is a SIGHUP, so nobody who reaches the port can POST /-/quit."""
    bindings = {
        name: inspect(name)["HostConfig"]["PortBindings"] or {}
        for name in ("prefect_server", "redis", "redis_exporter", "prometheus", "alertmanager", "haproxy")
    }
    assert bindings["redis_exporter"] == {}
    for name, ports in bindings.items():
        for published in ports.values():
            assert [binding["HostIp"] for binding in published] == ["127.0.0.1"], (name, published)
    request = urllib.request.Request("http://127.0.0.1:9090/-/quit", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403, "Prometheus' lifecycle API must be off"
    assert inspect("prometheus")["State"]["Status"] == "running"
    with urllib.request.urlopen("http://127.0.0.1:9090/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert "prometheus_config_last_reload_successful 1" in metrics


PROBE_NETWORK = "prefect-stack-e2e-probe"
# The stack's published ports: the entry, the plain Prefect API, Redis, Prometheus, Alertmanager.
STACK_PORTS = {
    "haproxy": 8443,
    "prefect_server": 4200,
    "redis": 6379,
    "prometheus": 9090,
    "alertmanager": 9093,
}
PROBE = """
import json, socket, sys
gateway, ports = sys.argv[1], json.loads(sys.argv[2])
answers = {}
for name, port in ports.items():
    try:
        socket.create_connection((gateway, port), timeout=3).close()
        answers[name] = True
    except OSError:
        answers[name] = False
print(json.dumps(answers))
"""


def test_from_another_docker_network_only_the_entry_answers(stack: Run) -> None:
    """The entry opened for other hosts (stack_bind_address 0.0.0.0, as inventory/example does):
    a container on another Docker network of this machine dials the host. Only the TLS entry
    answers; the plain Prefect API, Redis, Prometheus and Alertmanager stay on loopback, and the
    exporter publishes nothing. The stack goes back to its loopback entry afterwards."""
    opened = playbook("playbooks/stack.yml", "-e", json.dumps({"stack_bind_address": "0.0.0.0"}))
    assert_converged(opened)
    docker("network", "rm", PROBE_NETWORK, check=False)
    try:
        docker("network", "create", PROBE_NETWORK)
        network = json.loads(docker("network", "inspect", PROBE_NETWORK).stdout)[0]
        gateway = network["IPAM"]["Config"][0]["Gateway"]
        probe = docker(
            "run", "--rm", "--network", PROBE_NETWORK, "--entrypoint", "python", PREFECT_IMAGE,
            "-c", PROBE, gateway, json.dumps(STACK_PORTS),
        )  # fmt: skip
        answers = json.loads(probe.stdout.strip().splitlines()[-1])
        assert answers == {name: name == "haproxy" for name in STACK_PORTS}, answers
        assert inspect("haproxy")["HostConfig"]["PortBindings"]["8443/tcp"][0]["HostIp"] == "0.0.0.0"
    finally:
        docker("network", "rm", PROBE_NETWORK, check=False)
        assert_converged(playbook("playbooks/stack.yml"))


@pytest.mark.parametrize(("extra", "variable"), BAD_INPUTS)
def test_bad_input_fails_before_any_change(stack: Run, extra: dict, variable: str) -> None:
    # The components this module owns (the monitoring roles have their own e2e module, which may
    # converge them concurrently on a developer machine).
    deployed = [
        path
        for component in ("redis", "prefect_server", "prefect_worker", "haproxy")
        for path in [BASE_DIR / component / "compose.yml", *(BASE_DIR / component / "config").rglob("*")]
    ]
    configs = {path: path.stat().st_mtime_ns for path in deployed if path.is_file()}
    before = started_at()
    run = playbook("playbooks/stack.yml", "-e", json.dumps(extra))
    assert run.rc != 0
    failure = run.output[run.output.find("fatal:") :]
    assert variable in failure, run.output[-3000:]
    assert run.recap().get("changed", 0) == 0
    assert started_at() == before
    assert {path: path.stat().st_mtime_ns for path in configs} == configs


def test_a_port_another_process_listens_on_fails_before_any_change_naming_it(stack: Run) -> None:
    """The stack's own ports are held by docker-proxy on this re-run and pass; a port this test
    listens on, given to Alertmanager, is named with the process that holds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        before = started_at()
        run = playbook("playbooks/stack.yml", "-e", json.dumps({"alertmanager_port": port}))
    assert run.rc != 0
    failure = " ".join(run.output[run.output.find("fatal:") :].split())  # the callback wraps lines
    assert f"Port {port} (alertmanager_port) on localhost is taken by " in failure, run.output[-3000:]
    assert (
        f"(pid {os.getpid()}), listening on 127.0.0.1: stop that process, or set alertmanager_port" in failure
    )
    assert run.recap().get("changed", 0) == 0
    assert started_at() == before


def test_validate_with_no_argument_checks_exactly_what_is_deployed(stack: Run) -> None:
    """The README's `make validate` after an offline deploy: no extra vars, so grafana_enabled is its
    default (true), yet Grafana was not deployed here; only the deployed components are checked."""
    run = playbook("playbooks/validate.yml", offline_profile=False)
    assert run.rc == 0, run.output[-4000:]
    table = run.output[run.output.find("Show one line per check") :]
    assert "redis " in table and "containers" in table
    assert "grafana" not in table


def test_a_bad_worker_value_fails_the_first_play_before_any_host_changes(tmp_path: Path) -> None:
    """site.yml with a worker-only mistake, on a base directory where no stack exists: the first play
    (every host checked) names the variable, and no container, volume or file appears."""
    base = tmp_path / "no-stack-here"
    names = ("ps", "-a", "--format", "{{.Names}}")
    containers, volumes = docker(*names).stdout.split(), docker("volume", "ls", "-q").stdout.split()
    run = playbook(
        "site.yml",
        "-e",
        json.dumps({"prefect_worker_pool_concurrency_limit": 0, "stack_base_dir": str(base)}),
    )
    assert run.rc != 0
    before_failure = run.output[: run.output.find("fatal:")]
    assert before_failure.count("PLAY [") == 1, "the failure must come from the first play"
    assert "PLAY [Check every host of the stack before any host changes.]" in before_failure
    failure = run.output[run.output.find("fatal:") :]
    assert "prefect_worker_pool_concurrency_limit" in failure, run.output[-3000:]
    assert "undefined" not in failure.lower()
    assert run.recap().get("changed", 0) == 0
    assert not base.exists()
    assert docker(*names).stdout.split() == containers
    assert docker("volume", "ls", "-q").stdout.split() == volumes


def local_inventory(tmp_path: Path, children: dict[str, object]) -> Path:
    """An inventory file whose hosts are all this machine (the local connection), in these groups."""
    inventory = tmp_path / "hosts.yml"
    connection = {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
    }
    inventory.write_text(json.dumps({"all": {"vars": connection, "children": children}}))
    return inventory


def checks_on_two_hosts(tmp_path: Path, server_address: str, **extra: object) -> tuple[Run, str]:
    """playbooks/checks.yml on a server host and a worker host (both this machine, by the local
    connection); returns the run and its first failure with the callback's line wraps undone."""
    inventory = local_inventory(
        tmp_path,
        {
            "prefect_server": {"hosts": {"server-1": {"ansible_host": server_address}}},
            "prefect_workers": {"hosts": {"worker-1": {}}},
        },
    )
    variables = {
        "redis_password": uuid.uuid4().hex,
        "redis_exporter_password": uuid.uuid4().hex,
        "redis_app_password": uuid.uuid4().hex,
        "prefect_server_auth_password": uuid.uuid4().hex,
        "grafana_enabled": False,
        **extra,
    }
    run = playbook("playbooks/checks.yml", "-i", str(inventory), "-e", json.dumps(variables))
    return run, " ".join(run.output[run.output.find("fatal:") :].split())


def test_a_worker_on_another_host_is_refused_a_server_published_on_loopback(tmp_path: Path) -> None:
    """The default stack_bind_address: the worker would dial the server host's address, where
    nothing listens, so the first play fails on the worker host naming the variable to set, and
    changes nothing."""
    run, failure = checks_on_two_hosts(tmp_path, "192.0.2.10")
    assert run.rc != 0
    assert failure.startswith("fatal: [worker-1]"), run.output[-3000:]
    assert "https://192.0.2.10:8443/api" in failure and "stack_bind_address" in failure, failure[:2000]
    assert "its TLS entry" in failure, failure[:2000]
    assert run.recap().get("changed", 0) == 0


def test_a_worker_host_that_cannot_reach_the_server_fails_the_first_play(tmp_path: Path) -> None:
    """The server opened on every interface, but its inventory address does not resolve: the worker
    host's TCP probe of the API fails in the first play, naming the host, the variable and the fix."""
    run, failure = checks_on_two_hosts(tmp_path, "prefect-server.invalid", stack_bind_address="0.0.0.0")
    assert run.rc != 0
    assert failure.startswith("fatal: [worker-1]"), run.output[-3000:]
    assert (
        "worker-1 cannot open a TCP connection to prefect-server.invalid:8443 (prefect_worker_api_url)"
        in failure
    ), failure[:2000]
    assert "set prefect_worker_api_url to an address this host reaches" in failure
    assert run.recap().get("changed", 0) == 0


def checks_with_the_database_on_this_host(tmp_path: Path, **extra: object) -> tuple[Run, str]:
    """playbooks/checks.yml with this machine in prefect_server, prefect_workers and
    prefect_database, as inventory/local would be with PostgreSQL; the run and its first failure."""
    groups = ("prefect_server", "prefect_workers", "prefect_database")
    inventory = local_inventory(tmp_path, {group: {"hosts": {"localhost": {}}} for group in groups})
    variables = {
        name: uuid.uuid4().hex
        for name in (
            "redis_password",
            "redis_exporter_password",
            "redis_app_password",
            "prefect_server_auth_password",
            "postgres_password",
        )
    } | {"grafana_enabled": False, **extra}
    run = playbook("playbooks/checks.yml", "-i", str(inventory), "-e", json.dumps(variables))
    return run, " ".join(run.output[run.output.find("fatal:") :].split())


def test_switching_a_sqlite_stack_to_postgres_is_refused_before_any_change(
    stack: Run, tmp_path: Path
) -> None:
    """The deployed stack keeps its history in SQLite (prefect.db in the prefect_server_data volume):
    prefect_server_database=postgres fails the first play, saying the history would not move and
    naming the variable that starts empty on purpose; with that variable the same checks pass.
    PostgreSQL on an inventory without a prefect_database host is named too."""
    volume = docker("volume", "inspect", "-f", "{{.Mountpoint}}", "prefect_server_data").stdout.strip()
    assert Path(volume, "prefect.db").is_file(), "the e2e stack runs on SQLite"
    run, failure = checks_with_the_database_on_this_host(tmp_path, prefect_server_database="postgres")
    assert run.rc != 0
    assert "Prefect server ran on SQLite" in failure, run.output[-3000:]
    assert (
        "would not move to PostgreSQL" in failure and "prefect_server_postgres_start_empty: true" in failure
    )
    assert run.recap().get("changed", 0) == 0
    run, _ = checks_with_the_database_on_this_host(
        tmp_path, prefect_server_database="postgres", prefect_server_postgres_start_empty=True
    )
    assert run.rc == 0, run.output[-3000:]
    assert run.recap().get("changed", 0) == 0
    run = playbook("playbooks/checks.yml", "-e", "prefect_server_database=postgres")
    failure = " ".join(run.output[run.output.find("fatal:") :].split())
    assert run.rc != 0
    assert "prefect_server_database=postgres needs a host in the inventory group prefect_database" in failure
    assert "undefined" not in failure.lower()


def test_changing_a_redis_setting_restarts_only_redis(stack: Run) -> None:
    before = started_at()
    run = playbook("playbooks/stack.yml", "-e", "redis_maxmemory=512mb")
    assert_converged(run)
    after = started_at()
    assert after["redis"] != before["redis"]
    assert {name: after[name] for name in ALL_CONTAINERS if name != "redis"} == {
        name: before[name] for name in ALL_CONTAINERS if name != "redis"
    }
    answer = redis_cli("config", "get", "maxmemory", password=secret("redis_password"))
    assert answer.stdout.split() == ["maxmemory", str(512 * 1024 * 1024)]
    assert docker_health("redis") == "healthy"


def test_extra_env_reaches_the_container_exactly_and_stays_out_of_the_compose_file(stack: Run) -> None:
    """A prefect_worker_extra_env value with what Compose would interpolate or unquote ($, quotes,
    a backslash) reaches the worker as it is, through the 0600 env file only; a PREFECT_* setting
    with the same characters reaches Prefect's settings through the 0600 profile, and docker
    inspect shows it nowhere. (The next test tears the stack down and redeploys it without them.)"""
    value = f"e2e-{uuid.uuid4().hex[:8]}-a$HOME${{X}}\"b\\c'd #e"
    # A PREFECT_* setting goes into the worker's 0600 profile instead, out of docker inspect.
    ui_url = f"https://e2e-{uuid.uuid4().hex[:8]}.example/a$HOME${{X}}\"b\\c'd #e"
    # From the inventory's own state: an earlier test may have left another setting changed.
    assert_converged(playbook("playbooks/stack.yml"))
    assert docker_health("redis", within_s=30) == "healthy"
    before = started_at()
    extra = {"E2E_EXTRA": value, "PREFECT_UI_URL": ui_url}
    run = playbook("playbooks/stack.yml", "-e", json.dumps({"prefect_worker_extra_env": extra}))
    assert_converged(run)
    after = started_at()
    assert after["prefect_worker"] != before["prefect_worker"]
    assert {name: after[name] for name in ALL_CONTAINERS if name != "prefect_worker"} == {
        name: before[name] for name in ALL_CONTAINERS if name != "prefect_worker"
    }, "only the worker restarts"
    assert docker("exec", "prefect_worker", "printenv", "E2E_EXTRA").stdout == value + "\n"
    env_file = BASE_DIR / "prefect_worker" / "config" / "worker.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert "E2E_EXTRA" in env_file.read_text()
    assert "E2E_EXTRA" not in (BASE_DIR / "prefect_worker" / "compose.yml").read_text()
    assert "E2E_EXTRA" not in json.dumps(inspect("prefect_worker")["Config"]["Labels"])
    settings = "from prefect.settings import get_current_settings; print(get_current_settings().ui_url)"
    assert docker("exec", "prefect_worker", "python", "-c", settings).stdout == ui_url + "\n"
    profile = BASE_DIR / "prefect_worker" / "config" / "profiles.toml"
    assert stat.S_IMODE(profile.stat().st_mode) == 0o600 and "PREFECT_UI_URL" in profile.read_text()
    assert "PREFECT_UI_URL" not in env_file.read_text()
    assert ui_url.split("/")[2] not in json.dumps(inspect("prefect_worker")), (
        "docker inspect shows no setting"
    )
    assert docker_health("prefect_worker", within_s=30) == "healthy"


def test_data_survives_teardown_and_redeploy(stack: Run) -> None:
    marker = f"e2e-{uuid.uuid4().hex[:12]}"
    status, flow = api("/flows/", {"name": "e2e-persistence"})
    assert status in (200, 201)
    status, flow_run = api("/flow_runs/", {"flow_id": flow["id"], "name": marker})
    assert status in (200, 201)
    assert redis_cli("set", f"e2e:{marker}", "kept", password=secret("redis_password")).stdout.strip() == "OK"
    # Make the key durable before the container stops (AOF everysec would too, within a second).
    redis_cli("save", password=secret("redis_password"))

    down = playbook("playbooks/teardown.yml")
    assert down.rc == 0, down.output[-4000:]
    running = docker("ps", "--format", "{{.Names}}").stdout.split()
    assert not set(ALL_CONTAINERS) & set(running)
    for volume in VOLUMES:
        assert docker("volume", "inspect", volume, check=False).returncode == 0, f"{volume} was removed"

    up = playbook("playbooks/stack.yml")
    assert_converged(up)
    status, found = api(f"/flow_runs/{flow_run['id']}")
    assert status == 200
    assert found["name"] == marker
    answer = redis_cli("get", f"e2e:{marker}", password=secret("redis_password"))
    assert answer.stdout.strip() == "kept"
    for name in HEALTHCHECKED:
        assert docker_health(name) == "healthy", name
