"""Pretrained models, loaded from verified files only, and the tools to freeze and inspect them."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from course_utils.assets import asset_file, asset_path

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


def minilm_path() -> Path:
    """The verified folder of the pretrained MiniLM (config, safetensors weights, tokenizer)."""
    return asset_path("minilm")
