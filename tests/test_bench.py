"""The instructors' benchmark measures a lesson (a benchmark, not a timed test: no time limit asserted)."""

import json

from course_utils import bench
from course_utils.lessons import NOTEBOOKS


def test_measure_reports_time_and_peak_memory(tmp_path):
    result = bench.measure(NOTEBOOKS / "00_start_here.ipynb", tmp_path)
    assert "error" not in result, result
    assert result["seconds"] > 0 and result["peak_mb"] > 50  # the kernel imports torch


def test_a_failing_lesson_is_reported_not_raised(tmp_path):
    broken = tmp_path / "broken.ipynb"
    broken.write_text(json.dumps({"cells": [{"cell_type": "code", "source": "1/0", "metadata": {}, "outputs": [],
                                             "execution_count": None}],
                                  "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    result = bench.measure(broken, tmp_path)
    assert result["seconds"] is None and "ZeroDivisionError" in result["error"]


def test_table_row_format():
    row = {"lesson": "05_x", "device": "cpu (2 threads)", "cold": {"seconds": 250.0, "peak_mb": 2900.0},
           "warm": {"seconds": 60.0, "peak_mb": 2500.0}}
    assert bench.format_row(row) == "05_x                         cold    250 s  2900 MB   warm     60 s  2500 MB   cpu (2 threads)"
