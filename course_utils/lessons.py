"""The lesson list, the generated navigation cells, and re-executing notebooks in place."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from course_utils.assets import REPO_ROOT, shown, writable
from course_utils.errors import NotWritableError, SettingError

# The one place that names the public repository: every Colab and Binder link is built from it.
REPO_SLUG = "transfer-learning-course/transfer-learning-course"
BRANCH = "main"
NOTEBOOKS = REPO_ROOT / "notebooks"


@dataclass(frozen=True)
class Lesson:
    """One notebook of the course."""

    slug: str
    title: str
    teaches: str
    cpu_minutes: float  # CI's cold run on the 2-core reference machine (2026-12-07, course order), rounded up to 0.5
    study_minutes: int  # our estimate for a learner: reading, running, the exercises and the questionnaire


LESSONS = [
    Lesson("00_start_here", "Start here", "what transfer learning is, the lesson map, a preflight check", 0.5, 15),
    Lesson("01_doctor_to_lawyer", "From doctor to lawyer: the analogy as an experiment",
           "transfer vs scratch at equal steps (150), data-efficiency curves over seeds", 2.0, 45),
    Lesson("02_what_networks_learn", "What networks learn",
           "filters, feature maps, activation maximisation, a linear probe at every depth", 2.0, 45),
    Lesson("03_replacing_the_head", "Replacing the head",
           "freezing, BatchNorm, a new head on cached features, evaluation, your own images", 1.5, 60),
    Lesson("04_fine_tuning_images", "Fine-tuning a pretrained CNN for factory inspection",
           "five strategies on 800 solar cells, cached activations, a 75/25 split as in the paper, Grad-CAM, calibration "
           "and a threshold for a stated recall, shipping", 2.5, 75),
    Lesson("05_fine_tuning_language", "Fine-tuning a transformer on movie reviews",
           "tokenisation, frozen embeddings vs fine-tuning with Trainer, few labels", 3.5, 60),
    Lesson("06_when_transfer_fails", "When transfer fails",
           "a random-weights control for the probe, domain shift from mono to poly cells, AdaBN, fine-tuning and LP-FT "
           "out of distribution, a few target labels", 2.5, 60),
    Lesson("06b_how_little_to_train", "How little to train: a frozen encoder, BitFit and LoRA",
           "parameter-efficient fine-tuning of MiniLM with peft (a frozen encoder, BitFit, LoRA at two ranks, full "
           "fine-tuning) under one schedule over 3 seeds, saving and merging an adapter, LoRA on a convolution, "
           "where pretraining's lead stops shrinking", 3.5, 45),
    Lesson("07_robot_reaching", "A robot arm that learns to see from a few labelled frames",
           "the capstone in MuJoCo: a scene, offscreen rendering, inverse kinematics and position control; the cube's "
           "position read by a CNN from scratch, frozen ImageNet features and a fine-tuned block, with a pooled head "
           "and a spatial softmax, against 25-1,600 labelled frames over 3 seeds; reaching success; new colours and "
           "dim light; controls (random weights, scratch with shifts or colour jitter) in a committed full grid", 3.0, 60),
]


def colab_url(slug: str, folder: str = "notebooks") -> str:
    """The 'Open in Colab' address of a notebook (``folder="student"`` for its student copy)."""
    return f"https://colab.research.google.com/github/{REPO_SLUG}/blob/{BRANCH}/{folder}/{slug}.ipynb"


def binder_url(slug: str, folder: str = "notebooks") -> str:
    """The 'Launch Binder' address that opens a notebook in JupyterLab (``folder="student"`` for its student copy)."""
    return f"https://mybinder.org/v2/gh/{REPO_SLUG}/{BRANCH}?urlpath=lab/tree/{folder}/{slug}.ipynb"


def nav_markdown(slug: str, folder: str = "notebooks") -> str:
    """The navigation line of a lesson: previous · contents · next, and badges that open the same copy."""
    slugs = [lesson.slug for lesson in LESSONS]
    i = slugs.index(slug)
    parts = [f"[← {slugs[i - 1]}]({slugs[i - 1]}.ipynb)" if i > 0 else "← (first lesson)",
             "[contents](00_start_here.ipynb#The-lessons)",
             f"[{slugs[i + 1]} →]({slugs[i + 1]}.ipynb)" if i + 1 < len(slugs) else "(last lesson) →"]
    badges = (f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(slug, folder)}) "
              f"[![Launch Binder](https://mybinder.org/badge_logo.svg)]({binder_url(slug, folder)})")
    return " · ".join(parts) + "  \n" + badges


def setup_code(slug: str) -> str:
    """The setup cell, the same in every lesson: install where the package is missing, then setup()."""
    return f"""# Setup, the same in every lesson. Where course_utils is missing (Colab, a notebook opened on its
# own), clone the course and install it, at the versions CI tested, with its offline assets, once.
import importlib.util, subprocess, sys
if importlib.util.find_spec("course_utils") is None:
    python = f'"{{sys.executable}}"'  # this kernel's own Python: the shell's `pip` may belong to another
    subprocess.run(f"git clone -q --depth 1 https://github.com/{REPO_SLUG} course-repo && "
                   f"{{python}} -m pip install -q -c course-repo/constraints-colab.txt -e course-repo && "
                   f"{{python}} -m course_utils install-assets", shell=True, check=True)
    sys.path.insert(0, "course-repo")
from course_utils import setup
device = setup(seed=0, lesson="{slug}")"""


def generated_cells(slug: str) -> dict[str, str]:
    """The source of each generated cell of a lesson, by its tag."""
    return {"nav": nav_markdown(slug), "setup": setup_code(slug)}


def update_navigation(path: Path) -> bool:
    """Rewrite the generated cells (tags 'nav' and 'setup') of a notebook; True when something changed."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    wanted = generated_cells(path.stem)
    changed = False
    for cell in nb.cells:
        for tag in set(cell.metadata.get("tags", [])) & wanted.keys():
            if cell.source != wanted[tag]:
                cell.source = wanted[tag]
                changed = True
    if changed:
        nbformat.write(nb, path)
    return changed


def lesson_map() -> str:
    """A markdown table of the lessons: what each teaches, a learner's study time and its time on a 2-core CPU."""
    rows = ["| lesson | what it teaches | study time | 2-core CPU |", "|---|---|---|---|"]
    rows += [f"| [{lesson.slug}]({lesson.slug}.ipynb) {lesson.title} | {lesson.teaches} | "
             f"about {lesson.study_minutes} min | {lesson.cpu_minutes:g} min |" for lesson in LESSONS]
    return "\n".join(rows)


def check_notebook(path: Path) -> None:
    """Stop with one line, before any work, unless ``path`` is a readable version-4 notebook file."""
    path = Path(path)
    if path.is_dir():
        raise SettingError(f"{shown(path)} is a folder, not a notebook: name an .ipynb file.")
    if not path.is_file():
        raise SettingError(f"No notebook at {shown(path)}: check the path.")
    restore = f"Fix: restore it (`git checkout -- {shown(path)}` for a lesson) or name another notebook."
    try:
        nb = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise SettingError(f"{shown(path)} is not a notebook: its JSON breaks at line {exc.lineno}, column "
                           f"{exc.colno} ({exc.msg}); is it truncated? {restore}") from None
    except UnicodeDecodeError:
        raise SettingError(f"{shown(path)} is not a notebook: it is not text. {restore}") from None
    except OSError as exc:
        raise SettingError(f"Cannot read the notebook {shown(path)}: {exc.strerror}.") from None
    if not (isinstance(nb, dict) and isinstance(nb.get("cells"), list) and nb.get("nbformat") == 4):
        raise SettingError(f"{shown(path)} is JSON but not a version-4 notebook (no 'cells' list). {restore}")


def check_output_folder(folder: Path, what: str, target: Path | None = None) -> None:
    """Stop with one line, before any work, unless ``target`` (default: ``folder``) can be written in ``folder``."""
    folder = Path(folder)
    target = Path(target or folder)
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        which = "it" if blocker == target else shown(blocker)
        raise SettingError(f"Cannot write {what} to {shown(target)}: {which} is a file, not a folder. Name a folder.")
    if not writable(folder):
        raise NotWritableError(f"Cannot write {what} to {shown(target)}: {shown(folder)} is read-only. Name a folder "
                               "you can write to.")


def check_output_file(path: Path, what: str) -> None:
    """Stop with one line, before any work, unless a file can be written at ``path``."""
    path = Path(path)
    if path.is_dir():
        raise SettingError(f"Cannot write {what} to {shown(path)}: it is a folder, not a file. Name a file.")
    check_output_folder(path.parent, what, path)


def check_executable(paths: list[Path]) -> None:
    """Stop with one line unless every path is a notebook that can be rewritten in place."""
    for path in paths:
        check_notebook(path)
        if not os.access(path, os.W_OK):
            raise NotWritableError(f"Cannot execute {shown(path)} in place: the file is read-only.")


def execute(paths: list[Path], timeout: int = 900) -> dict[str, float]:
    """Re-execute notebooks in place (refreshing their committed outputs); return seconds per notebook."""
    check_executable(paths)  # every one before the first runs: a typo found after an hour helps nobody
    seconds = {}
    for path in paths:
        update_navigation(path)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                        "--inplace", f"--ExecutePreprocessor.timeout={timeout}",
                        "--ExecutePreprocessor.kernel_name=python3", str(path)], check=True)
        seconds[path.name] = time.perf_counter() - start
        print(f"{path.name}: {seconds[path.name]:.0f} s")
    return seconds


STUDENT = REPO_ROOT / "student"


def student_copy(nb, slug: str):
    """The student version of an instructor notebook: solution cells become their blanks, cells tagged
    'instructor' (the questionnaire's answers) are left out, outputs cleared, and the badges open the student
    copy, not the solutions."""
    import copy

    nb = copy.deepcopy(nb)
    nb.cells = [cell for cell in nb.cells if "instructor" not in cell.metadata.get("tags", [])]
    for cell in nb.cells:
        if "nav" in cell.metadata.get("tags", []):
            cell.source = nav_markdown(slug, "student")
        if cell.cell_type != "code":
            continue
        if "solution" in cell.metadata.get("tags", []):
            if "blank" not in cell.metadata:
                raise SettingError(f"{slug}: a cell tagged 'solution' has no metadata 'blank' (the learner's "
                                   f"version of it): add one. The cell begins {cell.source[:60]!r}.")
            cell.source = cell.metadata["blank"]
            cell.metadata["tags"] = [t for t in cell.metadata["tags"] if t != "solution"] + ["exercise"]
            del cell.metadata["blank"]
        cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    return nb


def check_student_copies() -> None:
    """Stop with one line, before any work, unless every lesson notebook reads and student/ can be written."""
    for lesson in LESSONS:
        check_notebook(NOTEBOOKS / f"{lesson.slug}.ipynb")
    check_output_folder(STUDENT, "the student copies")


def write_student_copies() -> list[Path]:
    """Generate student/NN_slug.ipynb for every lesson; return the paths written."""
    import nbformat

    check_student_copies()
    copies = {STUDENT / f"{lesson.slug}.ipynb": student_copy(nbformat.read(NOTEBOOKS / f"{lesson.slug}.ipynb",
                                                                           as_version=4), lesson.slug)
              for lesson in LESSONS}  # all made before the first is written: none or all of them change
    for path, nb in copies.items():
        nbformat.write(nb, path)
    return list(copies)
