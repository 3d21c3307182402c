"""Shipping a fine-tuned image classifier: weights (safetensors), preprocessing and class names in one folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.models import mobilenet_v2

from course_utils.assets import shown
from course_utils.env import model_device
from course_utils.vision import ImageInputError, read_image, to_input


def save_classifier(model: nn.Module, folder: str | Path, size: int, class_names: list[str]) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (architecture, input size, class names) to ``folder``.

    Introduced in ``04_fine_tuning_images.ipynb``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, folder / "model.safetensors")
    config = {"architecture": "mobilenet_v2", "input_size": size, "input": "grey, any size; resized to input_size",
              "normalisation": "ImageNet mean and std, grey copied to 3 channels", "class_names": class_names}
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    return folder


@dataclass
class Prediction:
    """One classified image: the class, its probability, and every class's probability."""

    label: str
    probability: float
    probabilities: dict[str, float]


class ImageClassifier:
    """A shipped classifier: ``ImageClassifier.load(folder).predict("cell.png")``.

    Introduced in ``04_fine_tuning_images.ipynb``.
    """

    def __init__(self, model: nn.Module, size: int, class_names: list[str]):
        self.model = model.eval()
        self.size = size
        self.class_names = class_names

    @classmethod
    def load(cls, folder: str | Path) -> ImageClassifier:
        """Rebuild the model from ``config.json`` and load its safetensors weights (no pickle involved)."""
        folder = Path(folder)
        if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
            raise ImageInputError(f"{shown(folder)} is not a saved classifier (config.json and model.safetensors expected): "
                                  "save one with save_classifier().")
        config = json.loads((folder / "config.json").read_text())
        model = mobilenet_v2(weights=None, num_classes=len(config["class_names"]))
        model.load_state_dict(load_file(folder / "model.safetensors"), strict=True)
        return cls(model, config["input_size"], config["class_names"])

    def predict_array(self, image: np.ndarray) -> Prediction:
        """Classify one grey image given as a uint8 array (H, W)."""
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[-1] in (3, 4):
            raise ImageInputError(f"Expected a grey image (H, W), got colour {image.shape}: convert it first, "
                                  "e.g. Image.open(path).convert('L'), or pass the file path to predict().")
        if image.ndim != 2:
            raise ImageInputError(f"Expected one grey image shaped (H, W), got {image.shape}.")
        if min(image.shape) < 32:
            raise ImageInputError(f"Image of {image.shape[1]}x{image.shape[0]} pixels is too small to inspect "
                                  f"(the model expects about {self.size}x{self.size}).")
        with torch.no_grad():
            x = to_input(image[None], self.size).to(model_device(self.model))
            probs = torch.softmax(self.model(x), dim=1)[0].tolist()
        best = int(np.argmax(probs))
        return Prediction(self.class_names[best], probs[best], dict(zip(self.class_names, probs)))

    def predict(self, path: str | Path) -> Prediction:
        """Classify one image file, as a factory line would: any size, colour or grey (read as grey)."""
        return self.predict_array(read_image(path))
