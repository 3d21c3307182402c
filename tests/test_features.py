"""Cached features: keyed so that changed weights or data are never reused, and a new head is."""

import numpy as np
import torch
from torch import nn

from course_utils.features import (activation_maximisation, cached_features, feature_maps, fingerprint,
                                   pooled_features)
from course_utils.models import load_mobilenet_v2

IMAGES = np.random.default_rng(0).integers(0, 255, (5, 48, 48), dtype=np.uint8)


def test_a_damaged_features_entry_is_recomputed(isolated_data, capsys):
    model = load_mobilenet_v2()
    first = cached_features(model, IMAGES, 64, ["features.3", "features"])
    entry = next(p for p in (isolated_data / "features").glob("*.npy") if p.stat().st_size < 5 * 1280 * 4)
    entry.write_bytes(entry.read_bytes()[:-8] + bytes(8))  # same size, damaged content
    again = cached_features(model, IMAGES, 64, ["features.3", "features"])
    assert all(np.allclose(again[n], first[n]) for n in first)
    assert "damaged" in capsys.readouterr().err


def test_pooled_features_shapes():
    model = load_mobilenet_v2()
    out = pooled_features(model, IMAGES, 64, ["features.3", "features"], batch_size=2)
    assert out["features.3"].shape == (5, 24) and out["features"].shape == (5, 1280)


def test_cache_reuses_and_invalidates(isolated_data):
    model = load_mobilenet_v2()
    first = cached_features(model, IMAGES, 64)["features"]
    files = sorted((isolated_data / "features").glob("*.npy"))
    assert len(files) == 1
    model.classifier[-1] = nn.Linear(1280, 2)  # a new head: same body, same key
    assert np.array_equal(cached_features(model, IMAGES, 64)["features"], first)
    assert sorted((isolated_data / "features").glob("*.npy")) == files
    with torch.no_grad():
        model.features[0][0].weight[0, 0, 0, 0] += 1.0  # a changed body: new key
    changed = cached_features(model, IMAGES, 64)["features"]
    cached_features(model, IMAGES[::-1].copy(), 64)  # changed data: new key
    cached_features(model, IMAGES, 96)  # changed size: new key
    assert len(list((isolated_data / "features").glob("*.npy"))) == 4
    assert not np.array_equal(changed, first)


def test_fingerprint_prefixes():
    a, b = load_mobilenet_v2(), load_mobilenet_v2(num_classes=2)
    assert fingerprint(a, ("features.",)) == fingerprint(b, ("features.",))
    assert fingerprint(a) != fingerprint(b)


def test_feature_maps_and_activation_maximisation():
    model = load_mobilenet_v2().eval()
    maps = feature_maps(model, torch.zeros(3, 64, 64), ["features.2", "features.7"])
    assert maps["features.2"].shape == (24, 16, 16) and maps["features.7"].shape == (64, 4, 4)
    for robust in (False, True):
        images = activation_maximisation(model, "features.3", [0, 1], robust=robust, size=32, steps=3)
        assert images.shape == (2, 32, 32, 3) and images.min() >= 0 and images.max() <= 1


def test_top_blocks_and_frozen_batchnorm_match_the_full_model():
    from torchvision.ops import FrozenBatchNorm2d

    from course_utils.models import freeze, freeze_batchnorm, load_mobilenet_v2, top_blocks

    model = load_mobilenet_v2(num_classes=2).eval()
    x = torch.randn(2, 3, 64, 64)
    below = model.features[:-3](x)
    assert torch.allclose(top_blocks(model, 3).eval()(below), model(x), atol=1e-5)  # same weights, same output
    freeze(model.features[:-3])
    assert all(p.requires_grad for p in top_blocks(model, 3).parameters())
    expected = model(x)
    frozen = freeze_batchnorm(model).train()  # train mode: a real BatchNorm would use the batch's statistics
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in frozen.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in frozen.modules())
    assert torch.allclose(frozen.eval()(x), expected, atol=1e-5)


def test_gradcam_shape_and_range():
    from course_utils.features import gradcam
    from course_utils.models import load_mobilenet_v2

    model = load_mobilenet_v2(num_classes=2)
    heat = gradcam(model, model.features[-1], torch.randn(3, 3, 96, 96), target=1)
    assert heat.shape == (3, 96, 96)
    assert heat.min() >= 0 and heat.max() <= 1 + 1e-6


def test_top_blocks_of_efficientnet_lite0_read_its_cached_activations():
    """The second backbone has MobileNetV2's layout: its top 3 blocks, fed the activations at features.14, are the model."""
    import numpy as np

    from course_utils.features import frozen_activations
    from course_utils.models import load_efficientnet_lite0, top_blocks
    from course_utils.vision import to_input

    model = load_efficientnet_lite0(num_classes=2).eval()
    images = np.random.default_rng(0).integers(0, 256, (3, 70, 70), dtype=np.uint8)
    maps = frozen_activations(model, images, 64, "features.14", views=1)[0]
    with torch.inference_mode():
        expected = model(to_input(images, 64))
        got = top_blocks(model, 3).eval()(torch.from_numpy(maps).float())
    torch.testing.assert_close(got, expected, atol=2e-2, rtol=2e-2)  # the cached maps are float16


def test_estimate_batchnorm_stores_the_images_statistics_and_nothing_else():
    from course_utils.features import estimate_batchnorm
    from course_utils.vision import to_input

    torch.manual_seed(0)
    model = load_mobilenet_v2(num_classes=2)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    images = np.random.default_rng(1).integers(0, 255, (8, 48, 48), dtype=np.uint8)
    estimate_batchnorm(model, images, 32, batch_size=4)  # two equal batches: their average is the overall mean
    with torch.no_grad():
        conv = model.features[0][0](to_input(images, 32))
    first = model.features[0][1]
    assert torch.allclose(first.running_mean, conv.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(first.running_var, conv.var(dim=(0, 2, 3)), rtol=0.05)  # per-batch unbiased, averaged
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())  # no weight moved
    assert first.momentum == 0.1 and not model.training  # momentum given back; left in eval mode
