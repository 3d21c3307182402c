"""The shipped model round-trips through save, load and predict; bad input gets one clear line."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from course_utils.models import load_mobilenet_v2
from course_utils.ship import ImageClassifier, save_classifier
from course_utils.errors import SettingError
from course_utils.vision import ImageInputError, resize_image, to_input

CLASSES = ["functional", "defective"]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    torch.manual_seed(0)
    model = load_mobilenet_v2(num_classes=2).eval()
    folder = save_classifier(model, tmp_path_factory.mktemp("ship") / "inspector", size=96, class_names=CLASSES, channels=1)
    return model, folder


def test_round_trip_gives_the_same_probabilities(shipped, tmp_path):
    model, folder = shipped
    image = np.random.default_rng(0).integers(0, 255, (120, 120), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "cell.png")
    loaded = ImageClassifier.load(folder)  # a fresh object, weights from safetensors
    prediction = loaded.predict(tmp_path / "cell.png")
    with torch.no_grad():
        # the training path: images at load_folder's 300 px (resize_image), then to_input at the model's size
        expected = torch.softmax(model(to_input(resize_image(image, 300)[None], 96)), dim=1)[0]
    assert prediction.probabilities == pytest.approx(dict(zip(CLASSES, expected.tolist())), abs=1e-5)
    assert prediction.label == CLASSES[int(expected.argmax())]
    Image.fromarray(image).convert("RGB").save(tmp_path / "colour.jpg", quality=100)
    assert loaded.predict(tmp_path / "colour.jpg").label in CLASSES  # a grey picture saved in colour is grey


def test_bad_input_messages(shipped, tmp_path):
    _, folder = shipped
    loaded = ImageClassifier.load(folder)
    with pytest.raises(ImageInputError, match="No image file at .*nope.png"):
        loaded.predict(tmp_path / "nope.png")
    with pytest.raises(ImageInputError, match=r"Expected a grey image \(H, W\), got a colour one"):
        loaded.predict_array(np.stack([np.zeros((64, 64), np.uint8), np.full((64, 64), 255, np.uint8),
                                       np.zeros((64, 64), np.uint8)], axis=-1))
    with pytest.raises(ImageInputError, match="too small to inspect"):
        loaded.predict_array(np.zeros((8, 8), np.uint8))
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageInputError, match="is not an image Pillow can read"):
        loaded.predict(tmp_path / "notes.png")
    with pytest.raises(ImageInputError, match="is not a saved classifier"):
        ImageClassifier.load(tmp_path)


def test_the_operating_point_travels_in_the_config(shipped, tmp_path):
    model, _ = shipped
    image = np.random.default_rng(1).integers(0, 255, (120, 120), dtype=np.uint8)
    plain = ImageClassifier.load(save_classifier(model, tmp_path / "plain", size=96, class_names=CLASSES, channels=1))
    p = plain.predict_array(image).probabilities["defective"]
    for threshold, label in [(p * 0.99, "defective"), (min(p * 1.01, 0.999), "functional")]:
        folder = save_classifier(model, tmp_path / f"t{threshold:.4f}", size=96, class_names=CLASSES, threshold=threshold, channels=1)
        assert json.loads((folder / "config.json").read_text())["threshold"] == threshold
        assert ImageClassifier.load(folder).predict_array(image).label == label  # the threshold decides, not arg-max
    hot = ImageClassifier.load(save_classifier(model, tmp_path / "hot", size=96, class_names=CLASSES, temperature=4.0, channels=1))
    q = hot.predict_array(image).probabilities["defective"]
    assert abs(q - 0.5) < abs(p - 0.5)  # a higher temperature pulls probabilities towards even
    with pytest.raises(SettingError, match="needs two classes and a value between 0 and 1"):
        save_classifier(model, tmp_path / "bad", size=96, class_names=CLASSES, threshold=1.5, channels=1)
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    del config["threshold"], config["temperature"]  # a folder saved before the operating point was recorded
    (tmp_path / "plain" / "config.json").write_text(json.dumps(config))
    assert ImageClassifier.load(tmp_path / "plain").predict_array(image).probabilities["defective"] == pytest.approx(p)
