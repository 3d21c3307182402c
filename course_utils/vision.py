"""Images: the solar cells (ELPV), a learner's own folder of images, and preprocessing."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from sklearn.model_selection import train_test_split

from course_utils import assets
from course_utils.assets import ASSETS, asset_path, shown
from course_utils.data import cache_key, cached_array
from course_utils.errors import ImageInputError, SettingError
from course_utils.models import IMAGENET_MEAN, IMAGENET_STD

ELPV_CLASSES = ["functional", "defective"]
ELPV_SIZE = 2624
PAPER_TEST_SIZE = 656  # Deitsch et al. 2019: 25% of the 2,624 cells, stratified
MIN_SIDE = 32  # pixels: a smaller image carries too little to classify, and upscaling it invents nothing
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
GREY_TOLERANCE = 12  # a colour file whose channels differ by at most this much shows no colour (JPEG noise)
STORED_GREY = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}  # Pillow modes of grey files


@dataclass
class SolarCells:
    """The ELPV cells: images, defect probabilities, defective labels (p >= 0.5) and cell types."""

    images: np.ndarray  # (2624, 300, 300) uint8, grey, read-only (memory-mapped)
    defect_prob: np.ndarray  # 0, 1/3, 2/3 or 1, as rated by experts
    labels: np.ndarray  # 1 = defective (p >= 0.5), 0 = functional
    cell_type: np.ndarray  # "mono" or "poly"


def load_elpv() -> SolarCells:
    """The 2,624 solar-cell images from the verified asset, decoded once and cached under data/.

    Introduced in ``02_what_networks_learn.ipynb``.
    """
    root = asset_path("elpv")
    rows = _elpv_rows(root)
    # Memory-mapped (read-only): 236 MB of pixels that the operating system can page in and out.
    images = cached_array("elpv", "images", cache_key(ASSETS["elpv"].sha256), lambda: _decode(root, rows), mmap=True)
    prob = np.array([float(p) for _, p, _ in rows])
    return SolarCells(images, prob, (prob >= 0.5).astype(np.int64), np.array([t for _, _, t in rows]))


def _decode(root: Path, rows: list[list[str]]) -> np.ndarray:
    """Decode every cell into one preallocated array (no second copy of 236 MB while stacking)."""
    images = np.empty((len(rows), 300, 300), np.uint8)
    for i, (path, _, _) in enumerate(rows):
        with Image.open(root / path) as img:
            images[i] = np.asarray(img.convert("L"))
    return images


def _elpv_rows(root: Path) -> list[list[str]]:
    """The rows of the dataset's labels.csv: image path, defect probability, cell type."""
    with open(root / "labels.csv") as f:
        return [line.split() for line in f.read().splitlines() if line.strip()]


def elpv_file(index: int) -> Path:
    """The PNG file of cell number ``index`` in the asset (the order of ``load_elpv``)."""
    root = asset_path("elpv")
    return root / _elpv_rows(root)[index][0]


def elpv_splits(labels: np.ndarray, n_train: int = 800, n_val: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """Index splits of the cells: a fixed test set of 656 (25%, drawn like Deitsch et al.'s), a fixed validation set,
    and ``n_train`` training cells drawn from the rest with ``seed``; all stratified by label.

    Introduced in ``03_replacing_the_head.ipynb``.
    """
    if len(labels) != ELPV_SIZE:
        raise ImageInputError(f"elpv_splits is for the {ELPV_SIZE:,} ELPV cells (its test set is the course's fixed "
                              f"{PAPER_TEST_SIZE} cells, drawn like the paper's), not {len(labels):,} images: for your own images use "
                              "split_indices(labels).")
    index = np.arange(len(labels))
    rest, test = train_test_split(index, test_size=PAPER_TEST_SIZE, stratify=labels, random_state=0)
    pool, val = train_test_split(rest, test_size=n_val, stratify=labels[rest], random_state=0)
    if n_train < len(pool):
        pool, _ = train_test_split(pool, train_size=n_train, stratify=labels[pool], random_state=seed)
    return {"train": np.sort(pool), "val": np.sort(val), "test": np.sort(test)}


def paper_split(labels: np.ndarray, draw: int = 0) -> dict[str, np.ndarray]:
    """A 75/25 stratified split like Deitsch et al.'s (their test cells are not published with the data, so this is
    a redraw): 1,968 training cells and 656 test cells; draw 0 has the same test cells as ``elpv_splits``, other
    draws other cells."""
    index = np.arange(len(labels))
    train, test = train_test_split(index, test_size=PAPER_TEST_SIZE, stratify=labels, random_state=draw)
    return {"train": np.sort(train), "test": np.sort(test)}


def few_labels(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of ``per_class`` examples of every class, drawn with ``seed``.

    Introduced in ``01_doctor_to_lawyer.ipynb``.
    """
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def to_input(images: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images (N, H, W) or (N, H, W, 3) -> float (N, 3, size, size), ImageNet-normalised, channels-last."""
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()  # torch wants to own writable memory
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8:
        raise ImageInputError(f"Expected uint8 pixels (0-255), got {x.dtype}: pass the images as loaded, "
                              "before any scaling.")
    if x.ndim == 3:  # grey: the same picture in all three channels
        x = x.unsqueeze(1).expand(-1, 3, -1, -1)
    elif x.ndim == 4 and x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    else:
        raise ImageInputError(f"Expected images shaped (N, H, W) or (N, H, W, 3), got {tuple(x.shape)}.")
    x = x.float().div(255)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)  # where the pixels are (a GPU tensor too)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    # channels-last memory: the same numbers, laid out as convolutions on a CPU like them (1.6x faster here)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


DIHEDRAL = [(turns, flip) for flip in (False, True) for turns in range(4)]  # the 8 flips and quarter turns


def dihedral(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    """Images (..., H, W) flipped left-right (if ``flip``) and turned by ``turns`` quarter turns."""
    return torch.rot90(x.flip(-1) if flip else x, turns, dims=(-2, -1))


def resize(images: np.ndarray, size: int, batch_size: int = 256) -> np.ndarray:
    """uint8 images (N, H, W) or (N, H, W, 3) resized once to ``size`` x ``size`` (so training never resizes again).

    Works through the images a batch at a time: a float copy of all 2,624 cells would take 1 GB.
    """
    colour = images.ndim == 4
    out = np.empty((len(images), size, size, *images.shape[3:]), np.uint8)
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.array(images[start:start + batch_size])).float()  # a writable copy
        x = x.permute(0, 3, 1, 2) if colour else x.unsqueeze(1)
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x = x.round().clamp(0, 255).to(torch.uint8)
        out[start:start + batch_size] = (x.permute(0, 2, 3, 1) if colour else x.squeeze(1)).numpy()
    return out


def split_indices(labels: np.ndarray, val: float | int = 0.2, test: float | int = 0.2,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Stratified train/validation/test indices for your own images; ``val`` and ``test`` are fractions of all
    images (0.2) or counts (50). Introduced in ``03_replacing_the_head.ipynb``.
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    if counts[counts > 0].min() < 3:
        raise ImageInputError(f"Every class needs at least 3 images for a train/validation/test split; class "
                              f"{int(np.flatnonzero(counts == counts[counts > 0].min())[0])} has "
                              f"{counts[counts > 0].min()}: add images to it.")
    n_test = test if isinstance(test, int) else round(test * len(labels))
    n_val = val if isinstance(val, int) else round(val * len(labels))
    n_classes = int((counts > 0).sum())
    if min(n_test, n_val) < n_classes or n_test + n_val > len(labels) - n_classes:
        raise ImageInputError(f"Cannot split {len(labels)} images of {n_classes} classes into {n_val} for "
                              f"validation and {n_test} for test (each needs one image per class, and so does "
                              "training): change val= and test=, or add images.")
    index = np.arange(len(labels))
    rest, test_index = train_test_split(index, test_size=n_test, stratify=labels, random_state=seed)
    train, val_index = train_test_split(rest, test_size=n_val, stratify=labels[rest], random_state=seed)
    return {"train": np.sort(train), "val": np.sort(val_index), "test": np.sort(test_index)}


def is_junk(path: Path) -> bool:
    """Not an image of the folder: a hidden file, or what a file manager leaves behind (``assets.is_junk``)."""
    return path.name.startswith(".") or assets.is_junk(path)


def class_files(folder: Path) -> list[Path]:
    """Every file under a class folder, its sub-folders included, in a fixed order; junk and hidden folders left out."""
    files = [p for p in folder.rglob("*") if p.is_file() and not _skipped(p.relative_to(folder))]
    return sorted(files, key=lambda p: p.relative_to(folder).parts)


def _skipped(relative: Path) -> bool:
    """A file a folder's reader passes over: junk (``is_junk``), or inside a hidden folder such as .thumbnails/."""
    return is_junk(relative) or any(part.startswith(".") for part in relative.parts[:-1])


def is_image_file(path: Path) -> bool:
    """Whether the file's name ends like an image the course reads (IMAGE_SUFFIXES)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def check_folder(root: str | Path) -> list[str]:
    """The class names of an image folder (one sub-folder per class), or ImageInputError saying what is wrong.

    Introduced in ``03_replacing_the_head.ipynb``.
    """
    return list(_class_folders(Path(root).expanduser()))


def _class_folders(root: Path) -> dict[str, list[Path]]:
    """Each class name with its files (sub-folders included), after checking the folder's layout."""
    if not root.is_dir():
        parent = root.parent if root.parent.is_dir() else None
        near = difflib.get_close_matches(root.name, [p.name for p in parent.iterdir()], n=1) if parent else []
        hint = f" Did you mean {shown(parent / near[0])}?" if near else " Check the spelling, or give an absolute path."
        raise ImageInputError(f"No folder at {shown(root)}.{hint}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise ImageInputError(f"{shown(root)} needs one sub-folder per class (at least two), found {len(classes)}: "
                              "put each class's images in its own folder, e.g. good/ and bad/.")
    files = {name: class_files(root / name) for name in classes}
    for name in classes:
        if not any(is_image_file(p) for p in files[name]):
            _no_images(root / name)
    others = sorted(p.relative_to(root).as_posix() for name in classes for p in files[name] if not is_image_file(p))
    if others:
        listed = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise ImageInputError(f"{len(others)} file(s) in {shown(root)} are not images: {listed}. "
                              "Move them out of the class folders.")
    return files


def _no_images(folder: Path) -> None:
    """Raise the one line for a class folder without images: images only in hidden folders are named, not deleted."""
    tucked = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                    if is_image_file(p) and p.is_file() and not is_junk(p))
    if tucked:
        raise ImageInputError(f"Class folder {shown(folder)} has images only in hidden folders, which are skipped "
                              f"(e.g. {tucked[0]}): move them out of the hidden folder.")
    raise ImageInputError(f"Class folder {shown(folder)} has no images "
                          f"({', '.join(sorted(IMAGE_SUFFIXES))}): add some, or remove the folder.")


def folder_files(root: str | Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """The image files of a folder (one sub-folder per class, images in its sub-folders too), their labels and the
    class names, in the order ``load_folder`` loads them; a file manager's junk is skipped, other files refused."""
    files = _class_folders(Path(root).expanduser())
    paths = [path for name in files for path in files[name]]
    labels = [label for label, name in enumerate(files) for _ in files[name]]
    return paths, np.array(labels), list(files)


def load_folder(root: str | Path, size: int = 300, channels: int | None = None
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A folder of images, one sub-folder per class -> uint8 images at ``size`` x ``size``, labels, class names.

    Images in sub-folders of a class folder belong to that class. ``channels``: 1 (grey, (N, H, W)), 3 (colour,
    (N, H, W, 3)), or None: colour if any image shows colour, otherwise grey. Every image goes through
    ``read_image``, the same step a shipped model's ``predict`` uses. Prints a one-line summary.
    Introduced in ``03_replacing_the_head.ipynb``.
    """
    root = Path(root).expanduser()
    paths, labels, classes = folder_files(root)
    if channels is None:
        channels = 3 if any(_file_shows_colour(path) for path in paths) else 1
    images = np.stack([read_image(path, size, channels) for path in paths])
    print(_summary(root, paths, labels, classes, images))
    return images, labels, classes


def _summary(root: Path, paths: list[Path], labels: np.ndarray, classes: list[str], images: np.ndarray) -> str:
    """One line: how many images of each class, grey or colour, how many came from sub-folders, what was left out."""
    counts = ", ".join(f"{name} {n}" for name, n in zip(classes, np.bincount(labels, minlength=len(classes))))
    kind = "colour" if images.ndim == 4 else "grey"
    line = f"{len(paths)} images from {shown(root)} ({counts}), {kind}, {images.shape[2]}x{images.shape[1]}"
    nested = sum(len(p.relative_to(root).parts) > 2 for p in paths)
    if nested:
        line += f"; {nested} of them from sub-folders of the class folders"
    loose = [p.name for p in sorted(root.iterdir()) if p.is_file() and is_image_file(p) and not is_junk(p)]
    if loose:
        line += (f"; left out {len(loose)} image(s) outside the class folders ({', '.join(loose[:3])}"
                 f"{', ...' if len(loose) > 3 else ''}): move them into one to use them")
    return line + "."


def with_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """A uint8 image as grey (H, W) for ``channels=1`` or colour (H, W, 3) for ``channels=3``."""
    if channels not in (1, 3):
        raise SettingError(f"channels is {channels!r}; it must be 1 (grey) or 3 (colour).")
    if channels == 1 and image.ndim == 3:
        return np.asarray(Image.fromarray(image).convert("L"))  # Pillow's luma: 0.299 R + 0.587 G + 0.114 B
    if channels == 3 and image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=-1)
    return image


def shows_colour(image: np.ndarray) -> bool:
    """Whether a uint8 image shows colour: (H, W, 3) with channels apart by more than GREY_TOLERANCE somewhere."""
    if image.ndim != 3:
        return False
    spread = image.max(axis=-1).astype(np.int16) - image.min(axis=-1)
    return bool(spread.max() > GREY_TOLERANCE)


def _file_shows_colour(path: Path) -> bool:
    """Whether an image file shows colour; a file stored in grey is not decoded to know."""
    try:
        with Image.open(path) as img:
            if img.mode in STORED_GREY:
                return False
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        pass  # read_image, below, names the problem in one line
    return shows_colour(read_image(path))


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """One uint8 image resized to ``size`` x ``size`` with Pillow's antialiased bilinear filter.

    The one resizing step between a file and the model, for training (``load_folder``) and for a shipped
    model's ``predict`` alike, so the two cannot disagree.
    """
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def read_image(path: str | Path, size: int | None = None, channels: int | None = None) -> np.ndarray:
    """One image file -> uint8 pixels as a viewer shows it, resized to ``size`` x ``size`` if given.

    ``channels``: 1 (grey (H, W), colour turned to luma), 3 (colour (H, W, 3), grey copied to three channels) or
    None (as stored: grey files grey, others colour). Turned upright by the file's EXIF orientation; transparent
    pixels over white; 16-bit files scaled to 8 bits. Anything the course cannot use (missing, damaged, too small,
    too large) raises ImageInputError naming the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ImageInputError(f"No image file at {shown(path)}. Check the path "
                              f"(a relative path starts from {shown(Path.cwd())}).")
    image = _decode_file(path)
    if min(image.shape[:2]) < MIN_SIDE:
        raise ImageInputError(f"{shown(path)} is {image.shape[1]}x{image.shape[0]} pixels, below the "
                              f"{MIN_SIDE}-pixel minimum: use a larger image, or remove it.")
    image = with_channels(image, channels) if channels is not None else image
    return resize_image(image, size) if size else image


def _decode_file(path: Path) -> np.ndarray:
    """An image file's pixels as a viewer shows them, or ImageInputError saying why the file cannot be read."""
    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file fails here, inside this try
            ImageOps.exif_transpose(img, in_place=True)  # upright, as a viewer turns it
            return _pixels(_on_white(img))
    except Image.DecompressionBombError:
        raise ImageInputError(f"{shown(path)} has more than {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels, "
                              "more than Pillow will open (a guard against decompression bombs): shrink it "
                              "first.") from None
    except UnidentifiedImageError:
        raise ImageInputError(f"{shown(path)} is not an image Pillow can read: use PNG, JPEG or TIFF.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageInputError(f"{shown(path)} is truncated or damaged ({str(exc)[:60]}): copy or export it "
                              "again.") from None


def _on_white(img: Image.Image) -> Image.Image:
    """Transparent pixels composited over white, as viewers show them (not the colour stored under them)."""
    alpha = img.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in img.info  # tRNS: palette, grey, RGB
    if not alpha or img.mode.startswith(("I", "F")):
        return img
    grey = img.mode in STORED_GREY
    with_alpha = img.convert("LA" if grey else "RGBA")  # a transparent colour or palette entry becomes alpha
    out = Image.new("L" if grey else "RGB", img.size, 255 if grey else (255, 255, 255))
    out.paste(with_alpha.convert(out.mode), mask=with_alpha.getchannel("A"))
    return out


def _pixels(img: Image.Image) -> np.ndarray:
    """A decoded Pillow image -> uint8 grey (H, W) for a grey file, colour (H, W, 3) for any other."""
    if img.mode.startswith("I"):  # 16-bit (or 32-bit integer) grey: 0-65535 -> 0-255, not clipped to white
        return np.round(np.asarray(img, dtype=np.float32) / 257).clip(0, 255).astype(np.uint8)
    if img.mode in STORED_GREY:
        return np.asarray(img.convert("L"))
    return np.asarray(img.convert("RGB"))


PHOTO_CLASSES = {"flower": "flower.jpg", "portrait": "grace_hopper.jpg", "temple": "china.jpg"}


def _sample_photo(name: str) -> np.ndarray:
    """One of the colour photos that ship inside scikit-learn (flower, temple) and matplotlib (portrait)."""
    if name == "grace_hopper.jpg":
        from matplotlib.cbook import get_sample_data

        with get_sample_data(name) as f, Image.open(f) as img:
            return np.asarray(img.convert("RGB"))
    from sklearn.datasets import load_sample_image

    return load_sample_image(name)


def write_photo_folder(folder: str | Path, per_class: int = 40, seed: int = 0) -> Path:
    """A small colour, three-class image folder to practise on: random crops of three photos, saved as JPEG
    files of different sizes (80-260 px), one sub-folder per photo. Written once; kept if already there.

    Introduced in ``03_replacing_the_head.ipynb``.
    """
    folder = Path(folder).expanduser()
    rng = np.random.default_rng(seed)
    for name, source in PHOTO_CLASSES.items():
        if (folder / name).is_dir() and len(list((folder / name).glob("*.jpg"))) == per_class:
            continue
        (folder / name).mkdir(parents=True, exist_ok=True)
        photo = Image.fromarray(_sample_photo(source))
        for i in range(per_class):
            side = int(rng.uniform(0.3, 0.6) * min(photo.size))
            left, top = rng.integers(0, photo.size[0] - side), rng.integers(0, photo.size[1] - side)
            crop = photo.crop((int(left), int(top), int(left) + side, int(top) + side))
            if rng.random() < 0.5:
                crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
            out = int(rng.integers(80, 261))
            crop.resize((out, out), Image.BILINEAR).save(folder / name / f"{name}{i:03d}.jpg", quality=90)
    return folder
