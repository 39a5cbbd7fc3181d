"""Makes the shared split test data (tests/stages/split_data.py) importable from this folder."""

from __future__ import annotations

import sys
from pathlib import Path

STAGE_TESTS = str(Path(__file__).resolve().parents[1])
if STAGE_TESTS not in sys.path:
    sys.path.insert(0, STAGE_TESTS)
