"""Sizes as redis.conf reads them, for the redis role's checks."""

from __future__ import annotations

import re
from typing import Any

DOCUMENTATION = """
name: redis_memory_bytes
short_description: Bytes of a redis.conf memory size (maxmemory 1gb, 512mb, 100000)
description:
  - Redis reads k, m and g as powers of 1000 and kb, mb and gb as powers of 1024; a bare number is
    bytes. Returns None for a value Redis would not read as a size.
positional: _input
options:
  _input:
    description: The size, e.g. the value of redis_maxmemory.
    type: raw
    required: true
"""

REDIS_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1024,
    "m": 1000**2,
    "mb": 1024**2,
    "g": 1000**3,
    "gb": 1024**3,
}


def redis_memory_bytes(value: Any) -> int | None:
    match = re.fullmatch(r"([0-9]+)([a-z]*)", str(value).strip().lower())
    if not match or match.group(2) not in REDIS_UNITS:
        return None
    return int(match.group(1)) * REDIS_UNITS[match.group(2)]


class FilterModule:
    """Redis' own reading of sizes."""

    def filters(self) -> dict[str, Any]:
        return {"redis_memory_bytes": redis_memory_bytes}
