"""Images as cameras, phones and editors store them; folders as people organise them; a shipped model's settings."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from course_utils.errors import SettingError
from course_utils.models import load_mobilenet_v2
from course_utils.ship import ImageClassifier, save_classifier
from course_utils.vision import (ImageInputError, check_folder, folder_files, load_folder, read_image, resize_image,
                                 to_input, write_photo_folder)

CLASSES = ["functional", "defective"]
EXIF_ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return load_mobilenet_v2(num_classes=2).eval()


def ship(model, folder, **settings):
    """A freshly loaded shipped classifier (64 px input, 80 px load size)."""
    settings = {"channels": 1, **settings} if "images" not in settings else settings
    return ImageClassifier.load(save_classifier(model, folder, 64, CLASSES, load_size=80, **settings))


def texture(seed, shape):
    """A smooth uint8 pattern (JPEG keeps it well), grey (H, W) or colour (H, W, 3)."""
    small = np.random.default_rng(seed).integers(0, 256, (6, 6, *shape[2:]), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize(shape[1::-1], Image.BICUBIC))


# 1. Whether an image is grey or colour follows the model, not a guess from the file.

def test_a_colour_model_takes_grey_files_and_grey_looking_photos(model, tmp_path):
    grey = texture(0, (70, 90))
    Image.fromarray(grey).save(tmp_path / "grey.png")  # stored grey (mode L)
    Image.fromarray(np.dstack([grey] * 3)).save(tmp_path / "grey-looking.jpg", quality=95)  # RGB, equal channels
    colour = ship(model, tmp_path / "c", channels=3)
    three = np.dstack([grey] * 3)
    assert colour.predict(tmp_path / "grey.png") == colour.predict_array(three)  # grey -> three equal channels
    assert colour.predict_array(grey) == colour.predict_array(three)
    stored = np.asarray(Image.open(tmp_path / "grey-looking.jpg").convert("RGB"))
    assert colour.predict(tmp_path / "grey-looking.jpg") == colour.predict_array(stored)  # kept as stored, not refused


def test_a_colour_model_serves_every_image_it_was_trained_on(model, tmp_path):
    root = tmp_path / "photos"
    for name, tint in (("blue", (60, 90, 200)), ("red", (210, 70, 60))):
        (root / name).mkdir(parents=True)
        for i in range(3):
            pixels = (texture(i, (60, 60, 3)) * 0.3 + np.array(tint) * 0.7).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.jpg", quality=95)
    Image.fromarray(np.dstack([texture(9, (60, 60))] * 3)).save(root / "red" / "grey-looking.jpg", quality=95)
    images, _, classes = load_folder(root, size=80)
    assert images.ndim == 4
    shipped = ImageClassifier.load(save_classifier(model, tmp_path / "m", 64, classes, load_size=80, images=images))
    assert shipped.channels == 3  # read from the training images' shape: not saved as grey by default
    with torch.no_grad():
        here = torch.softmax(model(to_input(images, 64)), 1).numpy()
    served = np.array([list(shipped.predict(p).probabilities.values()) for p in folder_files(root)[0]])
    assert np.abs(served - here).max() < 1e-5  # the grey-looking training photo too


def test_a_grey_model_refuses_colour_in_one_line_and_takes_grey_saved_in_colour(model, tmp_path):
    Image.fromarray(np.full((60, 60, 3), (200, 30, 30), np.uint8)).save(tmp_path / "red.png")
    grey = texture(1, (60, 60))
    Image.fromarray(np.dstack([grey] * 3)).save(tmp_path / "grey-as-rgb.png")
    shipped = ship(model, tmp_path / "g")
    with pytest.raises(ImageInputError) as error:
        shipped.predict(tmp_path / "red.png")
    message = str(error.value)
    assert "\n" not in message and "red.png: Expected a grey image (H, W), got a colour one (60, 60, 3)" in message
    assert "refused, not converted" in message and "read_image(path, channels=1)" in message
    assert "save the model again with channels=3" in message
    assert shipped.predict(tmp_path / "grey-as-rgb.png") == shipped.predict_array(grey)
    assert read_image(tmp_path / "red.png", channels=1).shape == (60, 60)  # the conversion the message names


def test_a_colour_model_saved_as_grey_is_caught_when_saved(model, tmp_path):
    colour = np.zeros((4, 80, 80, 3), np.uint8)
    with pytest.raises(SettingError, match=r"channels is 1, but the training images are colour \(4, 80, 80, 3\): "
                                           r"pass channels=3"):
        save_classifier(model, tmp_path / "m", 64, CLASSES, channels=1, images=colour)
    assert not (tmp_path / "m").exists()  # nothing written
    config = json.loads((save_classifier(model, tmp_path / "g", 64, CLASSES, images=colour[..., 0])
                         / "config.json").read_text())
    assert config["channels"] == 1
    with pytest.raises(SettingError, match=r"images are shaped \(4, 3, 80, 80\)"):
        save_classifier(model, tmp_path / "t", 64, CLASSES, images=torch.zeros(4, 3, 80, 80))
    one_channel = load_mobilenet_v2(num_classes=2)
    one_channel.features[0][0] = nn.Conv2d(1, 32, 3, 2, 1, bias=False)
    with pytest.raises(SettingError, match="first convolution takes 1 channel"):
        save_classifier(one_channel, tmp_path / "one", 64, CLASSES, channels=1)


# 1. Orientation and transparency: read as a viewer shows the file.

def test_exif_orientation_is_applied_everywhere_a_file_is_read(model, tmp_path):
    upright = texture(2, (48, 80, 3))  # 48 high, 80 wide
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # "turn 90 degrees clockwise to view", as phones write it
    Image.fromarray(np.rot90(upright)).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    stored = np.asarray(Image.open(tmp_path / "phone.jpg").convert("RGB"))  # decoded, not turned: 80 high
    shown = np.rot90(stored, -1)  # what a viewer shows
    assert stored.shape == (80, 48, 3) and np.abs(shown.astype(int) - upright).mean() < 3
    assert (read_image(tmp_path / "phone.jpg") == shown).all()
    root = tmp_path / "folder"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        (root / name / "phone.jpg").write_bytes((tmp_path / "phone.jpg").read_bytes())
    images, _, _ = load_folder(root, size=40)
    assert (images[0] == resize_image(np.ascontiguousarray(shown), 40)).all()
    shipped = ship(model, tmp_path / "c", channels=3)
    assert shipped.predict(tmp_path / "phone.jpg") == shipped.predict_array(np.ascontiguousarray(shown))
    assert shipped.predict(tmp_path / "phone.jpg") != shipped.predict_array(stored)


def over_white(rgb, alpha):
    """What a viewer shows: each pixel blended over a white page by its alpha."""
    a = alpha[..., None] / 255 if rgb.ndim == 3 else alpha / 255
    return rgb * a + 255 * (1 - a)


def test_transparent_pixels_show_white_not_the_colour_stored_under_them(tmp_path):
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[:, :30] = (20, 60, 200, 255)  # opaque blue
    rgba[:, 30:] = (255, 0, 0, 0)  # fully transparent, red underneath (what editors leave behind)
    rgba[:10, :30, 3] = 128  # half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cutout.png")
    image = read_image(tmp_path / "cutout.png")
    assert image.shape == (40, 60, 3) and (image[:, 30:] == 255).all()
    assert np.abs(image.astype(float) - over_white(rgba[..., :3].astype(float), rgba[..., 3])).max() <= 1

    grey_alpha = np.stack([np.full((40, 40), 50, np.uint8), np.tile(np.linspace(0, 255, 40).astype(np.uint8),
                                                                    (40, 1))], axis=-1)
    Image.fromarray(grey_alpha, "LA").save(tmp_path / "grey-alpha.png")
    image = read_image(tmp_path / "grey-alpha.png")
    assert image.shape == (40, 40) and image[0, 0] == 255 and image[0, -1] == 50  # grey stays grey
    assert np.abs(image.astype(float) - over_white(grey_alpha[..., 0], grey_alpha[..., 1])).max() <= 1


def test_palette_pngs_read_as_they_look(tmp_path):
    palette = [255, 0, 0, 0, 128, 0, 10, 20, 30]
    index = np.tile(np.arange(3).repeat(20), (40, 1)).astype(np.uint8)  # three bands: red, green, dark
    img = Image.fromarray(index, "P")
    img.putpalette(palette)
    img.save(tmp_path / "plain.png")
    img.save(tmp_path / "clear.png", transparency=2)  # index 2 is transparent
    colours = np.array(palette).reshape(3, 3)[index]
    assert (read_image(tmp_path / "plain.png") == colours).all()
    clear = read_image(tmp_path / "clear.png")
    assert (clear[:, :40] == colours[:, :40]).all() and (clear[:, 40:] == 255).all()
    root = tmp_path / "folder"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        (root / name / "clear.png").write_bytes((tmp_path / "clear.png").read_bytes())
    assert (load_folder(root, size=40)[0][0][:, 40:] == 255).all()


# 2. Folders as people organise them.

def grey_png(path, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 40), value, np.uint8)).save(path)


def test_images_in_sub_folders_belong_to_their_class(tmp_path, capsys):
    root = tmp_path / "boards"
    grey_png(root / "cracked" / "a.png", 10)
    grey_png(root / "cracked" / "batch2" / "b.png", 20)
    grey_png(root / "cracked" / "batch2" / "late" / "c.png", 30)
    grey_png(root / "intact" / "batch1" / "d.png", 40)  # every image of this class is in a sub-folder
    grey_png(root / "intact" / "batch1" / "e.png", 50)
    for junk in (".DS_Store", "Thumbs.db", "._b.png"):
        (root / "cracked" / "batch2" / junk).write_bytes(b"\0\1")
    grey_png(root / "intact" / ".thumbnails" / "d.png")  # a hidden folder: a viewer's cache, not data
    grey_png(root / "stray.png")  # outside any class folder
    assert check_folder(root) == ["cracked", "intact"]
    paths, labels, classes = folder_files(root)
    assert [p.relative_to(root).as_posix() for p in paths] == [
        "cracked/a.png", "cracked/batch2/b.png", "cracked/batch2/late/c.png", "intact/batch1/d.png",
        "intact/batch1/e.png"] and labels.tolist() == [0, 0, 0, 1, 1]
    images, labels, _ = load_folder(root, size=32)
    assert images[:, 0, 0].tolist() == [10, 20, 30, 40, 50] and labels.tolist() == [0, 0, 0, 1, 1]
    summary = capsys.readouterr().out
    assert summary.count("\n") == 1 and "(cracked 3, intact 2), grey, 32x32" in summary
    assert "4 of them from sub-folders of the class folders" in summary
    assert "left out 1 image(s) outside the class folders (stray.png)" in summary


def test_no_advice_to_remove_a_folder_that_holds_images(tmp_path):
    root = tmp_path / "boards"
    grey_png(root / "good" / "a.png")
    grey_png(root / "bad" / ".hidden" / "b.png")
    with pytest.raises(ImageInputError) as error:
        check_folder(root)
    assert "has images only in hidden folders" in str(error.value) and "remove the folder" not in str(error.value)
    (root / "bad" / ".hidden" / "b.png").unlink()
    (root / "bad" / "._b.png").write_bytes(b"\0\5\26\7")  # macOS AppleDouble: named like an image, is not one
    with pytest.raises(ImageInputError, match="bad has no images .*: add some, or remove the folder"):
        check_folder(root)  # truly empty: the advice stays as lesson 03 shows it
    (root / "bad" / "batch2").mkdir()
    (root / "bad" / "batch2" / "notes.txt").write_text("batch 2")
    grey_png(root / "bad" / "batch2" / "b.png")
    with pytest.raises(ImageInputError, match=r"1 file\(s\) in .*boards are not images: bad/batch2/notes.txt\."):
        load_folder(root)  # other files in sub-folders are named, as at the top level


def test_lesson_folders_load_the_same_arrays(tmp_path):
    cells = tmp_path / "my_cells"
    rng = np.random.default_rng(0)
    for name in ("defective", "functional"):
        (cells / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (300, 300), dtype=np.uint8)).save(cells / name / f"cell{i:04d}.png")
    photos = write_photo_folder(tmp_path / "my_photos", per_class=3)
    for root, mode in ((cells, "L"), (photos, "RGB")):
        images = load_folder(root, size=96)[0]
        before = [resize_image(np.asarray(Image.open(p).convert(mode)), 96) for p in folder_files(root)[0]]
        assert (images == np.stack(before)).all()  # what load_folder gave these lessons' folders before


# 4. A shipped model's settings are checked when it loads.

BAD_FIELDS = [
    ("architecture", "resnet18", r'architecture is "resnet18"; it must be "mobilenet_v2"'),
    ("class_names", ["functional", "functional"], r'class_names is \["functional", "functional"\]; it must be a '
                                                  "list of two or more different, non-empty names"),
    ("class_names", ["functional", ""], r'class_names is \["functional", ""\]; it must be'),
    ("class_names", ["functional", 7], r'class_names is \["functional", 7\]; it must be'),
    ("class_names", "functional,defective", r'class_names is "functional,defective"; it must be a list'),
    ("channels", 2, r"channels is 2; it must be 1 \(grey\) or 3 \(colour\)"),
    ("channels", "3", r'channels is "3"; it must be 1 \(grey\) or 3 \(colour\)'),
    ("load_size", 0, r"load_size is 0; it must be a positive whole number of pixels"),
    ("load_size", 300.5, r"load_size is 300.5; it must be a positive whole number"),
    ("input_size", -64, r"input_size is -64; it must be a positive whole number"),
    ("input_size", True, r"input_size is true; it must be a positive whole number"),
    ("weights_sha256", "abc", r'weights_sha256 is "abc"; it must be the weights\' sha256: 64 hexadecimal digits'),
    ("threshold", 1.5, r"threshold is 1.5; a threshold needs two classes and a value between 0 and 1, or null"),
    ("threshold", "0.5", r'threshold is "0.5"; a threshold needs'),
    ("temperature", 0, r"temperature is 0; it divides the logits, so it must be a positive number"),
    ("temperature", "hot", r'temperature is "hot"; it divides the logits'),
]


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    folder = save_classifier(model, tmp_path_factory.mktemp("ship") / "inspector", 64, CLASSES, load_size=80, channels=1)
    return folder, json.loads((folder / "config.json").read_text())


@pytest.mark.parametrize("field, value, message", BAD_FIELDS, ids=lambda v: str(v)[:20])
def test_each_config_field_is_checked_at_load(saved, field, value, message):
    folder, config = saved
    (folder / "config.json").write_text(json.dumps({**config, field: value}))
    try:
        with pytest.raises(SettingError, match=r"config\.json: " + message) as error:
            ImageClassifier.load(folder)
        assert "\n" not in str(error.value)
    finally:
        (folder / "config.json").write_text(json.dumps(config))


def test_a_threshold_needs_two_classes_and_may_be_0_or_1(model, saved, tmp_path):
    folder, config = saved
    for edge in (0, 1):
        (folder / "config.json").write_text(json.dumps({**config, "threshold": edge}))
        assert ImageClassifier.load(folder).threshold == edge  # inside [0, 1]
    (folder / "config.json").write_text(json.dumps(config))
    three = save_classifier(load_mobilenet_v2(num_classes=3), tmp_path / "three", 64, ["a", "b", "c"], channels=1)
    config3 = json.loads((three / "config.json").read_text())
    (three / "config.json").write_text(json.dumps({**config3, "threshold": 0.3}))
    with pytest.raises(SettingError, match="threshold is 0.3, but class_names has 3 classes"):
        ImageClassifier.load(three)


def test_class_names_must_match_the_weights_outputs(saved):
    folder, config = saved
    (folder / "config.json").write_text(json.dumps({**config, "class_names": ["a", "b", "c"]}))
    try:
        with pytest.raises(ImageInputError, match=r'config.json: class_names \["a", "b", "c"\] names 3 classes, '
                                                  "but the weights have a head for 2"):
            ImageClassifier.load(folder)
    finally:
        (folder / "config.json").write_text(json.dumps(config))


def test_save_refuses_what_load_would_refuse(model, tmp_path):
    for settings, message in (({"class_names": ["a", "a"]}, "save_classifier: class_names is"),
                              ({"class_names": ["a", "b", "c"]}, "names 3 classes, but the weights have a head for 2"),
                              ({"size": 0}, "save_classifier: input_size is 0"),
                              ({"channels": 2}, "save_classifier: channels is 2")):
        settings = {"size": 64, "class_names": CLASSES, "channels": 1, **settings}
        with pytest.raises(ValueError, match=message):
            save_classifier(model, tmp_path / "m", **settings)
        assert not (tmp_path / "m").exists()


def test_a_folder_from_an_earlier_version_says_how_to_save_it_again(model, saved, tmp_path):
    folder, _ = saved
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    (earlier / "config.json").write_text(json.dumps({  # what save_classifier wrote before weights_sha256
        "architecture": "mobilenet_v2", "input_size": 96, "input": "grey, any size; resized to input_size",
        "normalisation": "ImageNet mean and std, grey copied to 3 channels", "class_names": CLASSES}))
    with pytest.raises(ImageInputError) as error:
        ImageClassifier.load(earlier)
    message = str(error.value)
    assert "\n" not in message and "written by an earlier version of the course" in message
    assert "no weights_sha256" in message
    assert 'save_classifier(model, folder, size=96, class_names=["functional", "defective"], load_size=96)' in message


def test_a_model_is_never_saved_as_grey_by_default(model, tmp_path):
    """Neither channels nor the training images: refused before anything is written, not guessed as grey."""
    with pytest.raises(ValueError, match="channels=1 \\(grey\\) or channels=3"):
        save_classifier(model, tmp_path / "m", 64, CLASSES)
    assert not (tmp_path / "m").exists()
