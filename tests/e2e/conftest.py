"""Shared e2e fixtures. They live in e2e_stack.py (a unique module name, importable by the tests);
`deployed_stack` deploys the stack once per session for every e2e module."""

import sys
from pathlib import Path

# tests/ holds helpers both tiers use (tls_certificates.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from e2e_stack import deployed_stack

__all__ = ["deployed_stack"]
