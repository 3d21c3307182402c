"""A self-study learner's JupyterLab (`make lab`, Binder) shows what learners use: no nbgrader, no news pop-up."""

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from conftest import REPO, free_port

LEARNER = REPO / "jupyter" / "learner"


def lab_answers(tmp_path, learner: bool) -> tuple[int, dict]:
    """Start JupyterLab (with the learner's config folder or without), then return the status of nbgrader's
    formgrader page and the page config that /lab sends the browser."""
    port, token = free_port(), secrets.token_hex(8)
    tmp_path.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(tmp_path), "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_DATA_DIR": str(tmp_path / "share"), "JUPYTER_CONFIG_PATH": str(LEARNER) if learner else ""}
    server = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
                               "--ip=127.0.0.1", f"--ServerApp.token={token}", "--allow-root",
                               f"--ServerApp.root_dir={tmp_path}"], env=env, stdout=open(tmp_path / "lab.log", "w"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                page = urllib.request.urlopen(f"{base}/lab?token={token}", timeout=5).read().decode()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"JupyterLab did not start within a minute: {(tmp_path / 'lab.log').read_text()[-2000:]}")
        try:
            status = urllib.request.urlopen(f"{base}/formgrader?token={token}", timeout=10).status
        except urllib.error.HTTPError as exc:
            status = exc.code
        config = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page, re.S)
        return status, json.loads(config.group(1))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_the_learner_config_turns_off_nbgrader_and_the_news(tmp_path):
    status, config = lab_answers(tmp_path / "learner", learner=True)
    assert status == 404  # nbgrader's server extensions are off
    assert "@jupyter/nbgrader" in config["disabledExtensions"]  # and its menus
    assert config["news"] == {"disabled": True}
    # The control: the same install without the folder serves nbgrader (an instructor's own `jupyter lab`).
    status, config = lab_answers(tmp_path / "instructor", learner=False)
    assert status != 404 and "@jupyter/nbgrader" not in config["disabledExtensions"]


def test_make_lab_and_binder_start_with_the_learner_config():
    assert "JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter/learner" in (REPO / "Makefile").read_text()
    assert "jupyter/learner" in (REPO / "postBuild").read_text()
