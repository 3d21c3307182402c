"""An nbgrader course folder generated from the lesson notebooks: one source for student copies, checks and grades.

Each exercise cell (tagged ``solution``, its blank in ``metadata["blank"]``) becomes an nbgrader solution cell:
the lines it shares with its blank stay as they are; where the two differ, the blank's lines come first and the
instructor's follow between ``### BEGIN SOLUTION`` and ``### END SOLUTION``. With an empty code stub, nbgrader's release is
the student copy's blank. After it comes a locked test cell worth ``POINTS`` that calls the exercise's checker,
``qN.grade(answer)``, the same checker as ``qN.check(answer)``.
"""

from __future__ import annotations

import ast
import copy
import difflib
from pathlib import Path

from course_utils import lessons
from course_utils.errors import SettingError

POINTS = 1  # per exercise; an open question scores when it is answered in a sentence (read it in formgrader)
COURSE_ID = "transfer-learning-course"
CONFIG = f'''# nbgrader configuration of the course, written by `python -m course_utils nbgrader`.
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "{COURSE_ID}"
# The exercise cells keep their `____` blank outside the solution region, so the stub is empty.
c.ClearSolutions.code_stub = {{"python": ""}}
# Autograding runs the whole lesson: allow a cold cache's slowest cell.
c.Execute.timeout = 900
'''


def _meta(grade_id: str, *, solution: bool, points: int = 0) -> dict:
    """nbgrader's cell metadata (schema 3) for a solution cell or an autograded test cell."""
    meta = {"grade": not solution, "grade_id": grade_id, "locked": not solution, "schema_version": 3,
            "solution": solution, "task": False}
    return meta | ({"points": points} if not solution else {})


def checked_answer(source: str) -> tuple[str, str]:
    """The question and the answer expression of the one ``qN.check(answer)`` call in an exercise cell."""
    calls = [node for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "check"
             and isinstance(node.func.value, ast.Name) and len(node.args) == 1]
    if len(calls) != 1:
        raise SettingError(f"an exercise cell needs exactly one `qN.check(answer)` call, found {len(calls)}:\n{source}")
    return calls[0].func.value.id, ast.get_source_segment(source, calls[0].args[0])


def solution_source(solution: str, blank: str) -> str:
    """The nbgrader source of an exercise cell: lines shared with the blank kept, where they differ the blank's
    lines followed by the instructor's between solution markers."""
    sol, bla = solution.splitlines(), blank.splitlines()
    lines = []
    for op, b0, b1, s0, s1 in difflib.SequenceMatcher(None, bla, sol, autojunk=False).get_opcodes():
        if op == "equal":
            lines += sol[s0:s1]
            continue
        lines += bla[b0:b1]
        if s1 > s0:
            lines += ["### BEGIN SOLUTION", *sol[s0:s1], "### END SOLUTION"]
    return "\n".join(lines)


def assignment(nb, slug: str):
    """The nbgrader source notebook of a lesson: the student copy's cells, with marked solutions and test cells."""
    import nbformat

    nb = copy.deepcopy(nb)
    cells = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "instructor" in tags:
            continue
        if "nav" in tags:
            cell.source = lessons.nav_markdown(slug, "student")
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
        cells.append(cell)
        if "solution" not in tags:
            continue
        name, answer = checked_answer(cell.source)
        cell.source = solution_source(cell.source, cell.metadata.pop("blank"))
        cell.metadata["nbgrader"] = _meta(name, solution=True)
        test = nbformat.v4.new_code_cell(
            f"# Autograded: {name}, {POINTS} point{'s' * (POINTS != 1)}. The checker of {name}.check(), as an "
            f"assertion.\n{name}.grade({answer})")
        test.metadata["nbgrader"] = _meta(f"{name}_test", solution=False, points=POINTS)
        cells.append(test)
    nb.cells = cells
    nb.metadata.pop("widgets", None)
    return nb


def write_course(out: Path, slugs: list[str] | None = None) -> list[Path]:
    """Write an nbgrader course folder: nbgrader_config.py and source/<lesson>/<lesson>.ipynb for each lesson."""
    import nbformat

    slugs = slugs or [lesson.slug for lesson in lessons.LESSONS]
    known = [lesson.slug for lesson in lessons.LESSONS]
    for slug in slugs:
        if slug not in known:
            raise SettingError(f"No lesson {slug!r}: the lessons are {', '.join(known)}.")
        lessons.check_notebook(lessons.NOTEBOOKS / f"{slug}.ipynb")
    lessons.check_output_folder(out, "the nbgrader course")
    sources = {}  # every assignment made before the first is written: a broken lesson leaves no half-written course
    for slug in slugs:
        nb = nbformat.read(lessons.NOTEBOOKS / f"{slug}.ipynb", as_version=4)
        if any("solution" in cell.metadata.get("tags", []) for cell in nb.cells):  # lesson 00 has nothing to grade
            sources[out / "source" / slug / f"{slug}.ipynb"] = assignment(nb, slug)
    (out / "nbgrader_config.py").write_text(CONFIG)
    for path, nb in sources.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)
    return list(sources)
