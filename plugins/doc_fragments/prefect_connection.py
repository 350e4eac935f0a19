# Copyright: the prefect-stack project contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the Prefect API connection options that prefect_health and prefect_work_pool share.

module_utils/prefect_api.py's prefect_connection_argument_spec() is the matching argument spec;
tests/unit/modules/test_prefect_module_docs.py keeps the two equal.
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  api_url:
    description:
      - Base URL of the Prefect server API, including the C(/api) suffix.
    type: str
    default: http://127.0.0.1:4200/api
  api_auth_user:
    description:
      - User of the server's basic auth (C(PREFECT_SERVER_API_AUTH_STRING=user:password)).
      - Used only when O(api_auth_password) is set.
    type: str
    default: admin
  api_auth_password:
    description:
      - Password of the server's basic auth. Empty means the server runs without auth.
      - An HTTP 401 answer names this option and the inventory variable C(prefect_server_auth_password).
      - Every POST, PUT, PATCH and DELETE carries a CSRF token fetched from C(/api/csrf-token)
        when the server has Prefect's CSRF protection on, as Prefect's own client does.
    type: str
  validate_certs:
    description:
      - Whether to verify TLS certificates of HTTPS URLs.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA certificates that verify an HTTPS O(api_url), instead of the system's
        trust store (for example the local CA of the stack's TLS entry).
    type: path
  request_timeout:
    description:
      - Seconds to wait for any single answer (an HTTP request, or a Redis reply for C(prefect_health)).
    type: float
    default: 5.0
"""
