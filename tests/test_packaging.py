"""`pip install .` must ship every mapped package (plugin/ -> deskpilot, adapters/ -> ...)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_every_package_and_the_migrations(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = tmp_path.glob("deskpilot-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected_sources = {
        f"deskpilot/{p.relative_to(ROOT / 'plugin')}" for p in (ROOT / "plugin").rglob("*.py")
    } | {
        f"deskpilot/{folder}/{p.relative_to(ROOT / folder)}"
        for folder in ("adapters", "connectors", "evaluation")
        for p in (ROOT / folder).rglob("*.py")
    }
    missing = sorted(n for n in expected_sources if "__pycache__" not in n and n not in names)
    assert not missing, f"modules missing from the wheel (add them to [tool.setuptools] packages): {missing}"
    assert "deskpilot/store/migrations/script.py.mako" in names
    assert not [n for n in names if n.startswith(("tests/", "examples/"))]
