"""Unit tests of the modules import them in-process through tests/prefect_module_runner.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
