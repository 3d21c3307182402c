"""data's cache keeps its promises: a damaged entry is recomputed with one line, an entry from before checksums is
adopted, two processes writing one entry at once both get it right, and a failed write still says why."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from course_utils import assets
from course_utils.data import cached_array, cached_json

REPO = Path(__file__).resolve().parent.parent


def never():
    raise AssertionError("recomputed an intact entry")


def one_damage_line(err: str) -> bool:
    """True when stderr holds exactly one line, saying an entry was damaged and is recomputed, and no traceback."""
    return len(err.splitlines()) == 1 and "is damaged" in err and "recomputing it" in err


def flip_last_byte(path: Path) -> None:
    """Damage a file in place, keeping its size (a bad sector, a sync tool's half-merged copy)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("mmap", [False, True])
def test_an_entry_cut_short_is_recomputed_with_one_line(isolated_data, capsys, mmap):
    cached_array("lessonX", "a", "k", lambda: np.arange(1000.0), mmap=mmap)
    path = isolated_data / "lessonX" / "a-k.npy"
    path.write_bytes(path.read_bytes()[:3000])  # a copy or a sync cut short
    capsys.readouterr()
    again = cached_array("lessonX", "a", "k", lambda: np.arange(1000.0), mmap=mmap)
    assert np.array_equal(again, np.arange(1000.0))
    err = capsys.readouterr().err
    assert one_damage_line(err) and "a-k.npy" in err, err
    del again
    assert np.array_equal(cached_array("lessonX", "a", "k", never, mmap=mmap), np.arange(1000.0))  # saved whole
    assert capsys.readouterr().err == ""


def test_an_entry_damaged_in_place_is_recomputed_not_returned(isolated_data, capsys):
    cached_array("lessonX", "a", "k", lambda: np.arange(1000.0))
    cached_json("lessonX", "j", "k", lambda: {"n": 12})
    path = isolated_data / "lessonX" / "j-k.json"
    path.write_text(path.read_text().replace("12", "13"))  # still valid JSON, same size
    flip_last_byte(isolated_data / "lessonX" / "a-k.npy")
    capsys.readouterr()
    assert np.array_equal(cached_array("lessonX", "a", "k", lambda: np.arange(1000.0), mmap=True), np.arange(1000.0))
    assert one_damage_line(capsys.readouterr().err)
    assert cached_json("lessonX", "j", "k", lambda: {"n": 12}) == {"n": 12}
    assert one_damage_line(capsys.readouterr().err)
    assert cached_json("lessonX", "j", "k", never) == {"n": 12}
    assert capsys.readouterr().err == ""


def test_entries_from_before_checksums_are_adopted_not_recomputed(isolated_data, capsys):
    folder = isolated_data / "lessonX"
    folder.mkdir()
    np.save(folder / "a-k.npy", np.arange(1000.0))  # as the cache wrote them before it recorded checksums
    (folder / "j-k.json").write_text('{"n": 12}')
    assert np.array_equal(cached_array("lessonX", "a", "k", never, mmap=True), np.arange(1000.0))
    assert cached_json("lessonX", "j", "k", never) == {"n": 12}
    assert capsys.readouterr().err == ""
    flip_last_byte(folder / "a-k.npy")  # adopted: from now on damage is caught
    (folder / "j-k.json").write_text('{"n": 13}')
    assert np.array_equal(cached_array("lessonX", "a", "k", lambda: np.arange(1000.0)), np.arange(1000.0))
    assert one_damage_line(capsys.readouterr().err)
    assert cached_json("lessonX", "j", "k", lambda: {"n": 12}) == {"n": 12}
    assert one_damage_line(capsys.readouterr().err)


@pytest.mark.parametrize("mmap", [False, True])
def test_an_entry_from_before_checksums_that_does_not_load_is_recomputed(isolated_data, capsys, mmap):
    folder = isolated_data / "lessonX"
    folder.mkdir()
    np.save(folder / "a-k.npy", np.arange(1000.0))
    (folder / "a-k.npy").write_bytes((folder / "a-k.npy").read_bytes()[:3000])
    (folder / "j-k.json").write_text('{"n": 1')
    assert np.array_equal(cached_array("lessonX", "a", "k", lambda: np.arange(1000.0), mmap=mmap), np.arange(1000.0))
    assert one_damage_line(capsys.readouterr().err)
    assert cached_json("lessonX", "j", "k", lambda: {"n": 12}) == {"n": 12}
    assert one_damage_line(capsys.readouterr().err)
    assert np.array_equal(cached_array("lessonX", "a", "k", never, mmap=mmap), np.arange(1000.0))
    assert cached_json("lessonX", "j", "k", never) == {"n": 12}


def test_a_read_only_shared_copy_is_read_not_written(tmp_path, monkeypatch, capsys):
    shared = tmp_path / "shared-data"
    (shared / "lessonX").mkdir(parents=True)
    np.save(shared / "lessonX" / "a-k.npy", np.arange(4))  # from before checksums
    np.save(shared / "lessonX" / "b-k.npy", np.arange(1000.0))
    (shared / "lessonX" / "b-k.npy").write_bytes((shared / "lessonX" / "b-k.npy").read_bytes()[:3000])
    before = sorted(p.name for p in (shared / "lessonX").iterdir())
    monkeypatch.setenv("COURSE_DATA_DIR", str(shared))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for folder in (shared, shared / "lessonX"):  # as if mounted read-only (root ignores chmod)
        monkeypatch.setitem(assets._WRITABLE, folder.absolute(), False)
    assert cached_array("lessonX", "a", "k", never).tolist() == [0, 1, 2, 3]
    assert "is damaged" not in capsys.readouterr().err
    assert np.array_equal(cached_array("lessonX", "b", "k", lambda: np.arange(1000.0)), np.arange(1000.0))
    assert one_damage_line(capsys.readouterr().err)
    assert np.array_equal(cached_array("lessonX", "b", "k", never), np.arange(1000.0))  # from our own copy now
    assert (tmp_path / "home" / ".cache" / "transfer-course" / "lessonX" / "b-k.npy").is_file()
    assert sorted(p.name for p in (shared / "lessonX").iterdir()) == before


def test_a_write_that_fills_the_disk_says_so_and_leaves_nothing(isolated_data, monkeypatch, capsys):
    def half_then_full(file, array, **kwargs):
        Path(file).write_bytes(b"\x93NUMPY half an array")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", half_then_full)
    assert cached_array("lessonX", "a", "k", lambda: np.ones(3), mmap=True).tolist() == [1.0, 1.0, 1.0]
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("Could not cache ")
    assert "a-k.npy (No space left on device): the result is kept for this session only" in err
    assert "free some disk space or set COURSE_DATA_DIR to a writable folder" in err
    assert list((isolated_data / "lessonX").iterdir()) == []  # no half file, no temporary file, no checksum


WRITER = """
import hashlib, sys
import numpy as np
from course_utils.data import cached_array, cached_json
print("ready", flush=True)
sys.stdin.readline()  # all writers start together
big = cached_array("race", "big", "k", lambda: np.arange(4_000_000, dtype=np.float64), mmap=True)
meta = cached_json("race", "meta", "k", lambda: {"n": 4_000_000})
print(hashlib.sha256(np.ascontiguousarray(big)).hexdigest(), meta["n"], flush=True)
"""


def test_processes_writing_one_entry_at_once_all_get_it_right(tmp_path):
    expected = f"{hashlib.sha256(np.arange(4_000_000, dtype=np.float64)).hexdigest()} 4000000"
    for round_ in range(4):  # a fresh data folder each round: a learner with several lessons open at once
        data = tmp_path / f"round{round_}"
        writers = [subprocess.Popen([sys.executable, "-c", WRITER], cwd=REPO, text=True, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env={**os.environ, "COURSE_DATA_DIR": str(data)})
                   for _ in range(3)]
        for w in writers:
            assert w.stdout.readline().strip() == "ready"
        for w in writers:
            w.stdin.write("go\n")
            w.stdin.flush()
        for w in writers:
            out, err = w.communicate(timeout=120)
            assert w.returncode == 0 and err == "" and out.strip() == expected, (round_, out, err)
        assert sorted(p.name for p in (data / "race").iterdir()) == [
            "big-k.npy", "big-k.npy.sum", "meta-k.json", "meta-k.json.sum"]  # no temporary file left
