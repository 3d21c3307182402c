"""A learner outside the repository (a plain `pip install`, Colab without the clone): the package carries what
the lessons read. The wheel is built, installed (not editable) into a folder of its own, and lessons 04 and 07's
student copies run from an empty folder with that install first on the path."""

import importlib.util
import shutil
import subprocess
import sys
import zipfile

import nbformat
import pytest
from conftest import REPO
from nbclient import NotebookClient

from course_utils.exercises import NOT_ATTEMPTED
from course_utils.lessons import STUDENT


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory):
    """The course's wheel, built from this checkout and installed into a fresh folder; returns that folder."""
    root = tmp_path_factory.mktemp("wheel")
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *isolation, "-w", str(root / "dist"),
                    str(REPO)], check=True, capture_output=True)
    wheel, = (root / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "course_utils/reproduced/04_fine_tuning_images.json" in names, "lesson 04's table is not package data"
    assert "course_utils/reproduced/04_paper_recipe.jsonl" in names and "course_utils/scenes/reach.xml" in names
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(root / "site"),
                    str(wheel)], check=True, capture_output=True)
    return root / "site"


@pytest.mark.parametrize("slug", ["04_fine_tuning_images", "07_robot_reaching"])
def test_student_copy_runs_from_the_installed_wheel(slug, wheel_site, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(wheel_site))  # the kernel imports the wheel's course_utils, not the checkout
    monkeypatch.setenv("COURSE_DATA_DIR", str(REPO / "data"))  # the lessons' warm caches (the lessons ran first)
    learner = tmp_path / "learner"
    learner.mkdir()
    shutil.copy(STUDENT / f"{slug}.ipynb", learner)  # a notebook alone in an empty folder, as on Colab
    nb = nbformat.read(learner / f"{slug}.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import course_utils; print(course_utils.__file__)"))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(learner)}}).execute()
    where = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert where.startswith(str(wheel_site)), f"the kernel imported course_utils from {where!r}, not the wheel"
    for cell in nb.cells:
        if "exercise" in cell.metadata.get("tags", []):
            text = "".join(o.get("text", "") for o in cell.outputs if o["output_type"] == "stream")
            assert NOT_ATTEMPTED in text, f"{slug}: an exercise cell printed {text!r}"
