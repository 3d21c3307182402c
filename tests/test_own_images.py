"""A learner's own images: many classes, colour, awkward files, and a shipped model that matches the notebook."""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from course_utils.features import pooled_features
from course_utils.models import load_mobilenet_v2
from course_utils.ship import ImageClassifier, save_classifier
from course_utils.train import class_weights, evaluate, feature_loader, fit, scores
from course_utils.viz import plot_history
from course_utils.vision import (ImageInputError, elpv_splits, load_folder, read_image, split_indices, to_input,
                                 write_photo_folder)

TINTS = {"blue": (60, 90, 200), "green": (70, 190, 80), "red": (210, 70, 60)}  # classes that differ by colour
LOAD_SIZE, INPUT_SIZE = 72, 64


def photo(rng, tint, side):
    """A colour image: a smooth random texture tinted with ``tint``, ``side`` pixels square."""
    texture = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).resize((side, side), Image.BICUBIC)
    shade = np.asarray(texture, np.float32)[..., None] / 255
    return (0.5 + shade / 2) * np.array(tint, np.float32) * 0.9


def colour_folder(root, per_class=16, seed=0):
    """Three colour classes of images of assorted sizes, plus the files a real folder collects."""
    rng = np.random.default_rng(seed)
    for name, tint in TINTS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            side = int(rng.integers(40, 140))
            pixels = photo(rng, tint, side).clip(0, 255).astype(np.uint8)
            if i == 0:  # a PNG with an alpha channel
                Image.fromarray(pixels).convert("RGBA").save(root / name / f"{name}{i:02d}.png")
            else:
                Image.fromarray(pixels).save(root / name / f"{name}{i:02d}.jpg", quality=92)
        (root / name / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        (root / name / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
        (root / name / f"._{name}00.jpg").write_bytes(b"\0\5\26\7")  # macOS AppleDouble: looks like a jpg, is not
    return root


def test_own_colour_folder_end_to_end(tmp_path):
    root = colour_folder(tmp_path / "boards")
    images, labels, classes = load_folder(root, size=LOAD_SIZE)
    assert classes == ["blue", "green", "red"] and images.shape == (48, LOAD_SIZE, LOAD_SIZE, 3)
    assert np.bincount(labels).tolist() == [16, 16, 16]  # the junk files were skipped
    splits = split_indices(labels, val=12, test=0.25, seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"train": 24, "val": 12, "test": 12}
    assert all(np.bincount(labels[v]).tolist() == [len(v) // 3] * 3 for v in splits.values())  # stratified

    torch.manual_seed(0)
    model = load_mobilenet_v2(num_classes=3).eval()
    features = pooled_features(model, images, INPUT_SIZE)["features"]
    loaders = {k: feature_loader(features[v], labels[v], batch_size=8, train=k == "train") for k, v in splits.items()}
    weights = class_weights(labels[splits["train"]])
    assert weights.shape == (3,)
    history = fit(model.classifier, loaders["train"], loaders["val"], torch.optim.AdamW(model.classifier.parameters(),
                  lr=3e-3), num_epochs=15, loss_fn=nn.CrossEntropyLoss(weight=weights), progress=False)
    assert {"accuracy", "balanced_accuracy", "macro_f1"} <= set(history[0]) and "f1" not in history[0]
    test = evaluate(model.classifier, loaders["test"])
    assert test["balanced_accuracy"] >= 0.9, test  # colour tells these classes apart
    plt.close(plot_history(history))

    folder = save_classifier(model, tmp_path / "shipped", INPUT_SIZE, classes, load_size=LOAD_SIZE, channels=3)
    config = json.loads((folder / "config.json").read_text())
    assert config["channels"] == 3 and config["load_size"] == LOAD_SIZE and len(config["weights_sha256"]) == 64
    shipped = ImageClassifier.load(folder)
    with torch.no_grad():
        in_memory = torch.softmax(model(to_input(images, INPUT_SIZE)), dim=1).numpy()
    files = [p for c in classes for p in sorted((root / c).iterdir()) if p.suffix in (".jpg", ".png")
             and not p.name.startswith(".")]
    sizes = {Image.open(p).size[0] for p in files}
    assert len(sizes) > 10  # files of many sizes, other than the load size
    served = np.array([list(shipped.predict(p).probabilities.values()) for p in files])
    assert (served.argmax(1) == in_memory.argmax(1)).all()  # no train/serve skew
    assert np.abs(served - in_memory).max() < 1e-4


def test_scores_and_weights_for_any_number_of_classes():
    three = scores(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2]))
    assert set(three) == {"accuracy", "balanced_accuracy", "macro_f1"} and three["accuracy"] == 0.75
    two = scores(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]))
    assert set(two) == {"accuracy", "balanced_accuracy", "f1"}  # binary: the F1 of class 1, as lessons 03-05 use
    weights = class_weights(np.array([0] * 6 + [1] * 3 + [2] * 1))
    assert weights.tolist() == pytest.approx([10 / 18, 10 / 9, 10 / 3])  # n / (classes * count)
    counts = np.bincount(np.array([0] * 6 + [1] * 3))
    assert class_weights(np.array([0] * 6 + [1] * 3)).tolist() == pytest.approx((counts.sum() / (2 * counts)).tolist())
    with pytest.raises(ValueError, match="Class 1 has no training examples"):
        class_weights(np.array([0, 0, 2]))


def test_plot_history_without_validation():
    fig = plot_history([{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.5}])
    assert len(fig.axes) == 1 and "no validation set" in fig.axes[0].get_title()
    plt.close(fig)


def test_split_helper_and_elpv_splits_say_what_they_are_for():
    labels = np.repeat([0, 1, 2], [10, 20, 30])
    splits = split_indices(labels)
    assert {k: len(v) for k, v in splits.items()} == {"train": 36, "val": 12, "test": 12}
    assert len(set(np.concatenate(list(splits.values())))) == 60
    assert (split_indices(labels, seed=1)["test"] != splits["test"]).any()
    with pytest.raises(ImageInputError, match="at least 3 images"):
        split_indices(np.array([0, 0, 0, 1, 1]))
    with pytest.raises(ImageInputError, match="for your own images use split_indices"):
        elpv_splits(labels)


def test_colour_is_kept_and_grey_stays_grey(tmp_path):
    Image.fromarray(np.full((40, 50, 3), (200, 30, 30), np.uint8)).save(tmp_path / "red.png")
    Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(tmp_path / "grey-as-rgb.png")
    assert read_image(tmp_path / "red.png").shape == (40, 50, 3)
    assert read_image(tmp_path / "grey-as-rgb.png").shape == (40, 50, 3)  # as stored: the model decides, not a guess
    assert read_image(tmp_path / "grey-as-rgb.png", channels=1).shape == (40, 50)
    assert read_image(tmp_path / "red.png", 32).shape == (32, 32, 3)


def test_sixteen_bit_png_matches_its_eight_bit_twin(tmp_path):
    eight = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)
    Image.fromarray(eight).save(tmp_path / "eight.png")
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    assert Image.open(tmp_path / "sixteen.png").mode.startswith("I;16")
    assert (read_image(tmp_path / "sixteen.png") == eight).all()  # not all white
    model = load_mobilenet_v2(num_classes=2).eval()
    shipped = ImageClassifier.load(save_classifier(model, tmp_path / "m", 64, ["a", "b"], load_size=48, channels=1))
    assert shipped.predict(tmp_path / "sixteen.png") == shipped.predict(tmp_path / "eight.png")


def test_bad_files_get_one_line_naming_the_file(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tmp_path / "dot.png")
    with pytest.raises(ImageInputError, match=r"dot.png is 1x1 pixels, below the 32-pixel minimum"):
        read_image(tmp_path / "dot.png", 64)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), np.uint8)).save(tmp_path / "full.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:3000])
    with pytest.raises(ImageInputError, match=r"cut.jpg is truncated or damaged .*copy or export it again"):
        read_image(tmp_path / "cut.jpg")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageInputError, match="notes.png is not an image Pillow can read"):
        read_image(tmp_path / "notes.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a huge image, scaled down: 40,000 > 2 x 1,000 pixels
    with pytest.raises(ImageInputError, match=r"full.jpg has more than 0 megapixels.*shrink it first"):
        read_image(tmp_path / "full.jpg")


def test_a_tiny_image_is_refused_in_a_training_folder(tmp_path):
    root = colour_folder(tmp_path / "boards", per_class=3)
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(root / "red" / "speck.png")
    with pytest.raises(ImageInputError, match="speck.png is 1x1 pixels"):
        load_folder(root, size=64)


def test_other_files_in_a_class_folder_are_listed(tmp_path):
    root = colour_folder(tmp_path / "boards", per_class=3)
    (root / "red" / "notes.txt").write_text("batch 7")
    (root / "green" / "labels.csv").write_text("a,b")
    with pytest.raises(ImageInputError, match=r"2 file\(s\) in .*boards are not images: green/labels.csv, "
                                              r"red/notes.txt\. Move them out"):
        load_folder(root)


def shipped_folder(tmp_path, channels=1):
    model = load_mobilenet_v2(num_classes=2).eval()
    return save_classifier(model, tmp_path / "inspector", 64, ["functional", "defective"], load_size=80,
                           channels=channels)


def test_damaged_shipped_model_files_get_one_line(tmp_path):
    folder = shipped_folder(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    weights = (folder / "model.safetensors").read_bytes()

    flipped = bytearray(weights)
    flipped[len(flipped) // 2] ^= 0x01  # one flipped bit in the weights
    (folder / "model.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(ImageInputError, match="model.safetensors does not match the sha256 in config.json"):
        ImageClassifier.load(folder)

    import hashlib

    cut = weights[:len(weights) // 3]  # truncated, and config.json updated to match: the file itself is damaged
    (folder / "model.safetensors").write_bytes(cut)
    (folder / "config.json").write_text(json.dumps({**config, "weights_sha256": hashlib.sha256(cut).hexdigest()}))
    with pytest.raises(ImageInputError, match=r"model.safetensors is damaged .*copy the folder again"):
        ImageClassifier.load(folder)
    (folder / "model.safetensors").write_bytes(weights)

    (folder / "config.json").write_text(json.dumps(config)[:-20])
    with pytest.raises(ImageInputError, match=r"config.json is not valid JSON \(line 1\)"):
        ImageClassifier.load(folder)
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "input_size"}))
    with pytest.raises(ImageInputError, match="config.json lacks input_size"):
        ImageClassifier.load(folder)
    (folder / "config.json").write_text(json.dumps({**config, "class_names": ["a", "b", "c"]}))
    with pytest.raises(ImageInputError, match="names 3 classes, but the weights have a head for 2"):
        ImageClassifier.load(folder)
    (folder / "config.json").write_text(json.dumps(config))
    assert ImageClassifier.load(folder).class_names == ["functional", "defective"]


def test_a_grey_model_refuses_colour_and_a_colour_model_takes_grey(tmp_path):
    Image.fromarray(np.full((60, 60, 3), (200, 30, 30), np.uint8)).save(tmp_path / "red.png")
    Image.fromarray(np.full((60, 60), 90, np.uint8)).save(tmp_path / "grey.png")
    grey_model = ImageClassifier.load(shipped_folder(tmp_path / "g", channels=1))
    with pytest.raises(ImageInputError, match=r"red.png: Expected a grey image \(H, W\), got a colour one .*trained on grey images; give it grey"):
        grey_model.predict(tmp_path / "red.png")
    colour_model = ImageClassifier.load(shipped_folder(tmp_path / "c", channels=3))
    assert colour_model.predict(tmp_path / "grey.png") == colour_model.predict_array(np.full((60, 60, 3), 90, np.uint8))
    assert colour_model.predict(tmp_path / "red.png").label in ("functional", "defective")


def test_the_practice_folder_is_three_colour_classes(tmp_path):
    root = write_photo_folder(tmp_path / "photos", per_class=4)
    images, labels, classes = load_folder(root, size=96)
    assert classes == ["flower", "portrait", "temple"] and images.shape == (12, 96, 96, 3)
    before = sorted(p.stat().st_mtime_ns for p in root.rglob("*.jpg"))
    write_photo_folder(root, per_class=4)  # already there: kept
    assert sorted(p.stat().st_mtime_ns for p in root.rglob("*.jpg")) == before


def test_colour_images_train_end_to_end_with_augmentation():
    from course_utils.train import image_loader
    from course_utils.vision import resize

    colour = np.random.default_rng(0).integers(0, 256, (6, 40, 40, 3), dtype=np.uint8)
    small = resize(colour, 32)
    assert small.shape == (6, 32, 32, 3) and small.dtype == np.uint8
    x, y = next(iter(image_loader(small, np.arange(6) % 3, batch_size=4, train=True)))
    assert x.shape == (4, 3, 32, 32) and len(y) == 4
    assert not torch.allclose(x[:, 0], x[:, 1])  # the channels stay apart: colour is not collapsed to grey
