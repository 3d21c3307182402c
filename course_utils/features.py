"""Looking inside networks: pooled features (cached on disk), feature maps, activation maximisation."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from course_utils.data import cache_key, cache_path, cached_array
from course_utils.env import model_device
from course_utils.vision import DIHEDRAL, dihedral, to_input


def fingerprint(model: nn.Module, prefixes: tuple[str, ...] = ("",)) -> str:
    """A short hash of a model's weights and buffers (those whose names start with one of ``prefixes``)."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if not name.startswith(prefixes):
            continue
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def images_fingerprint(images: np.ndarray) -> str:
    """A short hash of an image array: changed data gets a new cache key."""
    return hashlib.sha256(np.ascontiguousarray(images).data).hexdigest()[:16]


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put every layer of ``model`` in eval mode for a while, then give each layer back its mode and each weight
    back its ``requires_grad`` (a helper may freeze them on the way): the caller's model comes back as it was."""
    modes = {m: m.training for m in model.modules()}
    grads = {p: p.requires_grad for p in model.parameters()}
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes.items():
            m.training = training
        for p, requires_grad in grads.items():
            p.requires_grad_(requires_grad)


@torch.no_grad()
def pooled_features(model: nn.Module, images: np.ndarray, size: int, nodes: list[str] | None = None,
                    batch_size: int = 32) -> dict[str, np.ndarray]:
    """Global-average-pooled activations at ``nodes`` (default: the end of ``features``), one row per image.

    The images go to the model's device; the model stays where it is. Introduced in ``02_what_networks_learn.ipynb``.
    """
    device = model_device(model)
    nodes = nodes or ["features"]
    extractor = create_feature_extractor(model, return_nodes=nodes)  # shares the model's weights
    out: dict[str, list[np.ndarray]] = {n: [] for n in nodes}
    with evaluating(model):
        for start in range(0, len(images), batch_size):
            x = to_input(images[start:start + batch_size], size).to(device)
            for name, act in extractor(x).items():
                out[name].append(act.float().mean(dim=(2, 3)).cpu().numpy())
    return {n: np.concatenate(v) for n, v in out.items()}


def cached_features(model: nn.Module, images: np.ndarray, size: int, nodes: list[str] | None = None,
                    folder: str = "features") -> dict[str, np.ndarray]:
    """``pooled_features`` saved under ``data/<folder>/``, one file per node, keyed by the weights, the images,
    the size and the node.

    A re-run loads them in a fraction of a second; a changed model or changed data never reuses them.
    Introduced in ``03_replacing_the_head.ipynb``.
    """
    nodes = nodes or ["features"]
    # Only the blocks the nodes live in count: a new head must not throw away the backbone's features.
    weights = fingerprint(model, tuple(sorted({n.split(".")[0] + "." for n in nodes})))
    keys = {n: cache_key(weights, images_fingerprint(images), size, n) for n in nodes}
    missing = [n for n in nodes if not cache_path(folder, "pooled", keys[n]).is_file()]
    fresh = pooled_features(model, images, size, missing) if missing else {}  # one pass for all missing nodes
    # An entry found damaged on reading is recomputed on its own (it was not missing, so not in fresh).
    return {n: cached_array(folder, "pooled", keys[n],
                            lambda n=n: fresh[n] if n in fresh else pooled_features(model, images, size, [n])[n])
            for n in nodes}


@torch.no_grad()
def feature_maps(model: nn.Module, image: torch.Tensor, nodes: list[str]) -> dict[str, torch.Tensor]:
    """The activation maps (channels, height, width), on the CPU, at each of ``nodes`` for one image (3, H, W).

    Introduced in ``02_what_networks_learn.ipynb``.
    """
    extractor = create_feature_extractor(model, return_nodes=nodes)  # shares the model's layers
    with evaluating(model):
        return {n: a[0].cpu() for n, a in extractor(image[None].to(model_device(model))).items()}


def _decorrelated_image(params: torch.Tensor, size: int) -> torch.Tensor:
    """Fourier coefficients -> an image whose low frequencies dominate (Olah et al. 2017's parameterisation)."""
    fy, fx = torch.fft.fftfreq(size, device=params.device), torch.fft.rfftfreq(size, device=params.device)
    freqs = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    scale = 1.0 / torch.clamp(freqs, min=1.0 / size)  # 1/f: equal energy per frequency band
    spectrum = torch.complex(params[..., 0], params[..., 1]) * scale
    return torch.fft.irfft2(spectrum, s=(size, size), norm="ortho")


def activation_maximisation(model: nn.Module, node: str, channels: list[int], robust: bool, size: int = 128,
                            steps: int = 128, lr: float = 0.05, seed: int = 0) -> np.ndarray:
    """Images (len(channels), size, size, 3) in 0-1 that maximise the mean activation of each channel at ``node``.

    ``robust=False`` is the naive version: plain gradient ascent on pixels. ``robust=True`` adds the
    tricks of Olah et al. 2017: a Fourier (decorrelated) parameterisation, random jitter and scaling.
    Introduced in ``02_what_networks_learn.ipynb``.
    """
    with evaluating(model):  # the layers it shares with ``model`` are frozen and in eval mode only meanwhile
        return _maximise(model, node, channels, robust, size, steps, lr, seed)


def _maximise(model: nn.Module, node: str, channels: list[int], robust: bool, size: int, steps: int, lr: float,
              seed: int) -> np.ndarray:
    """``activation_maximisation``'s gradient ascent, on a model in eval mode."""
    extractor = create_feature_extractor(model, return_nodes=[node])
    for p in extractor.parameters():
        p.requires_grad_(False)
    device = model_device(model)
    generator = torch.Generator().manual_seed(seed)  # on the CPU: the same images on every device
    n = len(channels)
    if robust:
        params = (0.01 * torch.randn(n, 3, size, size // 2 + 1, 2, generator=generator)).to(device).requires_grad_()
    else:
        params = (0.1 * torch.randn(n, 3, size, size, generator=generator)).to(device).requires_grad_()

    def render() -> torch.Tensor:
        raw = _decorrelated_image(params, size) * 2.0 if robust else params
        return torch.sigmoid(raw)  # keeps pixels in 0-1

    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
    optimizer = torch.optim.Adam([params], lr=lr)
    pick = torch.arange(n)
    for _ in range(steps):
        image = render()
        if robust:  # the feature must survive small shifts and zooms, so noise that only works in place dies
            dx, dy = torch.randint(-8, 9, (2,), generator=generator).tolist()
            image = torch.roll(F.pad(image, (12, 12, 12, 12), mode="reflect"), shifts=(dx, dy), dims=(2, 3))
            factor = float(torch.empty(1).uniform_(0.9, 1.1, generator=generator))
            image = F.interpolate(image, scale_factor=factor, mode="bilinear", align_corners=False)
        act = extractor(((image - mean) / std).contiguous(memory_format=torch.channels_last))[node]
        loss = -act[pick, channels].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return render().detach().permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def frozen_activations(model: nn.Module, images: np.ndarray, size: int, node: str, views: int = 8,
                       batch_size: int = 32) -> np.ndarray:
    """Activation maps at ``node`` (views, N, C, H, W, float16) for the first ``views`` dihedral views of each image.

    Frozen layers give the same output for the same input, so a fine-tuning run that trains only the
    blocks above ``node`` can read these instead of running the frozen part on every epoch. The views
    are exact flips and quarter turns of the *input*, so they still serve as augmentation.
    Introduced in ``04_fine_tuning_images.ipynb``.
    """
    device = model_device(model)
    extractor = create_feature_extractor(model, return_nodes=[node])  # shares the model's weights
    out = []
    with evaluating(model):
        for turns, flip in DIHEDRAL[:views]:
            maps = []
            for start in range(0, len(images), batch_size):
                x = dihedral(to_input(images[start:start + batch_size], size), turns, flip).to(device)
                maps.append(extractor(x)[node].to(torch.float16).cpu().numpy())
            out.append(np.concatenate(maps))
    return np.stack(out)


def cached_activations(model: nn.Module, images: np.ndarray, size: int, node: str, views: int = 8) -> np.ndarray:
    """``frozen_activations`` saved under ``data/activations/``, keyed like ``cached_features`` and by whether
    they are computed under bfloat16 autocast (``train.mixed_precision``), whose rounding they keep."""
    weights = fingerprint(model, (node.split(".")[0] + ".",))
    autocast = torch.is_autocast_enabled(model_device(model).type)
    key = cache_key(weights, images_fingerprint(images), size, node, views, *(["bfloat16"] if autocast else []))
    return cached_array("activations", "maps", key, lambda: frozen_activations(model, images, size, node, views))


def gradcam(model: nn.Module, layer: nn.Module, inputs: torch.Tensor, target: int) -> np.ndarray:
    """Grad-CAM heatmaps (N, H, W) in 0-1 for class ``target``, at ``layer``, upsampled to the input size.

    Uses captum's ``LayerGradCam``: where, in the layer's maps, evidence for ``target`` sits.
    Introduced in ``04_fine_tuning_images.ipynb``.
    """
    from captum.attr import LayerAttribution, LayerGradCam

    inputs = inputs.to(model_device(model))
    with evaluating(model):
        cam = LayerGradCam(model, layer).attribute(inputs, target=target, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, tuple(inputs.shape[-2:]), interpolate_mode="bilinear")[:, 0]
    cam = cam.detach() / cam.detach().amax(dim=(1, 2), keepdim=True).clamp(min=1e-8)
    return cam.cpu().numpy()


@torch.no_grad()
def estimate_batchnorm(model: nn.Module, images: np.ndarray, size: int, batch_size: int = 64) -> nn.Module:
    """Re-estimate every BatchNorm layer's running mean and variance on ``images`` (AdaBN); no weight changes.

    The statistics become the average over all batches (``momentum=None``), the model goes back to eval mode,
    and the images go to the model's device. Used in ``02_what_networks_learn.ipynb`` (the random-weights control),
    written out in ``06_when_transfer_fails.ipynb``.
    """
    device = model_device(model)
    layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [layer.momentum for layer in layers]
    model.eval()  # dropout stays off; only the BatchNorm layers collect statistics
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
        layer.train()
    for start in range(0, len(images), batch_size):
        model(to_input(images[start:start + batch_size], size).to(device))
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum  # later training updates the statistics as before
    return model.eval()
