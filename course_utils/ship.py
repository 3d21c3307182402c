"""Shipping a fine-tuned image classifier: weights (safetensors), preprocessing and class names in one folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.models import mobilenet_v2

from course_utils.assets import sha256_file, shown
from course_utils.env import model_device
from course_utils.errors import SettingError
from course_utils.vision import MIN_SIDE, ImageInputError, grey_if_grey, read_image, resize_image, to_input

CONFIG_KEYS = ("architecture", "class_names", "channels", "load_size", "input_size", "weights_sha256")


def save_classifier(model: nn.Module, folder: str | Path, size: int, class_names: list[str], load_size: int = 300,
                    channels: int = 1, threshold: float | None = None, temperature: float = 1.0) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (architecture, preprocessing, class names, the weights'
    sha256, the operating point) to ``folder``.

    The preprocessing is the training path's: a file is read in grey (``channels=1``) or colour (3), resized to
    ``load_size`` (what ``load_folder(size=...)`` did; ELPV's cells are 300 px), then to ``size`` for the model.
    ``temperature`` divides the logits before the softmax (calibration); with two classes, ``threshold`` is the
    probability of the second class from which it is predicted (``None``: the most probable class wins).
    Introduced in ``04_fine_tuning_images.ipynb``.
    """
    check_operating_point(threshold, temperature, len(class_names))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, folder / "model.safetensors")
    config = {"architecture": "mobilenet_v2", "class_names": list(class_names), "channels": channels,
              "load_size": load_size, "input_size": size,
              "preprocessing": "read_image -> resize_image(load_size) -> to_input(input_size): ImageNet mean and std"
                               + (", grey copied to 3 channels" if channels == 1 else ""),
              "weights_sha256": sha256_file(folder / "model.safetensors"),
              "threshold": threshold, "temperature": temperature}
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    return folder


def check_operating_point(threshold: float | None, temperature: float, num_classes: int) -> None:
    """Refuse a threshold outside (0, 1) or for more than two classes, and a temperature that is not positive."""
    if threshold is not None and (num_classes != 2 or not 0 < threshold < 1):
        raise SettingError(f"A threshold needs two classes and a value between 0 and 1; got {threshold} for "
                              f"{num_classes} classes.")
    if not temperature > 0:
        raise SettingError(f"The temperature divides the logits, so it must be positive; got {temperature}.")


def read_config(folder: Path) -> dict:
    """A shipped classifier's ``config.json``, checked: every key ``save_classifier`` writes must be there."""
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ImageInputError(f"{shown(path)} is not valid JSON (line {exc.lineno}): restore the folder from its "
                              "copy, or save the model again with save_classifier().") from None
    missing = [key for key in CONFIG_KEYS if key not in config] if isinstance(config, dict) else list(CONFIG_KEYS)
    if missing:
        raise ImageInputError(f"{shown(path)} lacks {', '.join(missing)}: it was not written by save_classifier(), "
                              "or was edited; save the model again.")
    config.setdefault("threshold", None)  # saved before the operating point was recorded: the arg-max
    config.setdefault("temperature", 1.0)
    try:
        check_operating_point(config["threshold"], config["temperature"], len(config["class_names"]))
    except SettingError as exc:
        raise SettingError(f"{shown(path)}: {exc}") from None
    if config["architecture"] != "mobilenet_v2":
        raise ImageInputError(f"{shown(path)} names architecture {config['architecture']!r}; this loader rebuilds "
                              "mobilenet_v2 only.")
    return config


def load_weights(folder: Path, config: dict) -> dict[str, torch.Tensor]:
    """``model.safetensors``, after checking its sha256 against the one ``config.json`` recorded."""
    path = folder / "model.safetensors"
    if sha256_file(path) != config["weights_sha256"]:
        raise ImageInputError(f"{shown(path)} does not match the sha256 in config.json: the file is damaged or was "
                              "replaced. Copy the folder again, or save the model again.")
    try:
        return load_file(path)
    except SafetensorError as exc:
        raise ImageInputError(f"{shown(path)} is damaged ({str(exc)[:60]}): copy the folder again, or save the "
                              "model again.") from None


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

    def __init__(self, model: nn.Module, size: int, class_names: list[str], load_size: int = 300,
                 channels: int = 1, threshold: float | None = None, temperature: float = 1.0):
        check_operating_point(threshold, temperature, len(class_names))
        self.model = model.eval()
        self.size = size
        self.class_names = class_names
        self.load_size = load_size
        self.channels = channels
        self.threshold = threshold
        self.temperature = temperature

    @classmethod
    def load(cls, folder: str | Path) -> ImageClassifier:
        """Rebuild the model from ``config.json`` and load its checked safetensors weights (no pickle involved)."""
        folder = Path(folder)
        if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
            raise ImageInputError(f"{shown(folder)} is not a saved classifier (config.json and model.safetensors "
                                  "expected): save one with save_classifier().")
        config = read_config(folder)
        state = load_weights(folder, config)
        model = mobilenet_v2(weights=None, num_classes=len(config["class_names"]))
        head = state.get("classifier.1.weight")
        if head is None or head.shape[0] != len(config["class_names"]):
            raise ImageInputError(f"{shown(folder / 'config.json')} names {len(config['class_names'])} classes, but "
                                  f"the weights have {'no head' if head is None else f'a head for {head.shape[0]}'}: "
                                  "the two files come from different models; save the model again.")
        model.load_state_dict(state, strict=True)
        return cls(model, config["input_size"], config["class_names"], config["load_size"], config["channels"],
                   config["threshold"], config["temperature"])

    def predict_array(self, image: np.ndarray, source: str | Path | None = None) -> Prediction:
        """Classify one uint8 image, grey (H, W) or colour (H, W, 3), as the model was trained; ``source``
        (the file it came from) is named in any message."""
        image = np.asarray(image)
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
            raise ImageInputError(f"Expected one image shaped (H, W) or (H, W, 3), got {image.shape}.")
        if image.ndim == 3:
            image = grey_if_grey(image)  # a grey picture stored in three equal channels is grey
        kind = {2: ("grey", "(H, W)"), 3: ("colour", "(H, W, 3)")}
        wanted, got = kind[2 if self.channels == 1 else 3], kind[image.ndim]
        if wanted != got:
            where = f"{shown(source)}: " if source is not None else ""
            raise ImageInputError(f"{where}Expected a {wanted[0]} image {wanted[1]}, got a {got[0]} one {image.shape}: "
                                  f"this model was trained on {wanted[0]} images; give it {wanted[0]} ones.")
        if min(image.shape[:2]) < MIN_SIDE:
            raise ImageInputError(f"Image of {image.shape[1]}x{image.shape[0]} pixels is too small to inspect "
                                  f"(the minimum is {MIN_SIDE}; the model expects about {self.load_size}x{self.load_size}).")
        with torch.no_grad():
            x = to_input(resize_image(image, self.load_size)[None], self.size).to(model_device(self.model))
            probs = torch.softmax(self.model(x).float() / self.temperature, dim=1)[0].tolist()
        best = int(np.argmax(probs)) if self.threshold is None else int(probs[1] >= self.threshold)
        return Prediction(self.class_names[best], probs[best], dict(zip(self.class_names, probs)))

    def predict(self, path: str | Path) -> Prediction:
        """Classify one image file, as a factory line would: any size, read and resized as in training."""
        return self.predict_array(read_image(path), source=path)
