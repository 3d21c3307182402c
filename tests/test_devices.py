"""Device discipline without a GPU: a helper sends inputs to the model's device and returns CPU numpy;
it never moves a model it was given.

The course's device lookup is made to answer "meta" (a device with no data). A helper that asked it
where to put the model, and moved the model there, leaves the model's weights on "meta": the test sees
it. A helper that returned a tensor where numpy is promised, or numpy from a non-CPU tensor, fails too.
"""

import sys

import numpy as np
import pytest
import torch
from torchvision.models import mobilenet_v2

import course_utils
from course_utils import env, features, ship, text, train  # noqa: F401 - text too: a module first imported while
# `elsewhere` is active would keep the patched get_device after the test (lesson 05's Trainer test then saw "meta")
from course_utils.vision import to_input


@pytest.fixture
def elsewhere(monkeypatch):
    """Every ``get_device`` in the package says "meta", as a GPU machine's would say "cuda"."""
    meta = torch.device("meta")
    monkeypatch.setattr(env, "get_device", lambda: meta)
    for name, module in list(sys.modules.items()):
        if name.startswith("course_utils") and hasattr(module, "get_device"):
            monkeypatch.setattr(module, "get_device", lambda: meta)
    return meta


@pytest.fixture
def model():
    torch.manual_seed(0)
    return mobilenet_v2(num_classes=2).train()


def images(n=4, size=40):
    return np.random.default_rng(0).integers(0, 256, (n, size, size), dtype=np.uint8)


def stays_put(model):
    assert all(p.device.type == "cpu" for p in model.parameters()), "the helper moved the caller's model"
    assert all(b.device.type == "cpu" for b in model.buffers())


def test_pooled_features_and_activations(elsewhere, model):
    out = features.pooled_features(model, images(), 32, ["features.3", "features"])
    assert all(isinstance(v, np.ndarray) for v in out.values())
    maps = features.frozen_activations(model, images(), 32, "features.3", views=2)
    assert isinstance(maps, np.ndarray) and maps.shape[0] == 2
    stays_put(model)
    assert model.training and all(m.training for m in model.modules()), "the helper left layers in eval mode"


def test_feature_maps_activation_maximisation_and_gradcam(elsewhere, model):
    x = to_input(images(1), 32)
    maps = features.feature_maps(model, x[0], ["features.1"])
    assert maps["features.1"].device.type == "cpu"
    art = features.activation_maximisation(model.eval(), "features.2", [0, 1], robust=True, size=32, steps=2)
    assert isinstance(art, np.ndarray) and art.shape == (2, 32, 32, 3)
    heat = features.gradcam(model, model.features[-1], to_input(images(2), 32), target=1)
    assert isinstance(heat, np.ndarray) and heat.shape == (2, 32, 32)
    stays_put(model)


def test_training_and_evaluation_helpers(elsewhere, model):
    loader = train.image_loader(images(8, 32), np.array([0, 1] * 4), batch_size=4, train=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    train.fit(model, loader, loader, optimizer, 1, progress=False)
    probs = train.predict_proba(model, loader)
    assert isinstance(probs, np.ndarray) and probs.shape == (8, 2)
    assert set(train.evaluate(model, loader)) >= {"accuracy", "balanced_accuracy"}
    x = to_input(images(8, 32), 32)
    train.train_steps(model, x, torch.tensor([0, 1] * 4), steps=1, lr=0.01, augment=True)
    stays_put(model)


def test_shipped_classifier(elsewhere, model):
    prediction = ship.ImageClassifier(model, 32, ["a", "b"]).predict_array(images(1, 40)[0])
    assert isinstance(prediction.probability, float)
    stays_put(model)


def test_text_prediction(elsewhere):
    from course_utils.text import describe_prediction, load_tokenizer, new_classifier, predict_texts

    model, tokenizer = new_classifier(seed=0), load_tokenizer()
    probs = predict_texts(model, tokenizer, ["A gem.", "Dull."])
    assert isinstance(probs, np.ndarray) and probs.shape == (2, 2)
    assert "probability" in describe_prediction(model, tokenizer, "A gem.")
    stays_put(model)


def test_setup_reports_the_device_it_would_use(elsewhere):
    assert course_utils.get_device  # the lazy attribute still resolves
    assert env.get_device().type == "meta"


def test_estimate_batchnorm(elsewhere, model):
    features.estimate_batchnorm(model, images(), 32)
    stays_put(model)
