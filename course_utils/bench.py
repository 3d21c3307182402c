"""``python -m course_utils bench``: run every lesson headless, cold cache then warm, and time it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from datetime import date
from pathlib import Path

from course_utils import env
from course_utils.errors import SettingError
from course_utils.lessons import LESSONS, NOTEBOOKS, check_notebook, check_output_file


def run_notebook(path: Path) -> dict:
    """Execute one notebook in memory (the committed file is not touched); raise on a cell error.

    Returns the kernel's memory figures (``KernelMemory.result``).
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel():
        memory = KernelMemory(client.km.provisioner.process.pid)
        try:
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
        finally:
            memory.stop()
    return memory.result


def _status_mb(pid: int, *fields: str) -> dict[str, float]:
    """Fields of /proc/PID/status given in kB, in MB (empty where /proc is missing: macOS, Windows)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    values = dict(line.split(":", 1) for line in lines if ":" in line)
    return {f: int(values[f].split()[0]) / 1024 for f in fields if f in values}


class KernelMemory:
    """Samples a kernel's memory ten times a second until ``stop()``.

    Two figures: ``peak_mb``, the peak resident set (VmHWM: everything, shared libraries' pages
    included), and ``private_peak_mb``, the peak of its private memory (anonymous + shared-memory
    pages, RssAnon + RssShmem). The private figure is what a memory limit such as Binder's 2 GB
    cannot take back: a shared library's pages are read from disk and can be dropped and re-read.
    torch's CUDA build alone maps about 400 MB of library pages, a CPU build far fewer.
    """

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid, self.private_peak = pid, 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(interval,), daemon=True)
        self._thread.start()

    def _sample(self, interval: float) -> None:
        while not self._done.wait(interval):
            self._read()

    def _read(self) -> dict[str, float]:
        now = _status_mb(self.pid, "VmHWM", "RssAnon", "RssShmem")
        if now:
            self.private_peak = max(self.private_peak, now.get("RssAnon", 0) + now.get("RssShmem", 0))
            self.peak = now.get("VmHWM")
        return now

    def stop(self) -> None:
        """Take a last sample (while the kernel still runs) and stop sampling."""
        self._read()
        self._done.set()
        self._thread.join()

    @property
    def result(self) -> dict:
        return {"peak_mb": getattr(self, "peak", None), "private_peak_mb": self.private_peak or None}


def peak_memory_mb() -> float | None:
    """Peak resident memory of this process's finished children (the kernel), in MB; None on Windows."""
    try:
        import resource
    except ImportError:
        return None
    kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return kb / (1024 * 1024) if sys.platform == "darwin" else kb / 1024  # macOS reports bytes


def measure(path: Path, data: Path, bf16: bool | None = None) -> dict:
    """Run one notebook in a fresh process with ``data`` as its cache; return seconds and peak MB.

    ``bf16`` sets ``COURSE_BF16``: False turns bfloat16 off everywhere, True turns it on for an AMX CPU too;
    None leaves the defaults (a GPU that has it; not a CPU).
    """
    code = ("import json, sys, time; from pathlib import Path; from course_utils import bench; t = time.perf_counter(); "
            "memory = bench.run_notebook(Path(sys.argv[1])); "
            "print(json.dumps({'seconds': time.perf_counter() - t, 'peak_mb': memory['peak_mb'] or bench.peak_memory_mb(), "
            "'private_peak_mb': memory['private_peak_mb']}))")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          env={**os.environ, "COURSE_DATA_DIR": str(data),
                               **({} if bf16 is None else {"COURSE_BF16": "1" if bf16 else "0"})})
    if proc.returncode != 0:
        return {"seconds": None, "peak_mb": None, "error": proc.stderr.strip().splitlines()[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_inputs(out: Path, bf16: bool | None = None) -> None:
    """Stop with one line unless ``out`` can be written, every lesson notebook reads and COURSE_BF16 means something."""
    # Found after every lesson ran twice, any of these would cost an hour.
    check_output_file(out, "the benchmark table")
    for lesson in LESSONS:
        check_notebook(NOTEBOOKS / f"{lesson.slug}.ipynb")
    setting = os.environ.get("COURSE_BF16", "")
    if bf16 is None and setting not in ("", "0", "1"):
        raise SettingError(f"COURSE_BF16={setting!r} is not a setting: use 1 (bfloat16 on), 0 (off) or leave it unset "
                           "(on for a GPU that has it).")


def bench(json_path: Path | None = None, bf16: bool | None = None) -> dict:
    """Every lesson, cold cache then warm; print a table and write it as JSON; return it."""
    out = Path(json_path or "bench.json")
    check_inputs(out, bf16)
    if bf16 is not None:
        os.environ["COURSE_BF16"] = "1" if bf16 else "0"
    device = env.describe_device(env.get_device())
    device += ", bfloat16" if env.bf16_is_fast(env.get_device()) else ", no bfloat16"
    rows = []
    with tempfile.TemporaryDirectory(prefix="course-bench-") as data:
        for lesson in LESSONS:
            path = NOTEBOOKS / f"{lesson.slug}.ipynb"
            cold = measure(path, Path(data), bf16)
            warm = measure(path, Path(data), bf16)
            rows.append({"lesson": lesson.slug, "device": device, "cold": cold, "warm": warm})
            print(format_row(rows[-1]), flush=True)
    total = {k: sum(r[k]["seconds"] or 0 for r in rows) for k in ("cold", "warm")}
    result = {"date": date.today().isoformat(), "versions": env.versions(), "device": device,
              "cpu_count": os.cpu_count(), "lessons": rows, "total_seconds": total}
    print(f"{'whole course':<28} {total['cold'] / 60:6.1f} min cold   {total['warm'] / 60:6.1f} min warm")
    out.write_text(json.dumps(result, indent=1))
    print(f"written: {out}")
    return result


def format_row(row: dict) -> str:
    """One line of the table: lesson, cold and warm wall time, peak memory, device."""
    def cell(m: dict) -> str:
        if m.get("error"):
            return f"FAILED ({m['error']})"
        mem = f"{m['peak_mb']:.0f} MB" if m["peak_mb"] else "n/a"
        private = f"{m['private_peak_mb']:.0f} MB" if m.get("private_peak_mb") else "n/a"
        return f"{m['seconds']:6.0f} s {mem:>8} ({private:>7} private)"
    return f"{row['lesson']:<28} cold {cell(row['cold'])}   warm {cell(row['warm'])}   {row['device']}"


