"""JupyterHub for one class on one server: every learner gets a JupyterLab of their own with the course.

- Learners are the server's system users (one account each); the hub starts each one's JupyterLab as
  that user (LocalProcessSpawner) from the environment the hub runs in, the course's own.
- On a learner's first start, the student copies of the lessons are copied to ``~/transfer-course/``
  (later starts keep the learner's work); Lab opens there, at lesson 00.
- ``COURSE_ASSETS_DIR`` points every learner at one shared read-only copy of the assets, fetched once:
  ``python -m course_utils fetch --to /srv/transfer-course/assets``.
- ``COURSE_DATA_DIR`` is ``~/course-data``: each learner's caches are their own.

Run it as root (it starts servers as other users), from a folder for its state (its database, cookie
secret and the proxy's pid file are written to the current folder), e.g.::

    cd /srv/jupyterhub && /opt/transfer-course/.venv/bin/jupyterhub -f /opt/transfer-course/hub/jupyterhub_config.py

Settings read from the environment (all optional):

- ``COURSE_ASSETS_DIR``: the shared copy of the assets (default ``/srv/transfer-course/assets``).
- ``COURSE_HUB_CLASS_LIST``: a text file of the usernames allowed in, one a line (default
  ``hub/class-list.txt``); ``COURSE_HUB_ADMINS``: comma-separated usernames of the instructors.
- ``COURSE_HUB_THREADS``: CPU threads per learner's kernel (default 2).
- ``COURSE_HUB_AUTHENTICATOR`` / ``COURSE_HUB_SPAWNER``: default ``pam`` / ``localprocess``. The test
  (``tests/test_hub.py``) sets ``dummy`` / ``simple``: any password, no system users, every server
  running as the hub's own user. Never use those two for a class.

JupyterHub listens on port 8000 of every interface with plain HTTP by default: put it behind HTTPS
(``c.JupyterHub.ssl_cert`` / ``ssl_key``, or a reverse proxy) before learners type passwords into it.
"""

import asyncio
import os
import pwd
import shutil
import sys
from pathlib import Path

from jupyterhub.spawner import Spawner

from course_utils.authoring.hub import COURSE_FOLDER, DATA_FOLDER  # the hub runs in the course's environment

c = get_config()  # noqa: F821  (JupyterHub defines get_config when it loads this file)

HUB = Path(__file__).resolve().parent
REPO = HUB.parent
ASSETS_DIR = os.environ.get("COURSE_ASSETS_DIR", "/srv/transfer-course/assets")
CLASS_LIST = Path(os.environ.get("COURSE_HUB_CLASS_LIST", HUB / "class-list.txt"))
SPAWNER = os.environ.get("COURSE_HUB_SPAWNER", "localprocess")


def user_home(spawner: Spawner) -> Path:
    """The learner's home: the system account's, or the test spawner's made-up one."""
    home = getattr(spawner, "home_dir", "")  # only SimpleLocalProcessSpawner has one
    return Path(home or pwd.getpwnam(spawner.user.name).pw_dir)


def course_data_dir(spawner: Spawner) -> str:
    """The learner's COURSE_DATA_DIR: a folder in their home."""
    return str(user_home(spawner) / DATA_FOLDER)


async def copy_course(spawner: Spawner) -> None:
    """Before a learner's start, copy the student notebooks into their home if missing, running as the learner."""
    # As the learner, not as root: a root copy into a folder the learner controls could be redirected
    # by a symlink into the system's files.
    account = pwd.getpwnam(spawner.user.name) if os.geteuid() == 0 and SPAWNER != "simple" else None
    as_learner = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []} if account else {}
    home = user_home(spawner)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from course_utils.authoring.hub import copy_course; copy_course(sys.argv[1])",
        str(home), cwd="/", env={"PATH": os.environ.get("PATH", ""), "HOME": str(home)}, **as_learner)
    if await proc.wait():
        raise RuntimeError(f"Copying the course into {home} failed (exit code {proc.returncode}).")


def proxy_command() -> list[str]:
    """configurable-http-proxy from PATH, else the one `make hub` installs into hub/node_modules."""
    local = HUB / "node_modules" / ".bin" / "configurable-http-proxy"
    if shutil.which("configurable-http-proxy") is None and local.exists():
        return [str(local)]
    return ["configurable-http-proxy"]


# Who may log in. PAM checks the server's own accounts and passwords: the simplest fit for system users
# on one server (create them with `adduser`, one per learner). Other choices: "shared-password" (built in:
# one password for the whole class, with which anyone can log in as any learner), or GitHub/Google logins
# with the oauthenticator package (e.g. LocalGitHubOAuthenticator, with create_system_users = True).
c.JupyterHub.authenticator_class = os.environ.get("COURSE_HUB_AUTHENTICATOR", "pam")
if CLASS_LIST.is_file():
    c.Authenticator.allowed_users = {name for line in CLASS_LIST.read_text().splitlines()
                                     if (name := line.strip()) and not name.startswith("#")}
c.Authenticator.admin_users = {name.strip() for name in os.environ.get("COURSE_HUB_ADMINS", "").split(",")
                               if name.strip()}

# How each learner's JupyterLab starts: as that system user, from this environment (where the course's
# package and its assets' packages are installed), so no one needs `pip install`.
c.JupyterHub.spawner_class = SPAWNER
c.Spawner.cmd = [str(Path(sys.executable).with_name("jupyterhub-singleuser"))]
c.Spawner.default_url = f"/lab/tree/{COURSE_FOLDER}/00_start_here.ipynb"
c.Spawner.pre_spawn_hook = copy_course
c.Spawner.environment = {
    "COURSE_ASSETS_DIR": ASSETS_DIR,
    "COURSE_DATA_DIR": course_data_dir,
    # Torch takes every core by default, and learners doing so at once slow each other down: on the 2-core
    # reference machine with one core busy elsewhere, a training step on two threads was 1.8x slower than on one.
    "OMP_NUM_THREADS": os.environ.get("COURSE_HUB_THREADS", "2"),
}
c.Spawner.env_keep.extend(["COURSE_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])  # set on the hub: no downloads
# Give a busy server time to start Lab.
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 60
if SPAWNER == "simple" and os.geteuid() == 0:
    c.Spawner.args = ["--allow-root"]  # the test spawner runs servers as the hub's user: root in a container
# LocalProcessSpawner does not enforce memory limits. Each active learner's kernel peaks at about 1.5 GB of
# private memory (the README's benchmark), plus about 0.16 GB resident for their server: size the server for the
# learners working at once, or use systemdspawner, which enforces mem_limit per learner.

c.ConfigurableHTTPProxy.command = proxy_command()
