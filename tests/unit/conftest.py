"""Unit tests import the modules and plugins in-process through tests/prefect_module_runner.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
