"""Shared e2e fixtures. They live in e2e_stack.py (a unique module name, importable by the tests);
`deployed_stack` deploys the stack once per session for every e2e module."""

from e2e_stack import deployed_stack

__all__ = ["deployed_stack"]
