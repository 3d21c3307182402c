"""Lessons 01-03 checkers: the reference answer passes, a typical wrong answer gets the intended feedback."""

import numpy as np
import torch
from torch import nn

from course_utils.exercises import ____, lesson01, lesson02, lesson02_prediction, lesson03
from course_utils.models import freeze, load_mobilenet_v2


def test_lesson01_balanced_accuracy():
    q1, _, _ = lesson01()
    assert q1.feedback(0.75) == "q1: Correct!" and q1.feedback(0.749) == "q1: Correct!"  # reasoned or simulated
    assert "plain accuracy" in q1.feedback(0.656)
    assert "flags *everything*" in q1.feedback(0.5)
    assert "Not attempted yet" in q1.feedback(____)


def test_lesson01_head():
    _, q2, _ = lesson01()
    assert q2.feedback(nn.Linear(1280, 2)) == "q2: Correct!"
    assert "2,562" in q2.feedback(nn.Linear(1280, 1000))
    assert "whole network" in q2.feedback(load_mobilenet_v2())


def test_lesson01_split():
    _, _, q3 = lesson01()
    labels = np.array([0] * 60 + [1] * 60)
    test = np.arange(0, 120, 4)
    pool = np.setdiff1d(np.arange(120), test)
    good = np.r_[pool[labels[pool] == 0][:20], pool[labels[pool] == 1][:20]]
    assert q3.feedback((good, labels, test)) == "q3: Correct!"
    leaky = np.r_[np.arange(20), np.arange(60, 80)]  # drawn from all cells, test ones included
    assert "are test cells: draw from `pool`" in q3.feedback((leaky, labels, test))


def test_lesson02():
    from course_utils.exercises import probe_score
    from course_utils.vision import elpv_splits

    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(1900, int), np.ones(724, int)]  # the ELPV counts, so elpv_splits accepts them
    pooled = {s: rng.normal(size=(len(labels), 8)) + labels[:, None] * w for s, w in
              [("features.1", 0.1), ("features.16", 1.0), ("features", 0.8)]}
    stages = list(pooled)
    probe = np.array([[0.7, 0.7, 0.7], [0.8, 0.81, 0.8], [0.79, 0.8, 0.8]])
    q1 = lesson02_prediction()
    q2, q3 = lesson02(stages, probe, pooled, labels)
    assert "Not attempted yet" in q1.feedback(____)
    assert "at least 5 words" in q1.feedback("late")
    assert "model answer" in q1.feedback("A late block, because cracks are lines and dark patches.") and q1.done
    assert q2.feedback("b") == "q2: Correct!" and q2.feedback(" (B) ") == "q2: Correct!"
    assert "random-weights control" in q2.feedback("d")
    assert "Answer with one letter: a, b, c, d" in q2.feedback("e")
    split = elpv_splits(labels, n_train=100, seed=0)
    few = probe_score(pooled["features.16"], labels, split["train"], split["test"])
    assert q3.feedback(few) == "q3: Correct!"
    assert "the 800-cell score" in q3.feedback(probe[1].mean())
    assert "is not it" in q3.feedback(few + 0.01)


def test_lesson03():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    predicted = np.array([1, 1, 1, 0, 1, 1, 0, 0])  # recall 0.75, precision 0.6
    q1, q2, q3, q4 = lesson03(labels, predicted, labels, np.array([0.9, 0.8, 0.7, 0.2, 0.75, 0.3, 0.1, 0.05]))
    assert "Not attempted yet" in q1.feedback(load_mobilenet_v2())  # the cell's untouched model
    model = load_mobilenet_v2()
    freeze(model)
    model.classifier[-1] = nn.Linear(1280, 3)
    assert q1.feedback(model) == "q1: Correct!"
    unfrozen = load_mobilenet_v2()
    unfrozen.classifier[-1] = nn.Linear(1280, 3)
    assert "of the body are still trainable" in q1.feedback(unfrozen)
    frozen_last = load_mobilenet_v2()
    frozen_last.classifier[-1] = nn.Linear(1280, 3)
    freeze(frozen_last)
    assert "Replace it last" in q1.feedback(frozen_last)
    assert q2.feedback(0.75) == "q2: Correct!"
    assert "That is the precision" in q2.feedback(0.6)
    assert q3.feedback(False) == "q3: Correct!"
    assert "only the weights under `features`" in q3.feedback(True)
    # 4 defects at 0.9, 0.8, 0.7, 0.2: 90% recall needs all 4, so 0.2 is the highest threshold
    assert q4.feedback(0.2) == "q4: Correct!" and q4.feedback(0.15) == "q4: Correct!"  # same cells flagged
    assert "under 0.9: lower the threshold" in q4.feedback(0.5)
    assert "a higher threshold still catches 90%" in q4.feedback(0.05)
    assert torch.is_grad_enabled()


def test_lesson04():
    from course_utils.exercises import lesson04
    from course_utils.train import discriminative_param_groups, layer_groups

    q1, thought, q2 = lesson04()
    assert "Quarter turns keep the label" in thought.feedback("Flips and turns keep the label of a cell.")
    model = load_mobilenet_v2(num_classes=2)
    freeze(model.features[:-3])
    assert q1.feedback(model) == "q1: Correct!"
    assert "Not attempted yet" in q1.feedback(load_mobilenet_v2(num_classes=2))  # the cell's untouched model
    few_frozen = load_mobilenet_v2(num_classes=2)
    freeze(few_frozen.features[:-16])
    assert "Blocks 3-15 of features are still trainable" in q1.feedback(few_frozen)
    frozen = load_mobilenet_v2(num_classes=2)
    freeze(frozen)
    assert "The head is frozen too" in q1.feedback(frozen)
    ft_model = load_mobilenet_v2(num_classes=2)
    groups = discriminative_param_groups(layer_groups(ft_model), lr=1e-3, span=100)
    assert q2.feedback(groups) == "q3: Correct!"
    assert q2.feedback(torch.optim.AdamW(groups)) == "q3: Correct!"
    written = [ft_model.features[:7], ft_model.features[7:14], ft_model.features[14:], ft_model.classifier]
    by_hand = [{"params": g.parameters(), "lr": r} for g, r in zip(written, [1e-5, 5e-5, 2e-4, 1e-3])]
    assert q2.feedback(by_hand) == "q3: Correct!"  # generators of parameters are fine too
    same = [{"params": list(g.parameters()), "lr": 1e-3} for g in written]
    assert "plain fine-tuning" in q2.feedback(same)
    per_block = [{"params": list(b.parameters()), "lr": 1e-3 / 2.6 ** d}
                 for d, b in enumerate([ft_model.classifier] + list(ft_model.features)[::-1])]
    assert "under 1e-5 (a hundredth of the head's rate): it would hardly train" in q2.feedback(per_block)
    trainable_only = [{"params": [p for p in g.parameters() if p.requires_grad], "lr": r}
                      for g, r in zip(layer_groups(model), [1e-5, 5e-5, 2e-4, 1e-3])]  # q1's model: mostly frozen
    assert "start from a fresh, unfrozen model" in q2.feedback(trainable_only)
    upside_down = [{"params": list(g.parameters()), "lr": r} for g, r in zip(written, [1e-3, 2e-4, 5e-5, 1e-5])]
    assert "should be the head alone" in q2.feedback(upside_down)


def test_lesson06():
    from course_utils.exercises import lesson06, lesson06_prediction
    from course_utils.vision import to_input

    torch.manual_seed(0)
    model = load_mobilenet_v2(num_classes=2)
    cells = np.random.default_rng(0).integers(0, 255, (6, 48, 48), dtype=np.uint8)
    q1 = lesson06_prediction()
    q2, q3 = lesson06(model, cells, 32)
    assert "Not attempted yet" in q1.feedback(____)
    assert "model answer" in q1.feedback("Close at the first stage and far behind at the last one.")
    with torch.no_grad():
        out = model.features[0][0](to_input(cells, 32))
    assert q2.feedback(out.mean(dim=(0, 2, 3))) == "q2: Correct!"
    assert q2.feedback(out.mean(dim=(0, 2, 3)).numpy()) == "q2: Correct!"
    assert "one number per channel" in q2.feedback(out.mean())
    assert "one number per channel" in q2.feedback(out.mean(dim=0))
    assert "stored from ImageNet" in q2.feedback(model.features[0][1].running_mean)
    assert "Not the mean" in q2.feedback(out.mean(dim=(0, 2, 3)) + 0.5)
    assert "Not attempted yet" in q2.feedback(____)
    assert q3.feedback("b") == "q3: Correct!"
    assert "*less* often defective" in q3.feedback("a")
    assert "Answer with one letter" in q3.feedback("e")


def test_lesson06_prediction_shows_the_model_answer_not_the_hint():
    from course_utils.exercises import lesson06_prediction

    q1 = lesson06_prediction()
    assert "Only the measurement says by how much" in q1.feedback("Close at first, far behind at the last stage.")
    q1.hint()  # the hint is the other text
    assert "random 3x3 convolution" in q1.hint_text
