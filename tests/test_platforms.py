"""Binder and Colab, tested as far as they can be from a machine that reaches only PyPI."""

import os
import re
import subprocess
import sys
import venv

import nbformat
from conftest import REPO

from course_utils.lessons import LESSONS, REPO_SLUG, binder_url, colab_url, generated_cells


def test_postbuild_installs_the_course_and_assets_in_a_fresh_venv(tmp_path):
    venv.create(tmp_path / "venv", with_pip=True)
    bindir = tmp_path / "venv" / "bin"
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "VIRTUAL_ENV": str(tmp_path / "venv")}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["bash", str(REPO / "postBuild")], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    probe = ("from course_utils import assets\n"
             "missing = [a.name for a in assets.ASSETS.values() if a.no_deps and assets.package_folder(a) is None]\n"
             "assert not missing, missing\n"
             "print('ok', len(assets.ASSETS))")
    out = subprocess.run([str(bindir / "python"), "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.stdout.startswith("ok"), out.stderr[-2000:]


def test_setup_cell_installs_the_course_where_it_is_missing(monkeypatch, capsys):
    """On Colab (no course_utils), the setup cell clones the repository and installs it with its assets."""
    import importlib.util

    calls = []
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "course_utils" else real_find_spec(name, *a))
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append((cmd, kw)))
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace = {}
    exec(generated_cells(LESSONS[0].slug)["setup"], namespace)
    (cmd, kw), = calls
    assert f"git clone -q --depth 1 https://github.com/{REPO_SLUG} course-repo" in cmd
    python = f'"{sys.executable}"'  # the kernel's own Python, not whichever pip is first on PATH
    assert f"{python} -m pip install -q -c course-repo/constraints-colab.txt -e course-repo" in cmd
    assert f"{python} -m course_utils install-assets" in cmd
    assert kw["check"] and sys.path[0] == "course-repo"
    assert str(namespace["device"]) in ("cpu", "cuda", "mps")


def test_setup_cell_installs_nothing_where_the_course_is_present(monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    exec(generated_cells(LESSONS[0].slug)["setup"], {})
    assert calls == []


def test_badges_come_from_one_repository_url():
    for lesson in LESSONS:
        nav = generated_cells(lesson.slug)["nav"]
        assert colab_url(lesson.slug) in nav and binder_url(lesson.slug) in nav
        assert nav.count("github/" + REPO_SLUG) + nav.count("gh/" + REPO_SLUG) == 2
    hits = subprocess.run(["git", "grep", "-l", REPO_SLUG, "--", "course_utils"], cwd=REPO,
                          capture_output=True, text=True).stdout.split()
    assert hits == ["course_utils/lessons.py"], f"the repository URL is written in more than one place: {hits}"


def test_notebooks_declare_the_plain_python3_kernel():
    for lesson in LESSONS:
        nb = nbformat.read(REPO / "notebooks" / f"{lesson.slug}.ipynb", as_version=4)
        assert nb.metadata.kernelspec.name == "python3"


def test_student_badges_open_the_student_copies():
    """A learner who opens a student copy on Colab or Binder must land in the student copy, not the solutions."""
    for lesson in LESSONS:
        for folder, other in (("student", "notebooks"), ("notebooks", "student")):
            nb = nbformat.read(REPO / folder / f"{lesson.slug}.ipynb", as_version=4)
            navs = [c.source for c in nb.cells if "nav" in c.metadata.get("tags", [])]
            assert navs, f"{folder}/{lesson.slug} has no navigation cell"
            for nav in navs:
                assert colab_url(lesson.slug, folder) in nav and binder_url(lesson.slug, folder) in nav
                assert f"/{other}/{lesson.slug}.ipynb" not in nav, f"{folder}/{lesson.slug} links to {other}/"


def sanitized(text: str) -> str:
    """``text`` after the nbval sanitizer's substitutions, applied in the file's order as nbval applies them."""
    import configparser
    import re

    config = configparser.ConfigParser(interpolation=None)
    config.read(REPO / "tests" / "nbval_sanitize.cfg")
    for section in config.sections():
        text = re.sub(config[section]["regex"], config[section]["replace"], text)
    return text


def test_every_setup_cell_passes_on_a_gpu_too():
    """Each lesson's committed setup output, as a CUDA machine would print it, compares equal under the sanitizer."""
    import json

    for path in sorted((REPO / "notebooks").glob("[0-9]*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        setup = next(c for c in cells if c["cell_type"] == "code" and "setup(seed" in "".join(c["source"]))
        committed = "".join("".join(o.get("text", "")) for o in setup["outputs"])
        assert "device: cpu (" in committed, path.name
        on_gpu = re.sub(r"device: cpu \(\d+ threads\)", "device: cuda (NVIDIA L4)", committed)
        on_gpu = re.sub(r"No GPU here[^\n]*\n", "", on_gpu)
        assert on_gpu != committed and sanitized(on_gpu) == sanitized(committed), path.name


def test_the_gpu_check_runs_dry_on_a_cpu():
    """``.ci/gpu-check`` is the script a CUDA machine runs; on a CPU its dry run installs, reports and runs the
    device tests on a played GPU, so the script cannot rot before a GPU is lent."""
    import torch

    if torch.cuda.is_available():  # on a GPU the whole check is `make test-gpu`, not this
        return
    done = subprocess.run(["bash", ".ci/gpu-check", "--dry-run"], cwd=REPO, capture_output=True, text=True,
                          timeout=900, env={k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "gpu-check --dry-run: passed" in done.stdout
