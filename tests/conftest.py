"""Shared fixtures: every test gets its own data folder and no network."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_data(tmp_path, monkeypatch):
    """A private data folder and no downloads, so tests never touch data/ or the network."""
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("COURSE_ASSETS_DIR", raising=False)
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


def run_cli(*args, env=None, cwd=REPO):
    """Run ``python -m course_utils ARGS`` and return the finished process."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "course_utils", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=300)
