"""The committed notebooks: executed without errors, generated cells current, student copies current."""

import json

import nbformat
import pytest

from course_utils.lessons import LESSONS, NOTEBOOKS, STUDENT, generated_cells, student_copy

PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_every_notebook_is_a_lesson_and_every_lesson_has_a_notebook():
    assert [p.stem for p in PATHS] == [lesson.slug for lesson in LESSONS]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_committed_executed_without_errors(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    unrun = [i for i, c in enumerate(code) if c["execution_count"] is None]
    assert not unrun, f"{path.name}: code cells {unrun} were never executed; run `make execute NB={path}`"
    errors = [o.get("ename") for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, f"{path.name}: committed with error outputs {errors}"
    counts = [c["execution_count"] for c in code]
    assert counts == sorted(counts), f"{path.name}: cells were run out of order"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_structure_and_generated_cells_are_current(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].source.startswith("# ") and "\n> " in nb.cells[0].source, "cell 1: H1 title + subtitle"
    wanted = generated_cells(path.stem)
    assert "nav" in nb.cells[1].metadata.get("tags", []) and "nav" in nb.cells[-1].metadata.get("tags", [])
    tagged = {t: c.source for c in nb.cells for t in c.metadata.get("tags", []) if t in wanted}
    assert tagged == wanted, f"{path.name}: generated cells are out of date; run `make execute`"
    setup_cells = [c for c in nb.cells if "setup" in c.metadata.get("tags", [])]
    assert len(setup_cells) == 1 and nb.cells.index(setup_cells[0]) < 6, "one setup cell, near the top"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_navigation_links_point_to_existing_files(path):
    import re

    for target in re.findall(r"\]\((?!https?:)([^)#]+\.ipynb)", generated_cells(path.stem)["nav"]):
        assert (NOTEBOOKS / target).is_file(), f"{path.name} links to missing {target}"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_student_copy_is_current(path):
    committed = STUDENT / path.name
    assert committed.is_file(), f"student/{path.name} is missing; run `python -m course_utils student`"
    fresh = student_copy(nbformat.read(path, as_version=4), path.stem)
    assert nbformat.read(committed, as_version=4).cells == fresh.cells, \
        f"student/{path.name} is out of date; run `python -m course_utils student`"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_solutions_have_blanks(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if "solution" in cell.metadata.get("tags", []):
            assert "____" in cell.metadata.get("blank", ""), f"{path.name}: a solution cell has no blank"
            assert ".check(" in cell.source


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_questionnaire_with_answers_for_instructors_only(path):
    import re

    nb = nbformat.read(path, as_version=4)
    tagged = {tag: [c for c in nb.cells if tag in c.metadata.get("tags", [])] for tag in ("questionnaire", "instructor")}
    assert len(tagged["questionnaire"]) == 1 and len(tagged["instructor"]) == 1, f"{path.name}: one questionnaire"
    questions = re.findall(r"^\d+\. ", tagged["questionnaire"][0].source, re.M)
    answers = re.findall(r"^\d+\. ", tagged["instructor"][0].source, re.M)
    assert 5 <= len(questions) <= 8 and len(answers) == len(questions), f"{path.name}: 5-8 questions, one answer each"
    student = student_copy(nb, path.stem)
    assert not any("instructor" in c.metadata.get("tags", []) for c in student.cells)
    assert tagged["instructor"][0].source not in {c.source for c in student.cells}


@pytest.mark.parametrize("path", [p for p in PATHS if p.stem[:2] in ("03", "04", "05")], ids=lambda p: p.name)
def test_an_exercise_before_the_summary(path):
    nb = nbformat.read(path, as_version=4)
    summary = next(i for i, c in enumerate(nb.cells) if c.source.startswith("## Summary"))
    assert any("solution" in c.metadata.get("tags", []) for c in nb.cells[:summary]), \
        f"{path.name}: at least one exercise in the middle of the lesson, not only at the end"
