"""nbgrader assignments generated from the lessons: the source is right for every lesson, and one lesson goes
through the whole cycle (release, three submissions, autograde, feedback, export) with exact grades."""

import copy
import csv
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import REPO

from course_utils.authoring import grading
from course_utils.lessons import LESSONS, STUDENT

GRADED = "03_replacing_the_head"  # four exercises and 14 s warm: the cheapest lesson to autograde three times


def regions_removed(source: str) -> list[str]:
    """The non-empty lines left when every solution region is cut out, as nbgrader's release does."""
    keep, inside = [], False
    for line in source.splitlines():
        if "BEGIN SOLUTION" in line or "END SOLUTION" in line:
            inside = "BEGIN" in line
        elif not inside and line.strip():
            keep.append(line)
    return keep


def test_solution_source_keeps_the_blank_and_the_solution():
    solution = "x = compute()\nq4.check(x)\nprint(x)"
    source = grading.solution_source(solution, "x = ____\nq4.check(x)")
    assert regions_removed(source) == ["x = ____", "q4.check(x)"]
    assert [line for line in source.splitlines() if "SOLUTION" not in line and "____" not in line] == solution.splitlines()


def test_checked_answer_needs_one_check_call():
    assert grading.checked_answer("q3.check((train, labels, test))") == ("q3", "(train, labels, test)")
    with pytest.raises(ValueError, match="exactly one"):
        grading.checked_answer("answer = 1")


def test_every_lesson_becomes_an_assignment_equal_to_its_student_copy(tmp_path):
    written = grading.write_course(tmp_path)
    assert (tmp_path / "nbgrader_config.py").is_file()
    assert [p.parent.name for p in written] == [lesson.slug for lesson in LESSONS if lesson.slug != "00_start_here"]
    for path in written:
        source = nbformat.read(path, as_version=4)
        student = nbformat.read(STUDENT / path.name, as_version=4)
        meta = [c.metadata.get("nbgrader") for c in source.cells]
        tests = [m for m in meta if m and m["grade"]]
        assert len(tests) == sum("exercise" in c.metadata.get("tags", []) for c in student.cells) > 0
        assert all(m["points"] == grading.POINTS and m["locked"] for m in tests)
        # Without its test cells and solution regions, the assignment is the student copy, cell by cell.
        released = [regions_removed(c.source) if c.metadata.get("nbgrader") else c.source.splitlines()
                    for c in source.cells if not (c.metadata.get("nbgrader") or {}).get("grade")]
        assert released == [[line for line in c.source.splitlines() if line.strip()] if "exercise" in c.metadata.get(
            "tags", []) else c.source.splitlines() for c in student.cells], path.name


def nbgrader(course: Path, *args: str) -> None:
    """Run one nbgrader command in the course folder; fail with its output."""
    env = {k: v for k, v in os.environ.items() if k != "COURSE_DATA_DIR"}  # share the lessons' warm caches
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # nbgrader runs `alembic` by name
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.mark.slow
def test_nbgrader_cycle_gives_exact_grades(tmp_path):
    course = tmp_path / "course"
    grading.write_course(course, [GRADED])
    nbgrader(course, "generate_assignment", GRADED)
    released = nbformat.read(course / "release" / GRADED / f"{GRADED}.ipynb", as_version=4)
    instructor = nbformat.read(REPO / "notebooks" / f"{GRADED}.ipynb", as_version=4)
    answers = {grading.checked_answer(c.source)[0]: c.source for c in instructor.cells
               if "solution" in c.metadata.get("tags", [])}
    assert len(answers) == 4
    submissions = {"instructor": answers, "untouched": {}, "one_wrong": answers | {"q3": "answer = True\nq3.check(answer)"}}
    for student, replaced in submissions.items():
        nb = copy.deepcopy(released)
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if cell.metadata.get("nbgrader", {}).get("solution") and grade_id in replaced:
                cell.source = replaced[grade_id]
        path = course / "submitted" / student / GRADED / f"{GRADED}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    nbgrader(course, "autograde", GRADED)
    nbgrader(course, "generate_feedback", GRADED)
    nbgrader(course, "export")
    with open(course / "grades.csv") as f:
        scores = {row["student_id"]: (float(row["score"]), float(row["max_score"])) for row in csv.DictReader(f)}
    assert scores == {"instructor": (4.0, 4.0), "untouched": (0.0, 4.0), "one_wrong": (3.0, 4.0)}
    feedback = (course / "feedback" / "one_wrong" / GRADED / f"{GRADED}.html").read_text()
    assert "q3: Not yet." in feedback  # the checker's own words reach the student
