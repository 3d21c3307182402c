"""The training loop: history, best weights, checkpoints, resume after an interruption, time budget."""

import numpy as np
import pytest
import torch
from torch import nn

from course_utils.models import freeze, load_mobilenet_v2, small_cnn, trainable_summary
from course_utils.train import (discriminative_param_groups, evaluate, feature_loader, fit, image_loader, layer_groups,
                                scores,
                                train_steps)


def data(seed=0, n=64):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def setup_fit(seed=0):
    torch.manual_seed(seed)
    model = nn.Linear(4, 2)
    x, y = data()
    return model, feature_loader(x, y, batch_size=16, train=True), feature_loader(*data(1), batch_size=32)


def test_fit_history_and_best_weights():
    model, train, val = setup_fit()
    history = fit(model, train, val, torch.optim.SGD(model.parameters(), lr=0.5), num_epochs=5, progress=False)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert {"train_loss", "accuracy", "balanced_accuracy", "f1", "seconds"} <= set(history[0])
    best = max(h["balanced_accuracy"] for h in history)
    assert evaluate(model, val)["balanced_accuracy"] == pytest.approx(best)  # best epoch's weights restored
    assert best > 0.9


class Interrupting:
    """A loader that raises KeyboardInterrupt (like Kernel > Interrupt) in its n-th pass."""

    def __init__(self, loader, at_pass):
        self.loader, self.at_pass, self.passes = loader, at_pass, 0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.passes += 1
        if self.passes == self.at_pass:
            raise KeyboardInterrupt
        return iter(self.loader)


def test_interrupted_run_resumes_to_the_same_result(tmp_path, capsys):
    model, train, val = setup_fit()
    reference = fit(model, train, val, torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9), num_epochs=4,
                    progress=False)
    model, train, val = setup_fit()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    ckpt = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):  # the interrupt goes on: "Run All" stops at this cell
        fit(model, Interrupting(train, at_pass=3), val, optimizer, num_epochs=4, checkpoint=ckpt, progress=False)
    assert torch.load(ckpt, weights_only=True)["history"][-1]["epoch"] == 2
    assert "Interrupted after epoch 2; run the cell again to resume" in capsys.readouterr().out
    model, _, _ = setup_fit(seed=99)  # a fresh kernel: new objects, different initial weights
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    resumed = fit(model, train, val, optimizer, num_epochs=4, checkpoint=ckpt, progress=False)
    assert "Resumed from run.pt after epoch 2." in capsys.readouterr().out
    assert [h["epoch"] for h in resumed] == [1, 2, 3, 4]
    assert [h["train_loss"] for h in resumed[2:]] == pytest.approx([h["train_loss"] for h in reference[2:]], rel=1e-5)


def test_checkpoint_loads_with_weights_only(tmp_path):
    model, train, val = setup_fit()
    fit(model, train, val, torch.optim.SGD(model.parameters(), lr=0.1), num_epochs=1, checkpoint=tmp_path / "c.pt",
        progress=False)
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    assert set(state) >= {"model", "optimizer", "history", "best_state"}


def test_a_damaged_checkpoint_is_retrained_with_one_line(tmp_path, capsys):
    model, train, val = setup_fit()
    fit(model, train, val, torch.optim.SGD(model.parameters(), lr=0.1), num_epochs=2, checkpoint=tmp_path / "c.pt",
        progress=False)
    (tmp_path / "c.pt").write_bytes((tmp_path / "c.pt").read_bytes()[:200])  # cut short, as a killed copy leaves it
    model, train, val = setup_fit()
    history = fit(model, train, val, torch.optim.SGD(model.parameters(), lr=0.1), num_epochs=3,
                  checkpoint=tmp_path / "c.pt", progress=False)
    err = capsys.readouterr().err
    assert [h["epoch"] for h in history] == [1, 2, 3] and "is damaged" in err and "Traceback" not in err
    model, train, val = setup_fit()
    fresh = fit(model, train, val, torch.optim.SGD(model.parameters(), lr=0.1), num_epochs=3, progress=False)
    assert [h["train_loss"] for h in history] == pytest.approx([h["train_loss"] for h in fresh])
    assert torch.load(tmp_path / "c.pt", weights_only=True)["history"][-1]["epoch"] == 3  # written whole again


def test_time_budget_stops_early():
    model, train, val = setup_fit()
    history = fit(model, train, val, torch.optim.SGD(model.parameters(), lr=0.1), num_epochs=50, max_seconds=0.0,
                  progress=False)
    assert len(history) == 1


def test_image_loader_and_augmentation():
    images = np.random.default_rng(0).integers(0, 255, (6, 32, 32), dtype=np.uint8)
    loader = image_loader(images, np.arange(6) % 2, batch_size=4, train=True)
    x, y = next(iter(loader))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and len(y) == 4


def test_train_steps_curve():
    torch.manual_seed(0)
    model = small_cnn(2)
    x = torch.rand(8, 1, 16, 16)
    y = torch.tensor([0, 1] * 4)
    curve = train_steps(model, x, y, steps=4, lr=1e-3, augment=True, eval_every=2, evaluate_fn=lambda m: 1.0)
    assert curve == [1.0, 1.0]


def test_discriminative_groups_span_the_layer_groups():
    model = load_mobilenet_v2(num_classes=2)
    groups = discriminative_param_groups(layer_groups(model), lr=1e-3, span=100)
    rates = [g["lr"] for g in groups]
    assert len(groups) == 4 and rates[-1] == 1e-3 and rates[0] == pytest.approx(1e-5)
    assert all(a < b for a, b in zip(rates, rates[1:]))  # rising towards the head
    assert min(rates) >= 1e-3 / 100 * (1 - 1e-9)  # no trainable group below a hundredth of the head's rate
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in model.parameters())
    freeze(model.features[:10])
    partly = discriminative_param_groups(layer_groups(model), lr=1e-3)
    assert len(partly) == 3  # the all-frozen first group is left out
    assert sum(p.numel() for g in partly for p in g["params"]) == sum(
        p.numel() for p in model.parameters() if p.requires_grad)


def test_trainable_summary(capsys):
    model = load_mobilenet_v2(num_classes=2)
    freeze(model.features)
    model.features.eval()
    table = trainable_summary(model)
    assert "trainable parameters: 2,562 of 2,226,434" in capsys.readouterr().out
    assert table.loc["features.0", "trainable"] == "no" and table.loc["features.0", "batchnorm"] == "eval"
    assert table.loc["classifier.1", "trainable"] == "yes" and table.loc["classifier.1", "parameters"] == 2562


def test_scores():
    s = scores(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]))
    assert s["accuracy"] == 0.75 and s["balanced_accuracy"] == 0.5 and s["f1"] == 0.0


def test_fit_without_validation_keeps_the_last_epoch():
    model, train, _ = setup_fit()
    history = fit(model, train, None, torch.optim.SGD(model.parameters(), lr=0.5), num_epochs=3, progress=False)
    assert len(history) == 3
    assert "balanced_accuracy" not in history[0]  # no validation, no made-up score
    last = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, train, None, torch.optim.SGD(model.parameters(), lr=0.0), num_epochs=1, progress=False)
    assert all(torch.equal(last[k], v) for k, v in model.state_dict().items())


def test_fit_with_mixed_precision_learns():
    model, train, val = setup_fit()
    fit(model, train, val, torch.optim.SGD(model.parameters(), lr=0.5), num_epochs=5, progress=False, amp=True)
    assert evaluate(model, val)["balanced_accuracy"] > 0.9
    assert model.weight.dtype == torch.float32  # autocast leaves the weights in float32


def test_random_dihedral_gives_one_of_the_eight_views():
    from course_utils.train import RandomDihedral
    from course_utils.vision import DIHEDRAL, dihedral

    image = torch.arange(16.0).view(1, 4, 4)
    views = [dihedral(image, turns, flip) for turns, flip in DIHEDRAL]
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8  # all different
    torch.manual_seed(0)
    seen = {tuple(RandomDihedral()(image).flatten().tolist()) for _ in range(200)}
    assert seen == {tuple(v.flatten().tolist()) for v in views}
