"""data.cached: one helper keys a lesson's cached results by the code and the inputs they depend on."""

import numpy as np
from torch import nn

from course_utils.data import cached


def test_cached_reuses_and_recomputes_when_code_or_inputs_change(isolated_data):
    calls = []
    images = np.zeros((4, 8, 8), np.uint8)
    model = nn.Linear(3, 2)

    def count():
        calls.append(1)
        return {"n": len(calls)}

    assert cached("lessonX", "result", count, model, images, 5) == {"n": 1}
    assert cached("lessonX", "result", count, model, images, 5) == {"n": 1}  # read back, not recomputed
    assert (isolated_data / "lessonX").is_dir() and len(list((isolated_data / "lessonX").glob("result-*.json"))) == 1
    images[0, 0, 0] = 1  # changed pixels
    assert cached("lessonX", "result", count, model, images, 5)["n"] == 2
    nn.init.zeros_(model.weight)  # changed weights
    assert cached("lessonX", "result", count, model, images, 5)["n"] == 3
    assert cached("lessonX", "result", count, model, images, 6)["n"] == 4  # changed setting

    def count_differently():  # same name, different code
        calls.append(1)
        return {"n": len(calls), "new": True}

    assert cached("lessonX", "result", count_differently, model, images, 6)["n"] == 5


def test_cached_keeps_arrays_as_npy(isolated_data):
    def compute():
        return np.arange(6.0).reshape(2, 3)

    first = cached("lessonX", "array", compute, "v")
    again = cached("lessonX", "array", compute, "v")
    assert isinstance(again, np.ndarray) and np.array_equal(first, again)
    assert len(list((isolated_data / "lessonX").glob("array-*.npy"))) == 1


def test_keyed_path_changes_with_any_input(isolated_data):
    from course_utils.data import keyed_path

    index = np.arange(10)
    first = keyed_path("lessonX", "run", 0, index)
    assert first.parent == isolated_data / "lessonX" and first.name.startswith("run-") and first.suffix == ".pt"
    assert keyed_path("lessonX", "run", 0, np.arange(10)) == first  # equal inputs, equal place
    assert keyed_path("lessonX", "run", 1, index) != first
    assert keyed_path("lessonX", "run", 0, np.arange(11)) != first
