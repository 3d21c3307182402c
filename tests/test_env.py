"""setup(): reproducible numbers, and importing course_utils changes nothing."""

import subprocess
import sys

import numpy as np
import torch

from course_utils import get_device, setup


def some_numbers():
    """A little of every random source a lesson uses, including a training step."""
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(torch.randn(8, 4)).pow(2).mean()
    loss.backward()
    opt.step()
    return np.random.rand(3).tolist(), torch.rand(3).tolist(), model.weight.detach().flatten().tolist()


def test_setup_makes_runs_repeat(capsys):
    setup(seed=0)
    first = some_numbers()
    setup(seed=0)
    assert some_numbers() == first
    setup(seed=1)
    assert some_numbers() != first
    out = capsys.readouterr().out
    assert "torch" in out and f"device: {get_device().type}" in out and "seed 1" in out
    assert torch.are_deterministic_algorithms_enabled()


def test_get_device_here_is_cpu():
    assert get_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_import_changes_nothing():
    code = (
        "import matplotlib, torch, random\n"
        "before = dict(matplotlib.rcParams); state = random.getstate(); seed = torch.initial_seed()\n"
        "import course_utils, course_utils.models, course_utils.assets\n"
        "assert dict(matplotlib.rcParams) == before, 'rcParams changed'\n"
        "assert random.getstate() == state and torch.initial_seed() == seed, 'seeds changed'\n"
        "assert not torch.are_deterministic_algorithms_enabled()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_setup_keeps_figures_small():
    import matplotlib

    setup(seed=0, quiet=True)
    w, h = matplotlib.rcParams["figure.figsize"]
    assert w * matplotlib.rcParams["figure.dpi"] <= 600 and h <= w



PROBE = """
import sys, torch
from pathlib import Path
def anon():
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("RssAnon"))
    return int(line.split()[1]) / 1024
t = torch.ones(20 * 2**20 // 4); del t  # glibc's default then keeps blocks up to 20 MB for reuse
before = anon()
keep, blocks = [], []
for i in range(20):  # 60 MB in blocks of 2-4 MB, with small tensors between them
    blocks.append(torch.ones((2 + i % 3) * 2**20 // 4)); keep.append(torch.ones(64))
del blocks
if sys.argv[1] == "1":
    from course_utils.env import release_freed_memory
    release_freed_memory()
print(anon() - before)
"""


def test_release_freed_memory_gives_freed_blocks_back():
    """release_freed_memory() hands freed blocks back to the system (glibc keeps them by default)."""
    import pytest

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's malloc is Linux's")
    kept = [float(subprocess.run([sys.executable, "-c", PROBE, flag], capture_output=True, text=True,
                                 check=True).stdout) for flag in ("0", "1")]
    assert kept[0] > 5, f"control: glibc's default should keep some of the freed 60 MB, kept {kept[0]:.0f} MB"
    assert kept[1] < 2, f"after release_freed_memory, {kept[1]:.0f} MB of freed blocks were kept"


def test_memory_peak_sees_a_temporary_allocation():
    import time

    import numpy as np

    from course_utils.env import memory_peak

    with memory_peak() as memory:
        block = np.ones(200 * 2**20 // 8)  # 200 MB, touched
        time.sleep(0.05)
        del block
    assert 150 < memory["mb"] < 400


def test_course_estimate_is_the_lesson_maps_total():
    """On the reference machine the preflight's estimate is the sum of the lesson map's 2-core CPU times."""
    from course_utils import env
    from course_utils.lessons import LESSONS

    total = sum(lesson.cpu_minutes for lesson in LESSONS)
    assert abs(env.estimate_minutes(env.REFERENCE_SPEED_S) - total) < 1e-9
    assert abs(env.estimate_minutes(2 * env.REFERENCE_SPEED_S) - 2 * total) < 1e-9


def test_a_notebook_hands_freed_memory_back_after_every_cell():
    from IPython.core.interactiveshell import InteractiveShell

    from course_utils import env

    shell = InteractiveShell.instance()
    try:
        env.trim_after_each_cell()
        env.trim_after_each_cell()  # a second setup() in the same kernel registers nothing more
        hooks = [c for c in shell.events.callbacks["post_run_cell"] if c is env._release_after_cell]
        assert len(hooks) == 1
        shell.run_cell("x = 1")  # the hook runs after a cell without error
    finally:
        InteractiveShell.clear_instance()
