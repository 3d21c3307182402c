"""The device slips a GPU would show, caught on the CPU: every helper runs with its model "on the GPU" under
``FakeGpu`` (tests/fake_gpu.py), where a forgotten ``.to(device)`` or ``.cpu()`` raises ``DeviceSlip``. On a machine
with CUDA the same tests run on the real GPU (``.ci/gpu-check``)."""

import sys

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v2

from course_utils import env, exercises, features, paper_recipe, reproduce, ship, text, train  # noqa: F401
from course_utils.vision import to_input
from fake_gpu import CUDA, DeviceSlip, FakeGpu, marked


@pytest.fixture
def gpu(monkeypatch):
    """The real GPU where there is one (``.ci/gpu-check``); elsewhere one played on the CPU: the package sees "cuda"
    from every ``get_device`` and no bfloat16, and tensors moved there are marked."""
    if torch.cuda.is_available():
        yield torch.device("cuda")
        return
    monkeypatch.setattr(env, "get_device", lambda: CUDA)
    monkeypatch.setattr(env, "bf16_is_fast", lambda device: False)
    for name, module in list(sys.modules.items()):
        if name.startswith("course_utils"):
            for attr, value in (("get_device", lambda: CUDA), ("bf16_is_fast", lambda device: False)):
                if hasattr(module, attr):
                    monkeypatch.setattr(module, attr, value)
    with FakeGpu():
        yield CUDA


@pytest.fixture
def model(gpu):
    torch.manual_seed(0)
    return mobilenet_v2(num_classes=2).train().to(gpu)


def images(n=4, size=40):
    return np.random.default_rng(0).integers(0, 256, (n, size, size), dtype=np.uint8)


def as_it_was(model):
    assert all(marked(p) for p in model.parameters()), "the helper moved the caller's model"
    assert model.training and all(m.training for m in model.modules()), "the helper left layers in eval mode"
    assert all(p.requires_grad for p in model.parameters()), "the helper froze the caller's weights"


def test_the_harness_sees_what_a_gpu_refuses(gpu):
    layer = nn.Linear(3, 2).to(gpu)
    with pytest.raises(DeviceSlip, match="GPU tensor met a CPU tensor"):
        layer(torch.ones(4, 3))  # input left on the CPU
    out = layer(torch.ones(4, 3).to(gpu))
    assert out.device.type == "cuda"
    with pytest.raises(DeviceSlip, match=r"\.numpy\(\)"):
        out.detach().numpy()
    assert isinstance(out.detach().cpu().numpy(), np.ndarray)
    assert out[torch.tensor([0])].shape == (1, 2)  # CPU indices into a GPU tensor: allowed, as on CUDA


def test_to_input_normalises_pixels_where_they_are(gpu):  # G5
    x = to_input(torch.from_numpy(images(2, 16)).to(gpu), 16)
    assert x.device.type == "cuda"


def test_fit_moves_the_loss_weights_to_the_model(model):  # G6
    loader = train.image_loader(images(8, 32), np.array([0, 1] * 4), batch_size=4, train=True)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 3.0]))  # made on the CPU, as a learner makes it
    train.fit(model, loader, loader, torch.optim.SGD(model.parameters(), lr=0.01), 1, loss_fn=loss_fn,
              progress=False)
    probs = train.predict_proba(model, loader)
    assert isinstance(probs, np.ndarray) and probs.shape == (8, 2)
    assert set(train.evaluate(model, loader)) >= {"accuracy", "balanced_accuracy"}
    train.train_steps(model, to_input(images(8, 32), 32), torch.tensor([0, 1] * 4), steps=1, lr=0.01, augment=True)
    assert all(marked(p) for p in model.parameters())


def test_feature_helpers_return_cpu_numpy_and_leave_the_model_as_it_was(model):  # G11
    out = features.pooled_features(model, images(), 32, ["features.3", "features"])
    assert all(isinstance(v, np.ndarray) for v in out.values())
    assert features.frozen_activations(model, images(), 32, "features.3", views=2).shape[0] == 2
    assert features.feature_maps(model, to_input(images(1), 32)[0], ["features.1"])["features.1"].device.type == "cpu"
    art = features.activation_maximisation(model, "features.2", [0, 1], robust=True, size=32, steps=2)
    assert isinstance(art, np.ndarray) and art.shape == (2, 32, 32, 3)
    heat = features.gradcam(model, model.features[-1], to_input(images(2), 32), target=1)
    assert isinstance(heat, np.ndarray) and heat.shape == (2, 32, 32)
    as_it_was(model)


def test_shipped_classifier_and_paper_recipe_views(model):
    prediction = ship.ImageClassifier(model, 32, ["a", "b"]).predict_array(images(1)[0])
    assert isinstance(prediction.probability, float)
    one = mobilenet_v2(num_classes=1).to(CUDA)
    assert paper_recipe.view_probabilities(one, images(3), 32, views=2).shape == (2, 3)
    assert all(marked(p) for p in one.parameters())  # the helper left the model where it was


def test_lesson06_q2_solution_runs_on_a_gpu(model):  # G7
    q2, _ = exercises.lesson06(model.eval(), images(6, 48), 32)
    namespace = {"torch": torch, "pretrained": model, "cells_256": images(6, 48), "SIZE": 32, "to_input": to_input,
                 "device": CUDA}
    exec(q2.solution_text, namespace)
    assert q2.problem(namespace["answer"]) is None


def test_reproduce_trains_on_the_device(gpu, monkeypatch):  # G9
    seen = []
    real_fit = reproduce.fit
    monkeypatch.setattr(reproduce, "fit", lambda model, *a, **k: seen.append(env.model_device(model).type)
                        or real_fit(model, *a, **k))
    features_ = np.random.default_rng(0).normal(size=(12, 1280)).astype(np.float32)
    labels = np.array([0, 1] * 6)
    probs = reproduce.probe_run(features_, labels, {"train": np.arange(8), "test": np.arange(8, 12)}, seed=0)
    assert isinstance(probs, np.ndarray) and seen == ["cuda"]


def test_text_helpers_default_to_the_device(gpu, monkeypatch):  # G10
    model, tokenizer = text.new_classifier(seed=0).to(gpu), text.load_tokenizer()
    probs = text.predict_texts(model, tokenizer, ["A gem.", "Dull."])
    assert isinstance(probs, np.ndarray) and probs.shape == (2, 2)
    loaded = []
    real_load = text.load_encoder
    monkeypatch.setattr(text, "load_encoder", lambda: loaded.append(real_load()) or loaded[-1])
    assert text.embed(["A gem."]).shape == (1, 384)
    assert marked(next(loaded[0].parameters())), "embed() computed on the CPU though a GPU is here"


def test_bfloat16_only_on_compute_capability_8_or_newer(monkeypatch):  # G1
    monkeypatch.delenv("COURSE_BF16", raising=False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what a T4 answers, by emulation
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # a T4
    assert not env.bf16_is_fast(CUDA)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # an A100
    assert env.bf16_is_fast(CUDA)


def test_setup_keeps_float32_exact_on_gpus():  # the TF32 policy
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    env.seed_everything(0)
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32


def test_memory_peak_reads_the_gpus_memory_on_a_gpu(monkeypatch):  # G12
    for name in ("synchronize", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, name, lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 100 * 2**20)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 350 * 2**20)
    with env.memory_peak(CUDA) as memory:
        pass
    assert memory["mb"] == 250
