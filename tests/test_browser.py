"""Every lesson, run in JupyterLab in a real (headless) Chromium: no errors, widgets, figures, finished bars.

Lab serves a copy of notebooks/ so that nothing it saves can touch the committed notebooks. Screenshots
go to artifacts/screenshots/. The server and its kernels are stopped at the end whatever happens.
"""

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import CHROMIUM, REPO, free_port

from course_utils.lessons import LESSONS

SHOTS = REPO / "artifacts" / "screenshots"
LAB_SETTINGS = {  # per-plugin user settings for the test's private JupyterLab
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on loopback, serving a copy of notebooks/, with a private home."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium).")
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    home = root / "home"
    settings = home / "lab-settings"
    for name, value in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(value))
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_DATA_DIR": str(home / "share"), "IPYTHONDIR": str(home / "ipython"),
           "MPLCONFIGDIR": str(home / "mpl"), "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
    log = open(root / "lab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--ServerApp.token={token}", "--allow-root", f"--ServerApp.root_dir={root / 'notebooks'}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"JupyterLab did not start; see {root / 'lab.log'}")
        yield url, token
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the kernels it started
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def menu(page, top: str, item: str) -> None:
    """Click a menu-bar entry, then one of its items."""
    page.locator(".lm-MenuBar-itemLabel", has_text=top).first.click()
    page.locator(".lm-Menu-itemLabel", has_text=item).first.click()


def run_all(page, timeout_s: float) -> list[str]:
    """Clear the committed outputs, run every cell from the Run menu, wait until none is pending."""
    menu(page, "Edit", "Clear Outputs of All Cells")
    menu(page, "Run", "Run All Cells")
    deadline = time.time() + timeout_s
    prompts = []
    while time.time() < deadline:
        time.sleep(2)
        prompts = [p.strip() for p in page.locator(".jp-NotebookPanel:visible .jp-CodeCell .jp-InputPrompt").all_inner_texts()]
        if prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts):
            counts = [int(p[1:-2]) for p in prompts]
            assert counts == list(range(1, len(counts) + 1)), f"cells ran out of order: {prompts}"
            return prompts
    pytest.fail(f"cells still running after {timeout_s:.0f} s: {prompts}")


@pytest.mark.parametrize("slug", [lesson.slug for lesson in LESSONS])
def test_lesson_runs_in_jupyterlab(lab, browser, slug):
    url, token = lab
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        # A workspace of its own per lesson, so Lab does not restore the previous lesson's tab.
        page.goto(f"{url}/lab/workspaces/{slug}/tree/{slug}.ipynb?token={token}&reset")
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000,
                               state="attached")
        no = page.get_by_role("button", name="No", exact=True)  # "get notified about Jupyter news?"
        if no.count():
            no.first.click()
        run_all(page, timeout_s=600)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{slug}.png"))

        nb = json.loads((REPO / "notebooks" / f"{slug}.ipynb").read_text())
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t.split("\n")[0]]
        # Cells tagged raises-exception show the course's own one-line messages on purpose, and only those.
        expected = sum("raises-exception" in c["metadata"].get("tags", []) for c in nb["cells"])
        unexpected = [t for t in tracebacks if "Traceback" in t or not re.match(r"(ImageInputError|AssetError): ", t)]
        assert not unexpected, f"{slug}: a cell shows an error: {unexpected[0][:300]}"
        assert len(tracebacks) == expected, f"{slug}: {len(tracebacks)} one-line errors shown, {expected} expected"
        assert page.get_by_text("Error displaying widget").count() == 0, f"{slug}: a widget failed to render"

        outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
        figures = sum("image/png" in o.get("data", {}) for o in outputs)
        widgets = sum("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
        assert page.locator(".jp-OutputArea-output img").count() >= figures, f"{slug}: figures missing"
        assert page.locator(".jp-OutputArea-output .jupyter-widgets").count() >= widgets, f"{slug}: widgets missing"
        for bar in page.locator("progress").all():  # the Trainer's notebook progress bars
            assert bar.get_attribute("value") == bar.get_attribute("max"), f"{slug}: a progress bar did not finish"
        for label in page.locator(".widget-hprogress").all():  # tqdm's widget bars
            assert "bar-success" in (label.locator(".progress-bar").get_attribute("class") or "") or \
                "100%" in label.inner_text(), f"{slug}: a tqdm bar did not finish"
    finally:
        page.close()
        shut_down_kernels(url, token)


def shut_down_kernels(url: str, token: str) -> None:
    """Stop every kernel the lesson started, so a lesson that timed out cannot keep computing beside the next one."""
    with urllib.request.urlopen(f"{url}/api/kernels?token={token}", timeout=10) as response:
        kernels = json.load(response)
    for kernel in kernels:
        request = urllib.request.Request(f"{url}/api/kernels/{kernel['id']}?token={token}", method="DELETE")
        urllib.request.urlopen(request, timeout=30).close()
