"""Every ``python -m course_utils`` subcommand stops on bad input with one line on stderr, before doing any work.

Bad input: a missing file, a file that is not what the command expects (a truncated notebook, a text file where a
folder belongs), an output it cannot write (under a regular file, or a folder marked read-only the way
``assets.writable`` records it: the tests run as root, which chmod does not stop) and contradictory flags. Each
test makes every worker the command would start raise, so reaching one fails the test.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import run_cli

from course_utils import assets, cli, lessons
from course_utils.lessons import LESSONS, NOTEBOOKS

FIRST = f"{LESSONS[0].slug}.ipynb"
RUN = subprocess.run  # the real one, for the tests through `python -m course_utils`
# Output folders a command cannot write, from the ``files`` fixture, and what its line says.
UNWRITABLE_FOLDERS = [("file", "notes.txt: it is a file, not a folder"), ("under_file", "notes.txt is a file, not a folder"),
                      ("read_only", "read-only is read-only")]


def never(*args, **kwargs):
    """A worker that a refused command must not reach."""
    raise AssertionError("the command started its work before refusing its input")


def refused(capsys, argv: list[str]) -> str:
    """Run ``cli.main(argv)``; check it exits non-zero with one line on stderr and no traceback; return the line."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code not in (0, None) and len(lines) == 1 and "Traceback" not in err, (code, err)
    return lines[0]


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    """Bad inputs: a regular file, a path under it, a missing notebook, a folder, broken and non-notebook files."""
    text = tmp_path / "notes.txt"
    text.write_text("not a folder\n")
    (tmp_path / "folder.ipynb").mkdir()
    (tmp_path / "truncated.ipynb").write_text(NOTEBOOKS.joinpath(FIRST).read_text()[:500])
    (tmp_path / "binary.ipynb").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    (tmp_path / "list.ipynb").write_text("[]")
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    return {"file": text, "under_file": text / "out", "missing": tmp_path / "missing.ipynb",
            "folder": tmp_path / "folder.ipynb", "truncated": tmp_path / "truncated.ipynb",
            "binary": tmp_path / "binary.ipynb", "list": tmp_path / "list.ipynb", "read_only": read_only}


@pytest.fixture
def read_only(files, monkeypatch) -> Path:
    """A folder that ``assets.writable`` found read-only (as on a read-only mount)."""
    monkeypatch.setitem(assets._WRITABLE, files["read_only"].absolute(), False)
    return files["read_only"]


@pytest.fixture
def broken_lessons(tmp_path, monkeypatch) -> Path:
    """A notebooks/ folder whose first lesson is cut off halfway (a disk filled up while it was saved)."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    folder.joinpath(FIRST).write_text(NOTEBOOKS.joinpath(FIRST).read_text()[:500])
    monkeypatch.setattr(lessons, "NOTEBOOKS", folder)
    return folder


@pytest.fixture(autouse=True)
def no_work(monkeypatch, tmp_path):
    """Every worker raises, and nothing can write the real student/ folder or the lock files."""
    from course_utils import bench
    from course_utils.authoring import grading, lock, site

    monkeypatch.setattr(subprocess, "run", never)  # execute's nbconvert, site's Jupyter Book, lock's pip freeze
    monkeypatch.setattr(subprocess, "call", never)  # install-assets' pip
    monkeypatch.setattr(nbformat, "write", never)  # student copies, nbgrader assignments
    monkeypatch.setattr(lessons, "update_navigation", never)
    monkeypatch.setattr(lessons, "STUDENT", tmp_path / "student")
    monkeypatch.setattr(bench, "measure", never)
    monkeypatch.setattr(grading, "assignment", never)
    monkeypatch.setattr(site, "write_source", never)
    monkeypatch.setattr(lock, "frozen", never)
    monkeypatch.setattr(lock, "write_lock", never)
    monkeypatch.setattr(assets, "asset_path", never)
    monkeypatch.setattr(assets, "fetch", never)
    monkeypatch.setattr(cli, "check", never)


# The parser: usage errors, contradictory flags, every subcommand wired to its own function.

@pytest.mark.parametrize("argv, says", [
    ([], "required: command"),
    (["nonsense"], "invalid choice: 'nonsense'"),
    (["check", "--verbose"], "unrecognized arguments: --verbose"),
    (["install-assets", "extra"], "unrecognized arguments: extra"),
    (["bench", "--bf16", "--no-bf16"], "not allowed with argument"),
    (["lock", "--diff", "--mismatched", "constraints.txt"], "not allowed with argument"),
    (["reproduce", "05"], "invalid choice: '05'"),
    (["reproduce", "paper", "--max-runs", "two"], "invalid int value: 'two'"),
    (["nbgrader"], "required: out"),
    (["hub-link"], "required: hub_url"),
])
def test_usage_errors_and_contradictory_flags_are_one_line(capsys, argv, says):
    line = refused(capsys, argv)
    assert says in line and "--help" in line


def test_every_subcommand_is_wired_to_its_own_function():
    subcommands = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subcommands.choices) == set(cli.COMMANDS)


def test_a_subcommand_wired_to_nothing_is_an_error_not_fetch(capsys, monkeypatch):
    monkeypatch.delitem(cli.COMMANDS, "student")
    assert "'student' is not wired" in refused(capsys, ["student"])


# execute

@pytest.mark.parametrize("bad, says", [
    ("missing", "No notebook at"), ("folder", "is a folder, not a notebook"),
    ("truncated", "its JSON breaks at line"), ("binary", "it is not text"), ("list", "not a version-4 notebook"),
])
def test_execute_refuses_a_notebook_it_cannot_run(capsys, files, bad, says):
    assert says in refused(capsys, ["execute", str(files[bad])])


def test_execute_refuses_a_read_only_notebook(capsys, files, monkeypatch):
    good = files["read_only"] / FIRST
    good.write_text(NOTEBOOKS.joinpath(FIRST).read_text())
    monkeypatch.setattr(lessons.os, "access", lambda path, *args, **kwargs: Path(path) != good)
    assert "the file is read-only" in refused(capsys, ["execute", str(good)])


def test_execute_checks_the_student_copies_it_makes_afterwards(capsys, files, broken_lessons, monkeypatch):
    good = files["read_only"] / FIRST
    good.write_text(NOTEBOOKS.joinpath(FIRST).read_text())
    assert "its JSON breaks at line" in refused(capsys, ["execute", str(good)])
    monkeypatch.setattr(lessons, "NOTEBOOKS", NOTEBOOKS)
    monkeypatch.setattr(lessons, "STUDENT", files["under_file"])
    assert "notes.txt is a file, not a folder" in refused(capsys, ["execute", str(good)])


# student

def test_student_refuses_a_broken_lesson(capsys, broken_lessons):
    assert f"{FIRST} is not a notebook" in refused(capsys, ["student"])


@pytest.mark.parametrize("bad, says", UNWRITABLE_FOLDERS)
def test_student_refuses_a_folder_it_cannot_write(capsys, files, read_only, monkeypatch, bad, says):
    monkeypatch.setattr(lessons, "STUDENT", files[bad])
    assert says in refused(capsys, ["student"])


def test_student_refuses_a_solution_cell_without_its_blank(capsys, broken_lessons):
    nb = nbformat.read(NOTEBOOKS / "03_replacing_the_head.ipynb", as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("blank", None)
    for lesson in LESSONS:
        broken_lessons.joinpath(f"{lesson.slug}.ipynb").write_text(nbformat.writes(nb))
    assert "has no metadata 'blank'" in refused(capsys, ["student"])


# bench: before the change it found out it could not write its JSON after running every lesson twice

@pytest.mark.parametrize("bad, says", [("under_file", "notes.txt is a file, not a folder"),
                                       ("folder", "it is a folder, not a file"), ("read_only", "read-only is read-only")])
def test_bench_refuses_a_table_it_cannot_write(capsys, files, read_only, bad, says):
    target = files[bad] if bad != "read_only" else read_only / "bench.json"
    assert says in refused(capsys, ["bench", "--json", str(target)])


def test_bench_refuses_a_broken_lesson_and_a_meaningless_bf16_setting(capsys, tmp_path, monkeypatch):
    from course_utils import bench

    monkeypatch.setenv("COURSE_BF16", "yes")
    assert "COURSE_BF16='yes' is not a setting" in refused(capsys, ["bench", "--json", str(tmp_path / "b.json")])
    monkeypatch.delenv("COURSE_BF16")
    monkeypatch.setattr(bench, "NOTEBOOKS", tmp_path)
    assert f"No notebook at {tmp_path / FIRST}" in refused(capsys, ["bench", "--json", str(tmp_path / "b.json")])


# nbgrader

@pytest.mark.parametrize("bad, says", UNWRITABLE_FOLDERS)
def test_nbgrader_refuses_a_course_folder_it_cannot_write(capsys, files, read_only, bad, says):
    assert says in refused(capsys, ["nbgrader", str(files[bad])])


def test_nbgrader_refuses_a_broken_lesson_and_writes_nothing(capsys, tmp_path, broken_lessons):
    assert "its JSON breaks at line" in refused(capsys, ["nbgrader", str(tmp_path / "course")])
    assert not (tmp_path / "course" / "nbgrader_config.py").exists()


# site

@pytest.mark.parametrize("bad, says", UNWRITABLE_FOLDERS)
def test_site_refuses_an_output_folder_it_cannot_write(capsys, files, read_only, bad, says):
    assert says in refused(capsys, ["site", "--out", str(files[bad])])


def test_site_refuses_a_broken_lesson_or_a_missing_jupyter_book(capsys, tmp_path, monkeypatch):
    from course_utils.authoring import site

    monkeypatch.setattr(site, "NOTEBOOKS", tmp_path)
    assert "No notebook at" in refused(capsys, ["site", "--out", str(tmp_path / "site")])
    monkeypatch.setitem(sys.modules, "jupyter_book", None)
    assert "Jupyter Book is not installed" in refused(capsys, ["site", "--out", str(tmp_path / "site")])


# fetch

@pytest.mark.parametrize("bad, says", UNWRITABLE_FOLDERS)
def test_fetch_refuses_a_folder_it_cannot_fill(capsys, files, read_only, bad, says):
    assert says in refused(capsys, ["fetch", "--to", str(files[bad])])


# lock

@pytest.mark.parametrize("content, says", [
    (None, "No lock file at"), ("folder", "(it is a folder)"), ("just some notes\n", "is not a lock file"),
    ("torch==2.5==2.6\n", "is not a lock file"), (b"\xff\xfe\x00binary", "Cannot read the lock file"),
])
def test_lock_refuses_a_file_that_is_not_a_lock(capsys, tmp_path, content, says):
    path = tmp_path / "lock.txt"
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content:
        path.write_text(content)
    assert says in refused(capsys, ["lock", "--mismatched", str(path)])


def test_lock_refuses_a_missing_lock_to_diff_and_a_lock_it_cannot_write(capsys, files, monkeypatch):
    from course_utils.authoring import lock

    monkeypatch.setattr(lock, "LOCK", files["missing"])
    assert "No lock file at" in refused(capsys, ["lock", "--diff"])
    monkeypatch.setattr(lock, "LOCK", files["under_file"] / "constraints.txt")
    assert "notes.txt is a file, not a folder" in refused(capsys, ["lock"])


# reproduce

@pytest.mark.parametrize("argv, says", [
    (["04", "--max-runs", "2"], "are for `reproduce paper`"),
    (["04", "--commit"], "are for `reproduce paper`"),
    (["paper", "--tiny", "--commit"], "--commit has nothing to commit"),
    (["paper", "--tiny", "--max-runs", "1"], "--max-runs is for the full plan"),
    (["paper", "--max-runs", "0"], "--max-runs must be 1 or more"),
    (["paper", "--max-runs", "-3"], "--max-runs must be 1 or more"),
])
def test_reproduce_refuses_contradictory_flags(capsys, monkeypatch, argv, says):
    from course_utils import paper_recipe, reproduce

    monkeypatch.setattr(reproduce, "load_elpv", never)
    monkeypatch.setattr(paper_recipe, "run", never)
    assert says in refused(capsys, ["reproduce", *argv])


def test_reproduce_refuses_a_table_it_cannot_write_or_read(capsys, files, tmp_path, monkeypatch):
    from course_utils import paper_recipe, reproduce

    monkeypatch.setattr(reproduce, "load_elpv", never)
    monkeypatch.setattr(paper_recipe, "run", never)
    monkeypatch.setattr(reproduce, "OUT", files["under_file"] / "04.json")
    assert "notes.txt is a file, not a folder" in refused(capsys, ["reproduce", "04"])
    monkeypatch.setattr(paper_recipe, "TABLE", files["under_file"] / "paper.jsonl")
    assert "notes.txt is a file, not a folder" in refused(capsys, ["reproduce", "paper"])
    table = tmp_path / "paper.jsonl"
    table.write_text(json.dumps({"key": "a"}) + "\n" + '{"key": "b", "accur')
    monkeypatch.setattr(paper_recipe, "TABLE", table)
    assert "line 2 is not JSON" in refused(capsys, ["reproduce", "paper"])
    monkeypatch.setattr(assets, "REPO_ROOT", tmp_path)  # an installed copy: no .git
    assert "--commit needs a git clone" in refused(capsys, ["reproduce", "paper", "--commit"])


# Through the real entry point: one line, no traceback, at once.

@pytest.mark.parametrize("argv", [
    ["execute", "{missing}"], ["execute", "{truncated}"], ["execute", "{folder}"], ["nbgrader", "{file}"],
    ["nbgrader", "{under_file}"], ["site", "--out", "{under_file}"], ["lock", "--mismatched", "{missing}"],
    ["check", "extra"],
])
def test_the_command_line_says_one_line_without_a_traceback(files, monkeypatch, argv):
    monkeypatch.setattr(subprocess, "run", RUN)
    start = time.perf_counter()
    done = run_cli(*[arg.format(**files) for arg in argv])
    assert time.perf_counter() - start < 5  # a Python start and an import: the refused work takes minutes
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
