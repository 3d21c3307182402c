"""``python -m course_utils bench``: run every lesson headless, cold cache then warm, and time it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from course_utils import env
from course_utils.lessons import LESSONS, NOTEBOOKS


def run_notebook(path: Path) -> None:
    """Execute one notebook in memory (the committed file is not touched); raise on a cell error."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()


def peak_memory_mb() -> float | None:
    """Peak resident memory of this process's finished children (the kernel), in MB; None on Windows."""
    try:
        import resource
    except ImportError:
        return None
    kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return kb / (1024 * 1024) if sys.platform == "darwin" else kb / 1024  # macOS reports bytes


def measure(path: Path, data: Path) -> dict:
    """Run one notebook in a fresh process with ``data`` as its cache; return seconds and peak MB."""
    code = ("import json, sys, time; from pathlib import Path; from course_utils import bench; t = time.perf_counter(); "
            "bench.run_notebook(Path(sys.argv[1])); "
            "print(json.dumps({'seconds': time.perf_counter() - t, 'peak_mb': bench.peak_memory_mb()}))")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          env={**os.environ, "COURSE_DATA_DIR": str(data)})
    if proc.returncode != 0:
        return {"seconds": None, "peak_mb": None, "error": proc.stderr.strip().splitlines()[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(json_path: Path | None = None) -> dict:
    """Every lesson, cold cache then warm; print a table and write it as JSON; return it."""
    device = env.describe_device(env.get_device())
    rows = []
    with tempfile.TemporaryDirectory(prefix="course-bench-") as data:
        for lesson in LESSONS:
            path = NOTEBOOKS / f"{lesson.slug}.ipynb"
            cold = measure(path, Path(data))
            warm = measure(path, Path(data))
            rows.append({"lesson": lesson.slug, "device": device, "cold": cold, "warm": warm})
            print(format_row(rows[-1]), flush=True)
    total = {k: sum(r[k]["seconds"] or 0 for r in rows) for k in ("cold", "warm")}
    result = {"date": date.today().isoformat(), "versions": env.versions(), "device": device,
              "cpu_count": os.cpu_count(), "lessons": rows, "total_seconds": total}
    print(f"{'whole course':<28} {total['cold'] / 60:6.1f} min cold   {total['warm'] / 60:6.1f} min warm")
    out = json_path or Path("bench.json")
    out.write_text(json.dumps(result, indent=1))
    print(f"written: {out}")
    return result


def format_row(row: dict) -> str:
    """One line of the table: lesson, cold and warm wall time, peak memory, device."""
    def cell(m: dict) -> str:
        if m.get("error"):
            return f"FAILED ({m['error']})"
        mem = f"{m['peak_mb']:.0f} MB" if m["peak_mb"] else "n/a"
        return f"{m['seconds']:6.0f} s {mem:>8}"
    return f"{row['lesson']:<28} cold {cell(row['cold'])}   warm {cell(row['warm'])}   {row['device']}"


