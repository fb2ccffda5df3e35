"""Helpers shared by test folders (tests/ is on sys.path via tests/conftest.py)."""
