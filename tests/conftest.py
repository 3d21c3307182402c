"""Shared fixtures: every test gets its own data folder and no network."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"


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


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium driven by Playwright (it cannot download its own browser here)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield chromium
        chromium.close()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (for a test's own server)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
