"""The instructors' benchmark measures a lesson (a benchmark, not a timed test: no time limit asserted)."""

import json

from course_utils import bench
from course_utils.lessons import NOTEBOOKS


def test_measure_reports_time_and_peak_memory(tmp_path):
    result = bench.measure(NOTEBOOKS / "00_start_here.ipynb", tmp_path)
    assert "error" not in result, result
    assert result["seconds"] > 0 and result["peak_mb"] > 50  # the kernel imports torch
    assert 50 < result["private_peak_mb"] < result["peak_mb"]  # the libraries' pages are not private


def test_a_failing_lesson_is_reported_not_raised(tmp_path):
    broken = tmp_path / "broken.ipynb"
    broken.write_text(json.dumps({"cells": [{"cell_type": "code", "source": "1/0", "metadata": {}, "outputs": [],
                                             "execution_count": None}],
                                  "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    result = bench.measure(broken, tmp_path)
    assert result["seconds"] is None and "ZeroDivisionError" in result["error"]


def test_table_row_format():
    row = {"lesson": "05_x", "device": "cpu (2 threads)",
           "cold": {"seconds": 250.0, "peak_mb": 2900.0, "private_peak_mb": 1400.0},
           "warm": {"seconds": 60.0, "peak_mb": 2500.0, "private_peak_mb": None}}
    assert bench.format_row(row) == ("05_x                         cold    250 s  2900 MB (1400 MB private)   "
                                     "warm     60 s  2500 MB (    n/a private)   cpu (2 threads)")


def test_no_bf16_switch_turns_bfloat16_off(monkeypatch):
    import torch

    from course_utils import env

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (8, 0))  # a GPU with bfloat16 units
    monkeypatch.setenv("COURSE_BF16", "1")
    assert env.bf16_is_fast(torch.device("cuda"))
    monkeypatch.setenv("COURSE_BF16", "0")
    assert not env.bf16_is_fast(torch.device("cuda"))
    assert not env.bf16_is_fast(torch.device("cpu"))
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    monkeypatch.delenv("COURSE_BF16")
    assert not env.bf16_is_fast(torch.device("cpu"))  # an AMX CPU: float32 unless asked, for Binder's memory
    assert env.bf16_is_fast(torch.device("cuda"))
    monkeypatch.setenv("COURSE_BF16", "1")
    assert env.bf16_is_fast(torch.device("cpu"))


def test_kernel_memory_sees_a_private_allocation():
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(300 * 2**20); time.sleep(3)"])
    try:
        memory = bench.KernelMemory(child.pid, interval=0.05)
        time.sleep(1.5)
        memory.stop()
    finally:
        child.kill()
    assert memory.result["private_peak_mb"] > 300 and memory.result["peak_mb"] > 300
