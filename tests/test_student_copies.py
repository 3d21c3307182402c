"""Each student copy runs top to bottom; every exercise cell says 'not attempted', nothing crashes.

Runs after the lesson notebooks (the README's test command lists notebooks/ first), so the lessons'
caches under data/ are warm and a student copy costs a fraction of the lesson's cold time.
"""


import nbformat
import pytest
from conftest import REPO
from nbclient import NotebookClient

from course_utils.exercises import NOT_ATTEMPTED
from course_utils.lessons import LESSONS, STUDENT


@pytest.mark.parametrize("slug", [lesson.slug for lesson in LESSONS])
def test_student_copy_runs_and_reports_not_attempted(slug, monkeypatch):
    monkeypatch.delenv("COURSE_DATA_DIR")  # share the lessons' caches in data/
    nb = nbformat.read(STUDENT / f"{slug}.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(STUDENT)}}).execute()
    exercises = [c for c in nb.cells if "exercise" in c.metadata.get("tags", [])]
    for cell in exercises:
        text = "".join(o.get("text", "") for o in cell.outputs if o["output_type"] == "stream")
        assert NOT_ATTEMPTED in text, f"{slug}: an exercise cell printed {text!r}"
    solutions = sum("solution" in c.metadata.get("tags", []) for c in nbformat.read(
        REPO / "notebooks" / f"{slug}.ipynb", as_version=4).cells)
    assert len(exercises) == solutions
