"""The exact versions CI tested, written from the environment it tested them in (``make lock``).

``constraints.txt`` pins every installed distribution; ``make install`` (hence ``make lab`` and ``make test``) installs
through it. ``constraints-colab.txt`` is the same without the torch stack: Colab's own torch build matches its GPU
driver, and replacing it would download gigabytes and may lose the GPU.
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

from course_utils.assets import REPO_ROOT

LOCK, COLAB_LOCK = REPO_ROOT / "constraints.txt", REPO_ROOT / "constraints-colab.txt"
TORCH_STACK = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-[\w-]+|cuda-[\w-]+)==", re.IGNORECASE)


def frozen() -> list[str]:
    """``name==version`` for every distribution installed here, the course package itself left out."""
    out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                         text=True, check=True).stdout
    return sorted((line for line in out.splitlines() if "==" in line and not line.startswith(("#", "-"))),
                  key=str.lower)


def installed() -> dict[str, str]:
    """{normalised name: version} of every distribution installed here (as ``frozen``)."""
    return {normalise(name): version for name, version in (line.split("==") for line in frozen())}


def pins(path: Path) -> dict[str, str]:
    """The lock file at ``path`` as {normalised name: version}."""
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return {normalise(name): version for name, version in (line.split("==") for line in lines if "==" in line)}


def normalise(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def write_lock() -> list[Path]:
    """Write both lock files from this environment; return their paths."""
    lines = frozen()
    where = f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, {date.today()}"
    header = ("# Written by `make lock` ({where}) from the environment `make test` passed in.\n"
              "# {what} Try the newest versions with `make try-latest`.\n")
    LOCK.write_text(header.format(where=where, what="Every install reads it (`pip install -c constraints.txt`).")
                    + "\n".join(lines) + "\n")
    COLAB_LOCK.write_text(header.format(where=where, what="Colab's setup cell reads it: constraints.txt less the "
                                        "torch stack (Colab's build matches its GPU driver).")
                          + "\n".join(line for line in lines if not TORCH_STACK.match(line)) + "\n")
    return [LOCK, COLAB_LOCK]


def diff_lock() -> list[str]:
    """Lines saying which installed versions differ from constraints.txt (``make try-latest``); empty when none."""
    locked = pins(LOCK)
    return [f"{name}: {locked.get(name, 'not locked')} -> {version}" for name, version in sorted(installed().items())
            if locked.get(name) != version]


def mismatched(path: Path) -> list[str]:
    """``name==version`` from the lock at ``path`` for each distribution installed here at another version (Binder's
    postBuild moves what conda-forge resolved differently to the locked version; what is not installed stays out)."""
    locked, here = pins(path), installed()
    return [f"{name}=={locked[name]}" for name in sorted(here) if name in locked and here[name] != locked[name]]
