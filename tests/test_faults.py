"""Faults around the learner's work: junk in a shared copy, a read-only data folder, an interrupted shuffled run."""

import dataclasses
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from torch import nn

from course_utils import assets
from course_utils.data import cached_array, cached_json
from course_utils.train import feature_loader, fit


def read_only_folder(tmp_path: Path) -> Path:
    """A folder nobody can write to: chmod 555, or /sys where the tests run as root (root ignores chmod)."""
    folder = tmp_path / "shared-data"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        tempfile.NamedTemporaryFile(dir=folder).close()
    except OSError:
        return folder
    return Path("/sys")


def test_junk_files_do_not_make_a_folder_asset_corrupt(tmp_path):
    folder = tmp_path / "cells"
    (folder / "images").mkdir(parents=True)
    (folder / "labels.csv").write_text("images/a.png 0.0 mono\n")
    (folder / "images" / "a.png").write_bytes(b"png bytes")
    asset = dataclasses.replace(assets.ASSETS["elpv"], files=(), sha256="")
    asset = dataclasses.replace(asset, sha256=assets.digest(asset, folder))
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # macOS writes one into any folder a user opens
    (folder / "images" / "._a.png").write_bytes(b"\0\5\26\7")
    (folder / "images" / "Thumbs.db").write_bytes(b"\xd0\xcf")
    assert assets.digest(asset, folder) == asset.sha256
    assets._verify(asset, folder, "cache")  # no AssetError
    (folder / "images" / "b.png").write_bytes(b"a real extra file")
    with pytest.raises(assets.AssetError, match="is corrupt"):
        assets._verify(asset, folder, "cache")


def test_read_only_data_folder_falls_back_with_one_line(tmp_path, monkeypatch, capsys):
    shared = read_only_folder(tmp_path)
    monkeypatch.setenv("COURSE_DATA_DIR", str(shared))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    folder = assets.data_dir()
    assert folder == tmp_path / "home" / ".cache" / "transfer-course"
    err = capsys.readouterr().err
    assert "is read-only: new caches go to ~/.cache/transfer-course" in err and len(err.strip().splitlines()) == 1
    computed = cached_array("features", "pooled", "k1", lambda: np.arange(3))
    assert (np.load(folder / "features" / "pooled-k1.npy") == computed).all()  # saved, not lost
    proc = run_cli("check", env={"COURSE_DATA_DIR": str(shared), "HOME": str(tmp_path / "home")})
    assert proc.returncode == 1 and "All good" not in proc.stdout
    assert "is read-only: caches go to ~/.cache/transfer-course instead" in proc.stdout
    assert "Fix: set COURSE_DATA_DIR to a folder you can write to" in proc.stdout


def test_caches_in_a_read_only_shared_copy_are_still_used(tmp_path, monkeypatch):
    shared = tmp_path / "shared-data"
    (shared / "features").mkdir(parents=True)
    np.save(shared / "features" / "pooled-k2.npy", np.arange(4))
    (shared / "text").mkdir()
    (shared / "text" / "runs-k3.json").write_text("[1, 2]")
    monkeypatch.setenv("COURSE_DATA_DIR", str(shared))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setitem(assets._WRITABLE, shared.absolute(), False)  # as if mounted read-only

    def never():
        raise AssertionError("recomputed a result the shared copy holds")

    assert cached_array("features", "pooled", "k2", never).tolist() == [0, 1, 2, 3]
    assert cached_json("text", "runs", "k3", never) == [1, 2]


def test_a_failed_cache_write_keeps_the_result(monkeypatch, capsys):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", disk_full)
    result = cached_array("features", "pooled", "k4", lambda: np.ones(3), mmap=True)
    assert result.tolist() == [1.0, 1.0, 1.0]
    err = capsys.readouterr().err
    assert "Could not cache" in err and "No space left on device" in err and "kept for this session" in err


def dropout_run(seed_for_weights: int):
    """A small model with dropout and a shuffling loader."""
    torch.manual_seed(seed_for_weights)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 2))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype(np.float32)
    loader = feature_loader(x, (x[:, 0] > 0).astype(np.int64), batch_size=16, train=True, seed=0)
    return model, loader, torch.optim.AdamW(model.parameters(), lr=1e-2)


class InterruptAt(nn.CrossEntropyLoss):
    """A loss that raises KeyboardInterrupt (Kernel -> Interrupt) on its n-th call."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.calls = n, 0

    def forward(self, logits, target):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return super().forward(logits, target)


def test_resume_reproduces_a_shuffled_run_with_dropout(tmp_path):
    torch.manual_seed(0)
    model, loader, optimizer = dropout_run(0)
    fit(model, loader, None, optimizer, num_epochs=4, progress=False)
    whole = model.state_dict()

    torch.manual_seed(0)
    model, loader, optimizer = dropout_run(0)
    ckpt = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(model, loader, None, optimizer, num_epochs=4, checkpoint=ckpt, progress=False,
            loss_fn=InterruptAt(6 * 2 + 3))  # in the third epoch
    assert len(torch.load(ckpt, weights_only=True)["history"]) == 2
    torch.manual_seed(123)  # a fresh kernel: other random state, other initial weights, a new loader
    model, loader, optimizer = dropout_run(7)
    fit(model, loader, None, optimizer, num_epochs=4, checkpoint=ckpt, progress=False)
    assert all(torch.equal(whole[k], v) for k, v in model.state_dict().items())


def test_resumed_clock_continues_from_the_last_epoch(tmp_path):
    model, loader, optimizer = dropout_run(0)
    ckpt = tmp_path / "run.pt"
    fit(model, loader, None, optimizer, num_epochs=2, checkpoint=ckpt, progress=False)
    state = torch.load(ckpt, weights_only=True)
    state["history"][0]["seconds"], state["history"][1]["seconds"] = 100.0, 200.0  # cumulative, as fit writes them
    torch.save(state, ckpt)
    history = fit(model, loader, None, optimizer, num_epochs=3, checkpoint=ckpt, progress=False)
    assert 200.0 < history[-1]["seconds"] < 250.0  # not 300: the seconds so far are not summed twice


def test_a_checkpoint_that_cannot_be_written_stops_before_training(tmp_path):
    model, loader, optimizer = dropout_run(0)
    loss_fn = InterruptAt(10 ** 9)
    blocked = read_only_folder(tmp_path) / "runs" / "run.pt"
    with pytest.raises(PermissionError, match=r"Cannot write the checkpoint .*run.pt: its folder is read-only"):
        fit(model, loader, None, optimizer, num_epochs=2, checkpoint=blocked, loss_fn=loss_fn, progress=False)
    assert loss_fn.calls == 0 and not os.path.exists(blocked)


def test_a_bug_in_a_checker_is_not_blamed_on_the_answer():
    from course_utils.exercises import Question

    broken = Question("q9", lambda answer: {}["missing"], "hint", "solution")
    assert "bug in the course, not in your answer" in broken.feedback(3)
    strict = Question("q9", lambda answer: answer.shape and None, "hint", "solution")
    assert "checking your answer raised AttributeError" in strict.feedback(3)  # the learner's to fix


def test_mujoco_failing_to_import_keeps_its_message(monkeypatch):
    import builtins

    from course_utils import sim
    from course_utils.errors import CourseError

    real_import = builtins.__import__

    def failing(name, *args, **kwargs):
        if name == "mujoco":
            raise ImportError("numpy.core.multiarray failed to import")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "mujoco", raising=False)
    monkeypatch.setattr(builtins, "__import__", failing)
    with pytest.raises(sim.SimError, match="numpy.core.multiarray failed to import") as caught:
        sim.mujoco_module()
    assert "libegl1" not in str(caught.value)  # not blamed on OpenGL
    assert isinstance(caught.value, CourseError) and caught.value._render_traceback_()[0].startswith("SimError: ")


def test_every_course_error_is_one_line_in_jupyter():
    from course_utils import errors

    kinds = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.CourseError)]
    assert {k.__name__ for k in kinds} >= {"AssetError", "ImageInputError", "SimError", "SettingError",
                                         "NotWritableError"}
    for kind in kinds:
        assert kind("what happened; Fix: this")._render_traceback_() == [f"{kind.__name__}: what happened; Fix: this"]
