"""Suite-wide setup. Its presence puts tests/ on sys.path, so shared support modules
(``adapters_support``: the tiny offline BERT and synthetic tickets) import by name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deskpilot.config import Settings


@pytest.fixture(scope="session")
def data_root() -> Path:
    """``../shared/data`` (or DESKPILOT_DATA_DIR); skipped when absent, failed under CI's switch."""
    found = Settings().evaluation_data_dir()
    if found is None:
        if os.environ.get("DESKPILOT_REQUIRE_SERVICES") == "1":
            pytest.fail("evaluation data folder missing (DESKPILOT_DATA_DIR or ../shared/data)")
        pytest.skip("evaluation data folder absent (set DESKPILOT_DATA_DIR or provide ../shared/data)")
    return found
