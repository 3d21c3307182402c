"""Teach, then import: the code a lesson writes out does what the package's version does."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from course_utils.train import class_weights, feature_loader, fit

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def notebook_function(notebook: str, name: str) -> dict:
    """Run the code cell of ``notebook`` that defines ``name`` (its definitions only) and return its namespace."""
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    source = next("".join(c["source"]) for c in cells if c["cell_type"] == "code" and f"def {name}(" in "".join(c["source"]))
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"def {name}("))
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace()), len(lines))
    imports = "\n".join(line for line in lines[:start] if line.startswith(("import ", "from ")))
    namespace = {"torch": torch, "nn": nn}
    exec(imports + "\n" + "\n".join(lines[start:end]), namespace)
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
