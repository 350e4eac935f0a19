"""Fixtures of the module tests; the services themselves are in prefect_services.py."""

from prefect_services import (  # noqa: F401 (fixtures are found by name)
    _servers,
    auth_default_worker,
    auth_server,
    default_worker,
    fake_grafana,
    monitoring,
    prefect_server,
    workers,
)
