"""Image data: the ELPV splits, preprocessing, and clear messages for a learner's own folder."""

import numpy as np
import pytest
import torch
from PIL import Image

from course_utils.vision import (ImageInputError, check_folder, elpv_file, elpv_splits, few_labels, load_elpv,
                                 load_folder, paper_split, read_image, resize, to_input)


def test_elpv_counts_and_splits():
    cells = load_elpv()
    assert cells.images.shape == (2624, 300, 300) and cells.images.dtype == np.uint8
    assert cells.labels.sum() == 821 and set(cells.cell_type) == {"mono", "poly"}
    splits = elpv_splits(cells.labels)
    assert {k: len(v) for k, v in splits.items()} == {"train": 800, "val": 200, "test": 656}
    assert not set(splits["train"]) & set(splits["test"]) and not set(splits["val"]) & set(splits["test"])
    assert abs(cells.labels[splits["train"]].mean() - cells.labels.mean()) < 0.01  # stratified
    other = elpv_splits(cells.labels, seed=1)
    assert (other["test"] == splits["test"]).all() and (other["val"] == splits["val"]).all()
    assert not (other["train"] == splits["train"]).all()
    paper = paper_split(cells.labels)
    assert len(paper["train"]) == 1968 and (paper["test"] == splits["test"]).all()
    assert (np.asarray(Image.open(elpv_file(7)).convert("L")) == cells.images[7]).all()  # files in load_elpv's order


def test_few_labels_is_balanced_and_seeded():
    labels = np.repeat([0, 1, 2], 50)
    picks = few_labels(labels, 5, seed=0)
    assert np.bincount(labels[picks]).tolist() == [5, 5, 5]
    assert (picks == few_labels(labels, 5, seed=0)).all() and not (picks == few_labels(labels, 5, seed=1)).all()


def test_to_input_shapes_and_errors():
    grey = np.zeros((2, 40, 40), np.uint8)
    assert to_input(grey, 32).shape == (2, 3, 32, 32)
    assert to_input(np.zeros((1, 40, 40, 3), np.uint8), 40).shape == (1, 3, 40, 40)
    with pytest.raises(ImageInputError, match="uint8"):
        to_input(grey.astype(np.float32), 32)
    with pytest.raises(ImageInputError, match=r"\(N, H, W\) or \(N, H, W, 3\)"):
        to_input(np.zeros((2, 40, 40, 4), np.uint8), 32)
    assert resize(np.full((1, 40, 40), 200, np.uint8), 20).tolist() == np.full((1, 20, 20), 200).tolist()
    assert torch.allclose(to_input(np.full((1, 8, 8), 255, np.uint8), 8)[0, 0], torch.tensor((1 - 0.485) / 0.229))


def make_folder(root, classes=("bad", "good"), n=3):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((40, 48), 40 * i, np.uint8)).save(root / c / f"{i}.png")
    return root


def test_load_folder(tmp_path):
    images, labels, classes = load_folder(make_folder(tmp_path / "cells"), size=16)
    assert images.shape == (6, 16, 16) and labels.tolist() == [0, 0, 0, 1, 1, 1] and classes == ["bad", "good"]


def test_folder_typo_suggests_the_near_name(tmp_path):
    make_folder(tmp_path / "my_cells")
    with pytest.raises(ImageInputError, match=r"No folder at .*my_cell\. Did you mean .*my_cells\?"):
        load_folder(tmp_path / "my_cell")


def test_folder_problems_get_one_line(tmp_path):
    root = make_folder(tmp_path / "cells", classes=("good",))
    with pytest.raises(ImageInputError, match="needs one sub-folder per class"):
        check_folder(root)
    (root / "bad").mkdir()
    with pytest.raises(ImageInputError, match="bad has no images"):
        check_folder(root)
    (root / "bad" / "notes.png").write_text("not an image")
    with pytest.raises(ImageInputError, match="notes.png is not an image"):
        load_folder(root)
    with pytest.raises(ImageInputError, match="No image file at"):
        read_image(tmp_path / "missing.png", 16)


def test_error_renders_as_one_line_in_jupyter():
    err = ImageInputError("No folder at x.")
    assert err._render_traceback_() == ["ImageInputError: No folder at x."]


def test_resize_in_batches_matches_one_pass():
    import torch.nn.functional as F

    images = np.random.default_rng(0).integers(0, 256, (7, 30, 30), dtype=np.uint8)
    x = F.interpolate(torch.as_tensor(images).unsqueeze(1).float(), size=(12, 12), mode="bilinear",
                      antialias=True, align_corners=False)
    one_pass = x.round().clamp(0, 255).to(torch.uint8).squeeze(1).numpy()
    assert (resize(images, 12, batch_size=3) == one_pass).all()


def test_read_image_keeps_the_size_unless_asked(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((40, 50, 3), 200, np.uint8)).save(tmp_path / "colour.png")
    assert read_image(tmp_path / "colour.png").shape == (40, 50, 3)  # as stored; channels= asks for grey or colour
    assert read_image(tmp_path / "colour.png", 16).shape == (16, 16, 3)
    assert read_image(tmp_path / "colour.png", 16, channels=1).shape == (16, 16)
