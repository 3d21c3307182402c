"""Teach, then import: the code a lesson writes out does what the package's version does."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from course_utils.models import load_mobilenet_v2
from course_utils.train import class_weights, discriminative_param_groups, feature_loader, fit, layer_groups

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def notebook_function(notebook: str, name: str) -> dict:
    """Run the definitions of the code cell of ``notebook`` that defines ``name`` (its imports, functions, classes
    and UPPER_CASE constants, not its training) and return the namespace."""
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    source = next("".join(c["source"]) for c in cells if c["cell_type"] == "code"
                  and (f"def {name}(" in "".join(c["source"]) or f"class {name}(" in "".join(c["source"])))
    keep = [node for node in ast.parse(source).body
            if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef))
            or (isinstance(node, ast.Assign) and all(n.id.isupper() for t in node.targets
                                                      for n in ast.walk(t) if isinstance(n, ast.Name)))]
    namespace = {"torch": torch, "nn": nn, "np": np}
    exec(compile(ast.Module(body=keep, type_ignores=[]), notebook, "exec"), namespace)
    return namespace


def tiny_run(seed: int = 0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    model = nn.Linear(6, 2)
    train = feature_loader(x[:60], y[:60], batch_size=16, train=True, seed=0)
    val = feature_loader(x[60:], y[60:], batch_size=16)
    return model, train, val, torch.optim.AdamW(model.parameters(), lr=1e-2)


def test_lesson03_loop_and_fit_train_the_same_weights():
    train_loop = notebook_function("03_replacing_the_head.ipynb", "train_loop")["train_loop"]
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0]))
    model, train, val, optimizer = tiny_run()
    taught = train_loop(model, train, val, optimizer, num_epochs=5, loss_fn=loss_fn)
    model_fit, train, val, optimizer = tiny_run()
    packaged = fit(model_fit, train, None, optimizer, num_epochs=5, loss_fn=loss_fn, progress=False)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(model.state_dict().values(),
                                                               model_fit.state_dict().values()))
    assert [h["train_loss"] for h in taught] == pytest.approx([h["train_loss"] for h in packaged], rel=1e-6)
    model_fit, train, val, optimizer = tiny_run()
    scored = fit(model_fit, train, val, optimizer, num_epochs=5, loss_fn=loss_fn, progress=False)
    assert [h["balanced_accuracy"] for h in taught] == pytest.approx([h["balanced_accuracy"] for h in scored])


def test_lesson03_class_weights_match_the_package():
    labels = np.array([0] * 7 + [1] * 3)
    counts = np.bincount(labels)
    written = torch.tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32)  # lesson 03's line
    source = json.loads((NOTEBOOKS / "03_replacing_the_head.ipynb").read_text())["cells"]
    assert any("counts.sum() / (len(counts) * counts)" in "".join(c["source"]) for c in source)
    assert torch.allclose(written, class_weights(labels))


def test_lesson04_layer_groups_match_the_package():
    taught = notebook_function("04_fine_tuning_images.ipynb", "param_groups")
    model = load_mobilenet_v2(num_classes=2)
    assert [list(g.parameters()) for g in taught["layer_groups"](model)] == [list(g.parameters()) for g in
                                                                             layer_groups(model)]
    mine = taught["param_groups"](model)
    packaged = discriminative_param_groups(layer_groups(model), lr=taught["LR"], span=taught["SPAN"])
    assert [g["lr"] for g in mine] == pytest.approx([g["lr"] for g in packaged])
    assert [[id(p) for p in g["params"]] for g in mine] == [[id(p) for p in g["params"]] for g in packaged]
    assert min(g["lr"] for g in mine) >= taught["LR"] / 100 * (1 - 1e-9)  # no group left untrained


def notebook_cell_definitions(notebook: str, marker: str, names: set[str], namespace: dict) -> dict:
    """Run the imports, functions and the assignments to ``names`` of the code cell holding ``marker``."""
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    source = next("".join(c["source"]) for c in cells if c["cell_type"] == "code" and marker in "".join(c["source"]))
    keep = [node for node in ast.parse(source).body
            if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef))
            or (isinstance(node, ast.Assign) and {t.id for t in node.targets if isinstance(t, ast.Name)} <= names)]
    exec(compile(ast.Module(body=keep, type_ignores=[]), notebook, "exec"), namespace)
    return namespace


def test_lesson05_training_arguments_match_make_trainer():
    from datasets import Dataset

    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    from course_utils.text import compute_metrics, load_tokenizer, make_trainer, new_classifier

    taught = notebook_cell_definitions("05_fine_tuning_language.ipynb", "args = TrainingArguments(",
                                       {"args", "collator"},
                                       {"np": np, "torch": torch, "device": torch.device("cpu"),
                                        "tokenizer": load_tokenizer(), "accuracy_score": accuracy_score,
                                        "balanced_accuracy_score": balanced_accuracy_score})
    tiny = Dataset.from_dict({"input_ids": [[101, 102]] * 4, "attention_mask": [[1, 1]] * 4, "label": [0, 1] * 2})
    packaged = make_trainer(new_classifier(seed=0), tiny, tiny, load_tokenizer(), seed=0, num_epochs=1, lr=1e-4,
                            eval_steps=72)
    assert taught["args"].to_dict() == packaged.args.to_dict()
    assert type(taught["collator"]) is type(packaged.data_collator)
    eval_pred = (np.array([[0.2, 0.8], [0.9, 0.1], [0.3, 0.7]]), np.array([1, 1, 0]))  # predicted 1, 0, 1
    assert taught["compute_metrics"](eval_pred) == compute_metrics(eval_pred) == {
        "accuracy": pytest.approx(1 / 3), "balanced_accuracy": pytest.approx(0.25)}


def test_lesson06_batchnorm_estimate_matches_the_package():
    from course_utils.features import estimate_batchnorm

    taught = notebook_function("06_when_transfer_fails.ipynb", "estimate_batchnorm")["estimate_batchnorm"]
    images = np.random.default_rng(0).integers(0, 255, (10, 40, 40), dtype=np.uint8)
    torch.manual_seed(0)
    mine = load_mobilenet_v2(num_classes=2)
    torch.manual_seed(0)
    packaged = load_mobilenet_v2(num_classes=2)
    taught(mine, images, 32, batch_size=4)
    estimate_batchnorm(packaged, images, 32, batch_size=4)
    assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), packaged.state_dict().values()))
    assert not mine.training and mine.features[0][1].momentum == packaged.features[0][1].momentum == 0.1


def test_lesson06b_mean_pooling_matches_the_cached_embeddings():
    """The frozen encoder + head of lesson 06b trains on ``text.embed``'s vectors: they must be what the
    notebook's model computes from the tokens."""
    from course_utils.text import embed, load_tokenizer

    taught = notebook_function("06b_how_little_to_train.ipynb", "MeanPoolClassifier")["MeanPoolClassifier"]
    model = taught(seed=0).eval()
    texts = ["A gem.", "Two hours I will never get back, and the popcorn was stale as well."]  # padding differs
    with torch.no_grad():
        from_tokens = model(**load_tokenizer()(texts, padding=True, return_tensors="pt")).logits
        from_vectors = model(pooled=torch.from_numpy(embed(texts))).logits
    torch.testing.assert_close(from_tokens, from_vectors, atol=1e-5, rtol=1e-5)


def test_lesson07_kinematics_match_the_package():
    from course_utils import sim

    taught = notebook_function("07_robot_reaching.ipynb", "inverse_kinematics")
    for xy in np.random.default_rng(0).uniform(-0.3, 0.3, size=(20, 2)):
        assert np.allclose(taught["inverse_kinematics"](xy), sim.inverse_kinematics(xy))
        q = sim.inverse_kinematics(xy)
        assert np.allclose(taught["forward_kinematics"](q), sim.forward_kinematics(q))


def test_lesson04_top_blocks_and_frozen_batchnorm_match_the_package():
    from course_utils.models import freeze_batchnorm, top_blocks

    taught_top = notebook_function("04_fine_tuning_images.ipynb", "top_blocks")["top_blocks"]
    taught_freeze = notebook_function("04_fine_tuning_images.ipynb", "freeze_batchnorm")["freeze_batchnorm"]
    model = load_mobilenet_v2(num_classes=2).eval()
    x = torch.randn(2, 160, 5, 5)  # what features.15 hands the top 3 blocks at 160 px
    with torch.no_grad():
        assert torch.equal(taught_top(model, 3)(x), top_blocks(model, 3)(x))
    assert [id(p) for p in taught_top(model, 3).parameters()] == [id(p) for p in top_blocks(model, 3).parameters()]
    images = torch.randn(2, 3, 64, 64)
    taught, packaged = taught_freeze(load_mobilenet_v2(num_classes=2)), freeze_batchnorm(load_mobilenet_v2(num_classes=2))
    with torch.no_grad():  # in train mode too, nothing is estimated from the batch (the body: the head has dropout)
        assert torch.allclose(taught.train().features(images), packaged.train().features(images), atol=1e-6)
        assert torch.allclose(taught.features(images), load_mobilenet_v2(num_classes=2).eval().features(images),
                              atol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in taught.modules())


def test_lesson03_preprocessing_matches_to_input():
    from course_utils.models import IMAGENET_MEAN, IMAGENET_STD
    from course_utils.vision import to_input

    taught = notebook_function("03_replacing_the_head.ipynb", "preprocess")
    assert (taught["IMAGENET_MEAN"], taught["IMAGENET_STD"]) == (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD))
    images = np.random.default_rng(0).integers(0, 256, (3, 50, 40), dtype=np.uint8)
    for size in (32, 50, 160):
        assert torch.allclose(taught["preprocess"](images, size), to_input(images, size), atol=1e-5)


def test_lesson02_naive_activation_maximisation_matches_the_package():
    from course_utils.features import activation_maximisation

    taught = notebook_function("02_what_networks_learn.ipynb", "naive_maximisation")["naive_maximisation"]
    model = load_mobilenet_v2().eval()
    mine = taught(model, "features.3", [0, 5], size=64, steps=4)
    assert mine.shape == (2, 64, 64, 3)
    assert np.array_equal(mine, activation_maximisation(model, "features.3", [0, 5], robust=False, size=64, steps=4))


def test_lesson04_grad_cam_matches_the_package():
    from course_utils.features import gradcam

    taught = notebook_function("04_fine_tuning_images.ipynb", "grad_cam")["grad_cam"]
    torch.manual_seed(0)
    model = load_mobilenet_v2(num_classes=2).eval()
    inputs = torch.rand(2, 3, 64, 64)
    written = taught(model, model.features[-1], inputs, target=1)
    assert written.shape == (2, 64, 64) and written.max() == pytest.approx(1.0)
    assert np.allclose(written, gradcam(model, model.features[-1], inputs, target=1), atol=1e-6)
