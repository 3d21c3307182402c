"""The course on a JupyterHub: a learner's own copy of the lessons, and nbgitpuller links (see hub/README.md).

On one server (hub/jupyterhub_config.py) the hub runs ``copy_course`` as each learner before each start
(it copies once). On a bigger hub, a learner who opens a ``pull_link`` gets the repository cloned into
``~/<repository name>/`` on their first visit (updated, without touching their changes, on later ones) and
JupyterLab opened at the lesson's student copy; the hub's single-user image needs ``nbgitpuller``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import quote, urlencode

from course_utils.assets import REPO_ROOT
from course_utils.errors import SettingError
from course_utils.lessons import BRANCH, LESSONS, REPO_SLUG, STUDENT

COURSE_FOLDER = "transfer-course"  # in a learner's home: the student copies of the lessons
DATA_FOLDER = "course-data"  # in a learner's home: their COURSE_DATA_DIR

REPO_URL = f"https://github.com/{REPO_SLUG}"
REPO_DIR = REPO_SLUG.split("/")[-1]  # nbgitpuller's default target folder: the repository's name


def pull_link(hub_url: str, slug: str) -> str:
    """The nbgitpuller link that pulls the course into a learner's home and opens lesson ``slug``'s student copy."""
    if not hub_url.startswith(("https://", "http://")):
        raise SettingError(f"The hub's address must start with https:// (or http://), not {hub_url!r}.")
    query = urlencode({"repo": REPO_URL, "branch": BRANCH, "urlpath": f"lab/tree/{REPO_DIR}/student/{slug}.ipynb"},
                      quote_via=quote, safe="")
    return f"{hub_url.rstrip('/')}/hub/user-redirect/git-pull?{query}"


def pull_links(hub_url: str) -> dict[str, str]:
    """The nbgitpuller link of every lesson's student copy, by lesson slug, in teaching order."""
    return {lesson.slug: pull_link(hub_url, lesson.slug) for lesson in LESSONS}


def copy_course(home: str | Path) -> bool:
    """Copy the student notebooks into ``home/transfer-course`` unless it exists (a learner's work stays); True if copied."""
    home = Path(home)
    if (home / COURSE_FOLDER).exists():
        return False
    shutil.copytree(STUDENT, home / COURSE_FOLDER, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (home / DATA_FOLDER).mkdir(exist_ok=True)
    shutil.copyfile(REPO_ROOT / "data" / "README.md", home / DATA_FOLDER / "README.md")  # what appears there; deletable
    return True
