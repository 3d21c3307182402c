"""Shipping a fine-tuned image classifier: weights (safetensors), preprocessing and class names in one folder."""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Callable
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
from course_utils.vision import MIN_SIDE, ImageInputError, read_image, resize_image, shows_colour, to_input, with_channels

CONFIG_KEYS = ("architecture", "class_names", "channels", "load_size", "input_size", "weights_sha256")
HEAD = "classifier.1.weight"  # mobilenet_v2's last layer: one row per class


def _whole(value: object) -> bool:
    """A positive whole number (not a bool, not 300.0)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _number(value: object) -> bool:
    """A finite real number (not a bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _names(value: object) -> bool:
    """Two or more different, non-empty strings."""
    return (isinstance(value, list) and len(value) >= 2 and all(isinstance(name, str) and name.strip() for name in value)
            and len(set(value)) == len(value))


# Each setting a shipped model records: the test its value must pass, and what the message says is allowed.
RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "architecture": (lambda v: v == "mobilenet_v2", 'it must be "mobilenet_v2", the one architecture this loader '
                                                    "rebuilds"),
    "class_names": (_names, "it must be a list of two or more different, non-empty names, one per output of the "
                            "model"),
    "channels": (lambda v: _whole(v) and v in (1, 3), "it must be 1 (grey) or 3 (colour)"),
    "load_size": (_whole, "it must be a positive whole number of pixels"),
    "input_size": (_whole, "it must be a positive whole number of pixels"),
    "weights_sha256": (lambda v: isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v) is not None,
                       "it must be the weights' sha256: 64 hexadecimal digits"),
    "threshold": (lambda v: v is None or (_number(v) and 0 <= v <= 1),
                  "a threshold needs two classes and a value between 0 and 1, or null for the most probable class"),
    "temperature": (lambda v: _number(v) and v > 0, "it divides the logits, so it must be a positive number"),
}


def check_settings(settings: dict, where: str = "") -> None:
    """Refuse a setting outside ``RULES`` in one line naming the field, its value and what is allowed."""
    for key, value in settings.items():
        if key in RULES and not RULES[key][0](value):
            raise SettingError(f"{where}{key} is {_brief(value)}; {RULES[key][1]}.")
    if settings.get("threshold") is not None and len(settings.get("class_names", [])) != 2:
        raise SettingError(f"{where}threshold is {_brief(settings['threshold'])}, but class_names has "
                           f"{len(settings['class_names'])} classes: {RULES['threshold'][1]}.")


def _brief(value: object) -> str:
    """A value as config.json writes it, cut to 60 characters."""
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def check_head(state: dict[str, torch.Tensor], class_names: list[str], where: str) -> None:
    """Refuse weights whose last layer does not have one output per class name."""
    head = state.get(HEAD)
    if head is None or head.shape[0] != len(class_names):
        raise ImageInputError(f"{where}class_names {_brief(class_names)} names {len(class_names)} classes, but the "
                              f"weights have {'no head' if head is None else f'a head for {head.shape[0]}'}: the "
                              "names and the weights come from different models; save the model again.")


def save_classifier(model: nn.Module, folder: str | Path, size: int, class_names: list[str], load_size: int = 300,
                    channels: int | None = None, threshold: float | None = None, temperature: float = 1.0,
                    images: np.ndarray | torch.Tensor | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (architecture, preprocessing, class names, the weights'
    sha256, the operating point) to ``folder``.

    The preprocessing is the training path's: a file is read in grey (``channels=1``) or colour (3), resized to
    ``load_size`` (what ``load_folder(size=...)`` did; ELPV's cells are 300 px), then to ``size`` for the model.
    ``images``, the training images as ``load_folder`` returned them, settle ``channels`` by their shape (grey
    (N, H, W) or colour (N, H, W, 3)); one of the two is required, so a colour model is never saved as grey. ``temperature`` divides the logits before the softmax
    (calibration); with two classes, ``threshold`` is the probability of the second class from which it is
    predicted (``None``: the most probable class wins). Every setting is checked before anything is written.
    Introduced in ``04_fine_tuning_images.ipynb``.
    """
    channels = _channels_to_save(channels, images)
    check_settings({"class_names": list(class_names), "channels": channels, "load_size": load_size,
                    "input_size": size, "threshold": threshold, "temperature": temperature}, "save_classifier: ")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    check_head(state, list(class_names), "save_classifier: ")
    _check_input_channels(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, folder / "model.safetensors")
    config = {"architecture": "mobilenet_v2", "class_names": list(class_names), "channels": channels,
              "load_size": int(load_size), "input_size": int(size),
              "preprocessing": "read_image -> resize_image(load_size) -> to_input(input_size): ImageNet mean and std"
                               + (", grey copied to 3 channels" if channels == 1 else ""),
              "weights_sha256": sha256_file(folder / "model.safetensors"),
              "threshold": None if threshold is None else float(threshold), "temperature": float(temperature)}
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    return folder


def _channels_to_save(channels: int | None, images: np.ndarray | torch.Tensor | None) -> int:
    """The channels a model was trained on: as given, or read from its training images' shape; never guessed."""
    if images is None:
        if channels is None:  # a colour model saved as grey by default would refuse its own photos later
            raise SettingError("save_classifier: say what the model was trained on, channels=1 (grey) or channels=3 "
                               "(colour), or pass its training images (images=...) to read it from their shape.")
        return channels
    shape = tuple(images.shape)
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[-1] != 3):
        raise SettingError(f"save_classifier: images are shaped {shape}; give the training images as load_folder "
                           "returned them, (N, H, W) grey or (N, H, W, 3) colour.")
    seen = 3 if len(shape) == 4 else 1
    if channels is not None and channels != seen:
        raise SettingError(f"save_classifier: channels is {channels}, but the training images are "
                           f"{'colour' if seen == 3 else 'grey'} {shape}: pass channels={seen}, or leave it out.")
    return seen


def _check_input_channels(model: nn.Module) -> None:
    """Refuse a model whose first convolution does not take the 3 channels ``to_input`` gives (grey copied to 3).

    This cannot tell a grey model from a colour one (both take 3 channels): the training images' shape does that.
    """
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is not None and first.in_channels != 3:
        raise SettingError(f"save_classifier: the model's first convolution takes {first.in_channels} channel(s); "
                           "the shipped path gives it 3 (to_input copies grey into all three): keep the "
                           "pretrained 3-channel first layer.")


def read_config(folder: Path) -> dict:
    """A shipped classifier's ``config.json``, checked: every key ``save_classifier`` writes, each value allowed."""
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ImageInputError(f"{shown(path)} is not valid JSON (line {exc.lineno}): restore the folder from its "
                              "copy, or save the model again with save_classifier().") from None
    if isinstance(config, dict) and "weights_sha256" not in config and {"architecture", "input_size"} <= config.keys():
        _earlier_version(path, config)  # before the sha256 was recorded: architecture, input_size and class_names
    missing = [key for key in CONFIG_KEYS if key not in config] if isinstance(config, dict) else list(CONFIG_KEYS)
    if missing:
        raise ImageInputError(f"{shown(path)} lacks {', '.join(missing)}: it was not written by save_classifier(), "
                              "or was edited; save the model again.")
    config.setdefault("threshold", None)  # saved before the operating point was recorded: the arg-max
    config.setdefault("temperature", 1.0)
    check_settings(config, f"{shown(path)}: ")
    return config


def _earlier_version(path: Path, config: dict) -> None:
    """Raise the one line for a folder an earlier version of the course wrote: what is missing and how to re-save."""
    names = config.get("class_names", [])
    size = config.get("input_size", "<input_size>")
    call = (f"save_classifier(model, folder, size={size}, class_names={_brief(names)}, "
            f"load_size={config.get('load_size', size)}" + (", channels=3)" if config.get("channels") == 3 else ")"))
    raise ImageInputError(f"{shown(path)} was written by an earlier version of the course: it has no weights_sha256, "
                          "so its weights cannot be checked. Save the model again: run lesson 04's save_classifier "
                          "cell, or, trusting these weights, load them into "
                          f"mobilenet_v2(num_classes={len(names) if isinstance(names, list) else 'N'}) with "
                          f"model.load_state_dict(safetensors.torch.load_file(...)) and call {call}.")


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
        check_settings({"class_names": list(class_names), "channels": channels, "load_size": load_size, "input_size": size,
                        "threshold": threshold, "temperature": temperature})
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
        check_head(state, config["class_names"], f"{shown(folder / 'config.json')}: ")
        model = mobilenet_v2(weights=None, num_classes=len(config["class_names"]))
        model.load_state_dict(state, strict=True)
        return cls(model, config["input_size"], config["class_names"], config["load_size"], config["channels"],
                   config["threshold"], config["temperature"])

    def predict_array(self, image: np.ndarray, source: str | Path | None = None) -> Prediction:
        """Classify one uint8 image, grey (H, W) or colour (H, W, 3), as the model was trained; ``source``
        (the file it came from) is named in any message."""
        image = self.as_trained(np.asarray(image), source)
        if min(image.shape[:2]) < MIN_SIDE:
            raise ImageInputError(f"Image of {image.shape[1]}x{image.shape[0]} pixels is too small to inspect "
                                  f"(the minimum is {MIN_SIDE}; the model expects about {self.load_size}x{self.load_size}).")
        with torch.no_grad():
            x = to_input(resize_image(image, self.load_size)[None], self.size).to(model_device(self.model))
            probs = torch.softmax(self.model(x).float() / self.temperature, dim=1)[0].tolist()
        best = int(np.argmax(probs)) if self.threshold is None else int(probs[1] >= self.threshold)
        return Prediction(self.class_names[best], probs[best], dict(zip(self.class_names, probs)))

    def as_trained(self, image: np.ndarray, source: str | Path | None = None) -> np.ndarray:
        """An image in the model's channels: a colour model copies grey into three channels; a grey model takes
        colour whose channels are equal (a grey picture saved in colour) and refuses colour it cannot see."""
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
            raise ImageInputError(f"Expected one image shaped (H, W) or (H, W, 3), got {image.shape}.")
        if self.channels == 1 and shows_colour(image):
            where = f"{shown(source)}: " if source is not None else ""
            raise ImageInputError(f"{where}Expected a grey image (H, W), got a colour one {image.shape}: this model "
                                  "was trained on grey images; give it grey ones. Colour is refused, not converted, "
                                  "since turning it grey could hide what the colour shows: convert it with "
                                  "read_image(path, channels=1) if the colour does not matter, or save the model "
                                  "again with channels=3 if it was trained on colour.")
        return with_channels(image, self.channels)

    def predict(self, path: str | Path) -> Prediction:
        """Classify one image file, as a factory line would: any size, read and resized as in training."""
        return self.predict_array(read_image(path), source=path)
