"""Fixtures of the monitoring integration tests (defined in monitoring_support.py)."""

from monitoring_support import amtool, live_stack, promtool, rendered

__all__ = ["amtool", "live_stack", "promtool", "rendered"]
