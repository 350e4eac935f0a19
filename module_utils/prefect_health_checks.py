# Copyright: the prefect-stack project contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The checks of the prefect_health module: each one returns a one-line detail or raises.

Runs on the managed host: written for Python 3.9+ (timezone.utc, isinstance tuples).

A check raises ``CheckFailed`` (or ``ApiError`` from the client) with a one-line reason; the
runner times it and turns the outcome into ``{ok, detail, elapsed_ms}``. Checks run concurrently
in threads and are retried by the module until they pass or time runs out, unless one raised
``DefinitiveFailure``: a state that waiting cannot heal (a container that exited, a server of
another version), so the runner stops after that round instead of waiting for the timeout.
"""

from __future__ import annotations

import concurrent.futures
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urljoin

from ansible.module_utils.docker_engine import (
    ContainerState,
    EngineError,
    describe_container,
    engine_request,
    probe_passes,
)
from ansible.module_utils.prefect_api import (
    ApiError,
    PrefectApi,
    excerpt,
    http_request,
    join_url,
    quote_name,
)

# Prefect's default PREFECT_WORKER_HEARTBEAT_SECONDS, used when a worker did not report its own.
DEFAULT_HEARTBEAT_SECONDS = 30.0
# A worker is alive while its last heartbeat is younger than this many intervals.
HEARTBEAT_TOLERANCE = 3

CHECK_NAMES = (
    "liveness",
    "readiness",
    "version",
    "auth",
    "csrf",
    "ui",
    "work_pool",
    "work_queue",
    "workers",
    "db_roundtrip",
    "prometheus",
    "alertmanager",
    "grafana",
    "redis",
    "containers",
)


class CheckFailed(Exception):
    """A check ran and found the service unhealthy; ``str()`` is the one-line detail."""


class DefinitiveFailure(CheckFailed):
    """A failure that cannot heal by waiting; ``causes`` maps what failed to one line saying how.

    The keys are container names for the containers check and the check's own name otherwise.
    """

    def __init__(self, message: str, causes: dict[str, str]) -> None:
        super().__init__(message)
        self.causes = causes


@dataclass
class CheckContext:
    """Everything the checks read: the module's parameters and the Prefect API client."""

    params: dict[str, Any]
    api: PrefectApi
    ui_url: str

    def other_service(self, url: str, method: str = "GET") -> Any:
        """A request to a non-Prefect HTTP service (no credentials, same timeout and TLS policy)."""
        return http_request(
            url,
            method=method,
            timeout=self.api.timeout,
            validate_certs=self.api.validate_certs,
            ca_path=self.api.ca_path,
        )


@dataclass
class CheckResult:
    """One check's outcome as the module returns it; ``causes`` is set for a definitive failure."""

    ok: bool
    detail: str
    elapsed_ms: int
    causes: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, "elapsed_ms": self.elapsed_ms}


@dataclass
class RunSummary:
    """The results of every check after the last attempt."""

    results: dict[str, CheckResult] = field(default_factory=dict)
    attempts: int = 0

    @property
    def failed(self) -> list[str]:
        return [name for name in self.results if not self.results[name].ok]

    @property
    def definitive(self) -> dict[str, str]:
        """What failed beyond healing by waiting (see DefinitiveFailure), in the order of the checks."""
        causes: dict[str, str] = {}
        for result in self.results.values():
            if not result.ok:
                causes.update(result.causes)
        return causes


# --- which checks apply -----------------------------------------------------------------

REQUIRED_INPUTS: dict[str, tuple[str, ...]] = {
    "auth": ("api_auth_password",),
    "csrf": ("csrf_protection",),
    "work_pool": ("work_pool",),
    "work_queue": ("work_pool",),
    "workers": ("work_pool", "min_workers"),
    "prometheus": ("prometheus_url",),
    "alertmanager": ("alertmanager_url",),
    "grafana": ("grafana_url",),
    "redis": ("redis_host",),
    "containers": ("containers",),
}


def applicable_checks(params: dict[str, Any]) -> list[str]:
    """The checks whose inputs were given, in the canonical order."""
    return [name for name in CHECK_NAMES if not missing_inputs(name, params)]


def missing_inputs(name: str, params: dict[str, Any]) -> list[str]:
    """The options a check needs that are empty (``min_workers`` counts only when above 0)."""
    missing = []
    for option in REQUIRED_INPUTS.get(name, ()):
        value = params.get(option)
        if option == "min_workers":
            if not value or value < 1:
                missing.append(option)
        elif option == "csrf_protection":
            if value is not True:
                missing.append(option)
        elif value in (None, "", []):
            missing.append(option)
    return missing


# --- pure helpers (unit-tested) ---------------------------------------------------------


def parse_timestamp(value: str) -> datetime:
    """An ISO 8601 timestamp from the Prefect API as an aware datetime (UTC when naive)."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)  # noqa: UP017 (targets may run Python 3.9)


def server_now(date_header: str | None) -> datetime:
    """The server's clock from its Date header, or this host's clock when there is none."""
    if date_header:
        try:
            return parsedate_to_datetime(date_header)
        except (TypeError, ValueError):
            pass
    return datetime.now(timezone.utc)  # noqa: UP017


def worker_liveness(worker: dict[str, Any], now: datetime) -> tuple[bool, float, float]:
    """(alive, heartbeat age in seconds, limit in seconds) for one worker record.

    Alive means the last heartbeat is younger than 3 x the worker's heartbeat interval. The
    stored ``status`` is ignored: the server updates it only on a schedule, so it goes stale.
    """
    interval = float(worker.get("heartbeat_interval_seconds") or DEFAULT_HEARTBEAT_SECONDS)
    limit = HEARTBEAT_TOLERANCE * interval
    last = worker.get("last_heartbeat_time")
    if not last:
        return False, float("inf"), limit
    age = max(0.0, (now - parse_timestamp(last)).total_seconds())
    return age < limit, age, limit


def describe_workers(workers: list[dict[str, Any]], now: datetime, minimum: int) -> tuple[bool, str]:
    """Whether at least ``minimum`` workers are alive, and a one-line account of every worker."""
    alive, stale = [], []
    for worker in workers:
        ok, age, limit = worker_liveness(worker, now)
        age_text = "never" if age == float("inf") else f"{age:.0f}s ago"
        (alive if ok else stale).append(f"{worker.get('name', '?')} ({age_text}, limit {limit:.0f}s)")
    text = f"{len(alive)} alive of {len(workers)} seen, {minimum} required"
    if alive:
        text += "; alive: " + ", ".join(alive)
    if stale:
        text += "; stale: " + ", ".join(stale)
    return len(alive) >= minimum, text


def resp_encode(*args: str) -> bytes:
    """A Redis command as a RESP array of bulk strings."""
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def resp_read(stream: Any) -> tuple[str, Any]:
    """One RESP reply from a binary file-like object: (type byte, value).

    Simple strings (+), errors (-), integers (:) and bulk strings ($) are what PING and AUTH
    answer; anything else is reported as it is.
    """
    line = stream.readline()
    if not line:
        raise CheckFailed("Redis closed the connection without answering")
    if not line.endswith(b"\r\n"):
        raise CheckFailed(f"Redis answered an incomplete line: {excerpt(line)}")
    kind, payload = chr(line[0]), line[1:-2].decode("utf-8", errors="replace")
    if kind in "+-":
        return kind, payload
    if kind == ":":
        return kind, int(payload)
    if kind == "$":
        size = int(payload)
        if size < 0:
            return kind, None
        data = stream.read(size + 2)
        return kind, data[:-2].decode("utf-8", errors="replace")
    return kind, payload


def receivers_of(payload: Any) -> list[str]:
    """Receiver names from Alertmanager's ``GET /api/v2/receivers``."""
    if not isinstance(payload, list):
        raise CheckFailed(f"unexpected /api/v2/receivers answer: {excerpt(str(payload))}")
    return [item.get("name", "") for item in payload if isinstance(item, dict)]


def target_problems(targets: list[dict[str, Any]], jobs: list[str]) -> tuple[list[str], list[str]]:
    """(problems, summaries) for Prometheus active targets: an expected job must have targets, all up.

    With no expected jobs, every active target must be up.
    """
    by_job: dict[str, list[dict[str, Any]]] = {}
    for target in targets:
        job = (target.get("labels") or {}).get("job") or (target.get("discoveredLabels") or {}).get(
            "job", "?"
        )
        by_job.setdefault(job, []).append(target)
    wanted = jobs or sorted(by_job)
    problems, summaries = [], []
    for job in wanted:
        members = by_job.get(job, [])
        if not members:
            problems.append(f"job {job}: no active target")
            continue
        down = [t for t in members if t.get("health") != "up"]
        summaries.append(f"{job} {len(members) - len(down)}/{len(members)} up")
        for target in down:
            error = target.get("lastError") or "not scraped yet"
            where, health = target.get("scrapeUrl", "?"), target.get("health", "?")
            problems.append(f"job {job}: {where} is {health} ({excerpt(error, 120)})")
    return problems, summaries


def query_problems(query: str, payload: Any) -> list[str]:
    """Problems with an instant query's answer: no sample, or a sample whose value is 0."""
    data = (payload or {}).get("data") or {}
    samples = data.get("result") or []
    if not samples:
        return [f"query {query}: no sample"]
    problems = []
    for sample in samples:
        value = (sample.get("value") or [None, "nan"])[1]
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = 0.0
        if number == 0.0 or number != number:  # zero or NaN
            labels = ",".join(f"{k}={v}" for k, v in sorted((sample.get("metric") or {}).items()))
            problems.append(f"query {query} = {value} ({labels})")
    return problems


def format_failure(
    results: dict[str, CheckResult], definitive: dict[str, str] | None = None, attempts: int = 1
) -> str:
    """One message naming every failed check and its detail, led by what waiting cannot heal."""
    failed = [f"{name}: {result.detail}" for name, result in results.items() if not result.ok]
    if not failed:
        return f"all {len(results)} checks passed"
    text = f"{len(failed)} of {len(results)} checks failed: " + "; ".join(failed)
    if definitive:
        rounds = "attempt" if attempts == 1 else "attempts"
        causes = "; ".join(definitive.values())
        text = f"stopped after {attempts} {rounds}, waiting cannot heal: {causes}. {text}"
    return text


# --- the checks -------------------------------------------------------------------------


def check_liveness(ctx: CheckContext) -> str:
    answer = ctx.api.get("health")
    if answer is not True:
        raise CheckFailed(f"{ctx.api.url('health')} answered {excerpt(str(answer))}, expected true")
    return f"{ctx.api.url('health')} answered true"


def check_readiness(ctx: CheckContext) -> str:
    try:
        ctx.api.request("GET", "ready")
    except ApiError as exc:
        if exc.status == 503:
            raise CheckFailed(f"{ctx.api.url('ready')} answered 503: the database is not available") from None
        raise
    return "the server and its database are ready"


def check_version(ctx: CheckContext) -> str:
    version = ctx.api.get("admin/version")
    expected = ctx.params.get("server_version")
    if expected and str(version) != expected:
        # The server that answers runs another release: only a new deploy changes that.
        text = f"server version is {version}, expected {expected}"
        raise DefinitiveFailure(text, {"version": text})
    return f"server version {version}" + (" as expected" if expected else "")


def refused_as_required(
    name: str, attempt: Callable[[], object], status: int, refused: str, served: str
) -> str:
    """The verdict of a request the server must refuse with `status`: a server that serves it
    stays that way until it is redeployed, so that is a definitive failure."""
    try:
        attempt()
    except ApiError as exc:
        if exc.status == status:
            return f"{refused} (HTTP {status})"
        raise
    raise DefinitiveFailure(served, {name: served})


def check_auth(ctx: CheckContext) -> str:
    url = ctx.api.url("admin/version")
    return refused_as_required(
        "auth",
        lambda: ctx.other_service(url),
        401,
        f"{url} refuses a request without credentials",
        f"{url} answers a request without credentials: the server runs without basic auth "
        "(PREFECT_SERVER_API_AUTH_STRING; prefect_server_auth_password)",
    )


def check_csrf(ctx: CheckContext) -> str:
    url = ctx.api.url("flows/filter")
    return refused_as_required(
        "csrf",
        lambda: ctx.api.send_without_csrf_token("POST", "flows/filter", {"limit": 1}),
        403,
        f"POST {url} without a CSRF token is refused",
        f"POST {url} without a CSRF token was served: the server's CSRF protection is off "
        "(PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED; prefect_server_csrf_protection_enabled)",
    )


def check_ui(ctx: CheckContext) -> str:
    page = ctx.other_service(ctx.ui_url)
    if "prefect" not in page.text().lower():
        raise CheckFailed(f"{ctx.ui_url} does not serve the Prefect UI: {excerpt(page.body, 80)}")
    settings_url = join_url(ctx.ui_url, "ui-settings")
    settings = ctx.other_service(settings_url).json() or {}
    api_url = settings.get("api_url")
    if not api_url:
        raise CheckFailed(f"{settings_url} names no api_url")
    api_url = urljoin(ctx.ui_url.rstrip("/") + "/", api_url)
    try:
        ctx.other_service(join_url(api_url, "health"))
    except ApiError as exc:
        raise CheckFailed(
            f"the UI is configured with API URL {api_url}, which does not answer ({exc}); "
            "set prefect_server_public_url (PREFECT_UI_API_URL) to the URL browsers use"
        ) from None
    return f"UI served at {ctx.ui_url}; its API URL {api_url} answers"


def _read_pool(ctx: CheckContext) -> dict[str, Any]:
    name = ctx.params["work_pool"]
    pool = ctx.api.read_work_pool(name)
    if pool is None:
        raise CheckFailed(f"work pool {name!r} does not exist")
    return pool


def check_work_pool(ctx: CheckContext) -> str:
    pool = _read_pool(ctx)
    problems = []
    want_type = ctx.params.get("work_pool_type")
    if want_type and pool.get("type") != want_type:
        problems.append(f"type is {pool.get('type')!r}, expected {want_type!r}")
    want_limit = ctx.params.get("work_pool_concurrency_limit")
    if want_limit is not None and pool.get("concurrency_limit") != want_limit:
        problems.append(f"concurrency limit is {pool.get('concurrency_limit')}, expected {want_limit}")
    if pool.get("is_paused"):
        problems.append("the pool is paused")
    if not pool.get("base_job_template"):
        problems.append("the pool has an empty base job template")
    summary = f"pool {pool['name']!r} type {pool.get('type')} limit {pool.get('concurrency_limit')}"
    if problems and want_type and pool.get("type") != want_type:
        # Prefect cannot change a pool's type; a worker never recreates an existing pool.
        text = f"work pool {pool['name']!r} is of type {pool.get('type')!r}, expected {want_type!r}"
        raise DefinitiveFailure(f"{summary}: " + "; ".join(problems), {"work_pool": text})
    if problems:
        raise CheckFailed(f"{summary}: " + "; ".join(problems))
    return summary


def read_from_pool(reader: Callable[[str], Any], pool: str) -> Any:
    """Call an API reader scoped to a work pool; a 404 means the pool itself is missing."""
    try:
        return reader(pool)
    except ApiError as exc:
        if exc.status == 404:
            raise CheckFailed(f"work pool {pool!r} does not exist") from None
        raise


def check_work_queue(ctx: CheckContext) -> str:
    pool = ctx.params["work_pool"]
    queues = read_from_pool(ctx.api.read_work_queues, pool)
    names = [q.get("name") for q in queues]
    if not queues:
        raise CheckFailed(f"work pool {pool!r} has zero queues: no flow run can be picked up")
    missing = [q for q in ctx.params.get("work_queues") or [] if q not in names]
    paused = [q.get("name") for q in queues if q.get("is_paused")]
    problems = [f"missing queue {q!r}" for q in missing] + [f"queue {q!r} is paused" for q in paused]
    summary = f"pool {pool!r} queues: {', '.join(str(n) for n in names)}"
    if problems:
        raise CheckFailed(f"{summary}; " + "; ".join(problems))
    return summary


def check_workers(ctx: CheckContext) -> str:
    pool = ctx.params["work_pool"]
    workers, date_header = read_from_pool(ctx.api.read_workers, pool)
    ok, text = describe_workers(workers, server_now(date_header), int(ctx.params["min_workers"]))
    if not ok:
        raise CheckFailed(text)
    return text


def check_db_roundtrip(ctx: CheckContext) -> str:
    """Write a variable, read it back, delete it, and confirm it is gone.

    Prefect answers 503 when SQLite reports "database is locked" to one of several concurrent
    writers (the transaction is rolled back); that is retried twice. A database that stays
    locked or unwritable makes the requests time out or fail, and the check with them.
    """
    api = ctx.api.retrying(2)
    name = f"prefect_health_probe_{uuid.uuid4().hex[:16]}"
    token = uuid.uuid4().hex
    path = f"variables/name/{quote_name(name)}"
    api.post("variables/", {"name": name, "value": token, "tags": ["prefect-health-probe"]})
    try:
        stored = api.get(path)
        if (stored or {}).get("value") != token:
            raise CheckFailed(
                f"variable {name} read back {excerpt(str(stored), 80)}, expected the written token"
            )
    finally:
        api.delete(path)
    if api.get_or_none(path) is not None:
        raise CheckFailed(f"variable {name} is still there after DELETE")
    return "variable written, read back and deleted"


def check_prometheus(ctx: CheckContext) -> str:
    base = ctx.params["prometheus_url"]
    ctx.other_service(join_url(base, "-/ready"))
    payload = ctx.other_service(join_url(base, "api/v1/targets?state=active")).json() or {}
    targets = (payload.get("data") or {}).get("activeTargets") or []
    problems, summaries = target_problems(targets, ctx.params.get("prometheus_jobs") or [])
    queries = ctx.params.get("prometheus_queries") or []
    for query in queries:
        answer = ctx.other_service(join_url(base, "api/v1/query?query=" + quote(query, safe=""))).json()
        problems.extend(query_problems(query, answer))
    summary = "targets " + (", ".join(summaries) or "none")
    if queries:
        summary += f"; {len(queries)} queries"
    if problems:
        raise CheckFailed("; ".join(problems))
    return summary


def check_alertmanager(ctx: CheckContext) -> str:
    base = ctx.params["alertmanager_url"]
    ctx.other_service(join_url(base, "-/ready"))
    names = receivers_of(ctx.other_service(join_url(base, "api/v2/receivers")).json())
    missing = [r for r in ctx.params.get("alertmanager_receivers") or [] if r not in names]
    if missing:
        raise CheckFailed(f"receivers {', '.join(missing)} not loaded (loaded: {', '.join(names) or 'none'})")
    return f"ready; receivers: {', '.join(names)}"


def check_grafana(ctx: CheckContext) -> str:
    url = join_url(ctx.params["grafana_url"], "api/health")
    health = ctx.other_service(url).json() or {}
    if health.get("database") != "ok":
        raise CheckFailed(f"{url}: database is {health.get('database')!r}")
    return f"database ok, version {health.get('version', '?')}"


def check_redis(ctx: CheckContext) -> str:
    host, port = ctx.params["redis_host"], int(ctx.params["redis_port"])
    password = ctx.params.get("redis_password")
    user = ctx.params.get("redis_user")
    where = f"redis://{user + '@' if user else ''}{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=ctx.api.timeout) as sock:
            stream = sock.makefile("rb")
            if password:
                sock.sendall(resp_encode("AUTH", *([user] if user else []), password))
                kind, value = resp_read(stream)
                if kind != "+":
                    raise CheckFailed(
                        f"{where} refused AUTH ({value.split(' ')[0]}): check redis_password"
                        + (f" of the ACL user {user}" if user else "")
                    )
            sock.sendall(resp_encode("PING"))
            kind, value = resp_read(stream)
    except ConnectionRefusedError:
        raise CheckFailed(f"connection refused: {where} (is Redis running?)") from None
    except TimeoutError:
        raise CheckFailed(f"no answer within {ctx.api.timeout:g} s: {where}") from None
    except OSError as exc:
        raise CheckFailed(f"{exc.__class__.__name__} for {where}: {exc.strerror or exc}") from None
    if kind == "-" and str(value).startswith("NOAUTH"):
        raise CheckFailed(f"{where} requires a password: set redis_password")
    if (kind, value) != ("+", "PONG"):
        raise CheckFailed(f"{where} answered PING with {kind}{excerpt(str(value), 80)}")
    return f"{where} answered PONG" + (" after AUTH" if password else "")


def docker_get(socket_path: str, path: str, timeout: float) -> tuple[int, Any]:
    """(HTTP status, decoded JSON) of a GET to the Docker Engine API; CheckFailed naming the socket."""
    try:
        return engine_request(socket_path, "GET", path, timeout)
    except EngineError as exc:
        raise CheckFailed(str(exc)) from None


def container_state(ctx: CheckContext, name: str) -> ContainerState:
    """One container from the Docker Engine API over its Unix socket."""
    status, info = docker_get(
        ctx.params["docker_socket"], f"/containers/{quote_name(name)}/json", ctx.api.timeout
    )
    if status == 404:
        return ContainerState(name, False, f"{name} does not exist", True)
    if status >= 400 or not isinstance(info, dict):
        raise CheckFailed(f"Docker API answered {status} for {name}: {excerpt(str(info))}")
    state = describe_container(name, info)
    if state.starting and probe_passes(ctx.params["docker_socket"], quote_name(name), info, ctx.api.timeout):
        # Docker has not run the healthcheck yet (its first run comes one interval after the start).
        return ContainerState(
            name, True, f"{name} healthy by its own healthcheck, run now (Docker: starting)"
        )
    return state


def check_containers(ctx: CheckContext) -> str:
    states = [container_state(ctx, name) for name in ctx.params["containers"]]
    bad = [state.text for state in states if not state.ok]
    if not bad:
        return ", ".join(state.text for state in states)
    others = [state.text for state in states if state.ok]
    detail = "; ".join(bad) + (f" (others: {', '.join(others)})" if others else "")
    causes = {state.name: f"container {state.text}" for state in states if state.definitive}
    if causes:
        raise DefinitiveFailure(detail, causes)
    raise CheckFailed(detail)


CHECKS: dict[str, Callable[[CheckContext], str]] = {
    "liveness": check_liveness,
    "readiness": check_readiness,
    "version": check_version,
    "auth": check_auth,
    "csrf": check_csrf,
    "ui": check_ui,
    "work_pool": check_work_pool,
    "work_queue": check_work_queue,
    "workers": check_workers,
    "db_roundtrip": check_db_roundtrip,
    "prometheus": check_prometheus,
    "alertmanager": check_alertmanager,
    "grafana": check_grafana,
    "redis": check_redis,
    "containers": check_containers,
}


# --- running ----------------------------------------------------------------------------


def run_check(name: str, ctx: CheckContext) -> CheckResult:
    """Run one check and time it; every foreseeable failure becomes ``ok: false`` with a detail."""
    start = time.monotonic()
    causes: dict[str, str] = {}
    try:
        detail, ok = CHECKS[name](ctx), True
    except DefinitiveFailure as exc:
        detail, ok, causes = str(exc), False, exc.causes
    except (CheckFailed, ApiError) as exc:
        detail, ok = str(exc), False
    except Exception as exc:  # an unforeseen answer must not hide the other checks' results
        detail, ok = f"unexpected {exc.__class__.__name__}: {excerpt(str(exc))}", False
    elapsed_ms = int((time.monotonic() - start) * 1000)
    return CheckResult(ok=ok, detail=detail, elapsed_ms=elapsed_ms, causes=causes)


def run_once(names: list[str], ctx: CheckContext) -> dict[str, CheckResult]:
    """Run the named checks concurrently, one thread each."""
    if not names:
        return {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(names)) as pool:
        futures = {name: pool.submit(run_check, name, ctx) for name in names}
        return {name: futures[name].result() for name in names}


def run_until_healthy(
    names: list[str],
    ctx: CheckContext,
    timeout: float,
    interval: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RunSummary:
    """Run every check, then re-run the failed ones every ``interval`` s until all pass or ``timeout``.

    A round with a definitive failure is the last one: the checks that failed in it are reported
    together, at once, rather than after waiting out the timeout for a state that cannot heal.
    """
    deadline = clock() + timeout
    summary = RunSummary()
    pending = list(names)
    while True:
        summary.attempts += 1
        summary.results.update(run_once(pending, ctx))
        pending = [name for name in names if not summary.results[name].ok]
        if not pending or summary.definitive or clock() + interval > deadline:
            break
        sleep(interval)
    summary.results = {name: summary.results[name] for name in names}
    return summary
