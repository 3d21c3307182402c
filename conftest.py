"""The Binder ceiling, checked on every lesson that nbval runs: no extra run, no extra cost.

mybinder.org kills a kernel whose memory passes 2 GB. While nbval runs a notebook, the kernel's
memory is sampled (``course_utils.bench.KernelMemory``); after its last cell the figures and the
notebook's wall time go to ``artifacts/kernel-peaks.json``, and the teardown of that last cell fails
when the kernel's private memory peaked above ``KERNEL_PEAK_LIMIT_MB``. The resident peak (shared
library pages included: about 400 MB of them come from torch's CUDA build alone) is reported beside it.
"""

import json
import time
from pathlib import Path

import pytest

KERNEL_PEAK_LIMIT_MB = 1536  # 1.5 GB: room for the Jupyter server under Binder's 2 GB
REPORT = Path(__file__).parent / "artifacts" / "kernel-peaks.json"
_watch: dict[str, tuple[float, object]] = {}


def _notebook(item):
    """The nbval notebook (file node) that ``item`` is a cell of, or None for an ordinary test."""
    parent = getattr(item, "parent", None)
    return parent if parent is not None and hasattr(parent, "kernel") and str(parent.path).endswith(".ipynb") else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    result = yield  # nbval starts the kernel when the first cell is set up
    nb = _notebook(item)
    if nb is not None and str(nb.path) not in _watch and nb.kernel is not None:
        from course_utils.bench import KernelMemory

        process = getattr(nb.kernel.km.provisioner, "process", None)
        if process is not None:
            _watch[str(nb.path)] = (time.perf_counter(), KernelMemory(process.pid))
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    nb = _notebook(item)
    last = nb is not None and (nextitem is None or _notebook(nextitem) is not nb)
    watched = _watch.pop(str(nb.path), None) if last else None
    if watched is not None:
        watched[1].stop()  # a last sample while the kernel is still alive
    result = yield  # nbval stops the kernel here
    if watched is not None:
        started, memory = watched
        name, figures = Path(nb.path).name, memory.result
        seconds = time.perf_counter() - started
        REPORT.parent.mkdir(exist_ok=True)
        report = json.loads(REPORT.read_text()) if REPORT.is_file() else {}
        report[name] = {"seconds": round(seconds), **{k: v and round(v) for k, v in figures.items()}}
        REPORT.write_text(json.dumps(report, indent=1))
        private, peak = figures["private_peak_mb"], figures["peak_mb"]
        print(f"\n{name}: {seconds:.0f} s, kernel peak {private or 0:.0f} MB private, {peak or 0:.0f} MB resident")
        if private is not None and private > KERNEL_PEAK_LIMIT_MB:
            raise AssertionError(f"{name}: the kernel's private memory peaked at {private:.0f} MB, over the "
                                 f"{KERNEL_PEAK_LIMIT_MB} MB ceiling for Binder (mybinder.org kills kernels at 2 GB).")
    return result
