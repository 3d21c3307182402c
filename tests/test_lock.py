"""Installs that do not drift: every install reads the versions CI tested (constraints.txt, written by `make lock`)."""

import re
import tomllib
from importlib.metadata import version

from course_utils.authoring.lock import COLAB_LOCK, LOCK, TORCH_STACK, normalise, pins
from course_utils.lessons import REPO_ROOT


def direct_dependencies() -> list[str]:
    """What pyproject.toml asks for: the dependencies and the extras `make install` installs."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + sum((project["optional-dependencies"][extra] for extra in ("test", "classroom", "reproduce")), [])
    return [normalise(re.split(r"[<>=!~; \[]", requirement, maxsplit=1)[0]) for requirement in wanted]


def test_the_lock_pins_every_direct_dependency_to_the_version_installed_here():
    locked = pins(LOCK)
    missing = [name for name in direct_dependencies() if name not in locked]
    assert not missing, f"not in constraints.txt: {missing}; run `make lock` after `make test` passes"
    drifted = {name: (locked[name], version(name)) for name in direct_dependencies() if version(name) != locked[name]}
    assert not drifted, f"installed versions differ from constraints.txt (locked, installed): {drifted}"


def test_colab_lock_is_the_lock_without_the_torch_stack():
    full, colab = pins(LOCK), pins(COLAB_LOCK)
    torch_stack = {name for name, v in full.items() if TORCH_STACK.match(f"{name}=={v}")}
    assert {"torch", "torchvision"} <= torch_stack
    assert colab == {name: v for name, v in full.items() if name not in torch_stack}


def test_every_install_path_reads_the_lock():
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert 'pip install --quiet -c constraints.txt -e ".[test,classroom,reproduce]"' in makefile  # make lab, make test
    assert "$(STAMP): pyproject.toml course_utils/assets.py constraints.txt" in makefile  # a new lock reinstalls
    assert "course_utils lock --mismatched constraints-colab.txt" in (REPO_ROOT / "postBuild").read_text()  # Binder


def test_binder_moves_only_what_is_installed_at_another_version(tmp_path):
    from course_utils.authoring.lock import mismatched

    lock = tmp_path / "lock.txt"
    lock.write_text(f"# a lock\nnumpy==0.0.1\nnot-a-real-distribution==1.0\ntorch=={version('torch')}\n")
    assert mismatched(lock) == ["numpy==0.0.1"]  # installed at another version; absent and matching ones stay out
